//! Shared test harness: a daemon per test (as a subprocess: the test harness runs tests
//! on threads, and a zygote must be single-threaded), the in-sandbox probe, and the
//! privilege gate.
//!
//! Privileged tests call `require_sandbox!()`: on a machine where user namespaces are
//! not available they skip, unless `HATCHERY_TESTS_MUST_RUN=1` (set by CI), where they
//! fail.

#![allow(dead_code)]

pub mod warm;

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hatchery::protocol::{Bind, SandboxConfig};
use hatchery::{Client, SpawnRequest, Verdict};

/// The `hatchery` binary under test.
pub const HATCHERY: &str = env!("CARGO_BIN_EXE_hatchery");
/// The probe binary as built (see `tests/probe/main.rs`).
const PROBE_BUILT: &str = env!("CARGO_BIN_EXE_hatchery-probe");
/// Where the directory of the probe's copy ([`probe_path`]) appears inside a sandbox: a
/// directory bind at the top of the root, which a root template of the daemon's gets a
/// mount point for, so that the probe's sandboxes copy their root as a default one does.
pub const PROBE_DIR_INSIDE: &str = "/probe";
/// Where the probe appears inside a sandbox.
pub const PROBE_INSIDE: &str = "/probe/hatchery-probe";

/// Whether CI demands that privileged tests run rather than skip.
pub fn must_run() -> bool {
    std::env::var("HATCHERY_TESTS_MUST_RUN").is_ok_and(|v| v == "1")
}

/// Whether `python3` runs here; skips the test (returns `false`) when it does not,
/// or fails it under `HATCHERY_TESTS_MUST_RUN=1`.
pub fn python_runs() -> bool {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        other => {
            assert!(
                !must_run(),
                "HATCHERY_TESTS_MUST_RUN=1 but python3 does not run: {other:?}"
            );
            eprintln!("skipped: python3 does not run here: {other:?}");
            false
        }
    }
}

/// Whether sandboxes can be created here: one real spawn through the embedded zygote,
/// done once per test binary.
pub fn sandbox_unavailable() -> Option<&'static str> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            let out = Command::new(HATCHERY)
                .args(["run", "--embedded", "--", "/bin/true"])
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(out) if out.status.success() => None,
                Ok(out) => Some(format!(
                    "`hatchery run -- /bin/true` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => Some(format!("cannot run {HATCHERY}: {e}")),
            }
        })
        .as_deref()
}

/// Skips the test where sandboxes cannot be created, or fails it under
/// `HATCHERY_TESTS_MUST_RUN=1`.
#[macro_export]
macro_rules! require_sandbox {
    () => {
        if let Some(reason) = common::sandbox_unavailable() {
            if common::must_run() {
                panic!("HATCHERY_TESTS_MUST_RUN=1 but sandboxes are unavailable: {reason}");
            }
            eprintln!("skipped: sandboxes are unavailable here: {reason}");
            return;
        }
    };
}

/// Whether this test runs as root, as `what` needs; says so and returns `false` when
/// not, or fails the test under `HATCHERY_TESTS_MUST_RUN=1`.
pub fn root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        !must_run(),
        "HATCHERY_TESTS_MUST_RUN=1 but not root: {what} needs root"
    );
    eprintln!("skipped: {what} needs root");
    false
}

/// A daemon that can use no cgroup: `hatchery serve` in a mount namespace of its own
/// where no cgroup hierarchy is mounted (made with `unshare`, as root). The wrapper
/// script lives in `dir`, which must outlive the daemon.
pub fn start_without_cgroups(dir: &Path) -> Daemon {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("serve-without-cgroups");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare --mount --propagation private sh -c \
             'umount -l /sys/fs/cgroup && exec \"$0\" serve \"$@\"' {} \"$@\"\n",
            HATCHERY
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Daemon::start_zygote(wrapper.to_str().expect("UTF-8"), &[], &[])
}

/// A temporary directory that the sandbox's unprivileged host uid can traverse (bind
/// sources are resolved with the sandbox's credentials).
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod tempdir");
    dir
}

/// A `hatchery serve` subprocess on a socket of its own; stopped with SIGTERM on drop.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts a daemon with default options.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts a daemon with extra `serve` arguments, and waits until it accepts.
    pub fn start_with(args: &[&str]) -> Daemon {
        let mut command = Command::new(HATCHERY);
        command.arg("serve");
        Daemon::start_command(command, args)
    }

    /// Starts a daemon with extra `serve` arguments in the named network namespace
    /// (`ip netns exec NETNS`), and waits until it accepts.
    pub fn start_in_netns(netns: &str, args: &[&str]) -> Daemon {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, HATCHERY, "serve"]);
        Daemon::start_command(command, args)
    }

    /// Starts a daemon with `env` added to its environment.
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(HATCHERY);
        command.arg("serve").envs(env.iter().copied());
        Daemon::start_command(command, &[])
    }

    /// Starts a daemon with extra `serve` arguments and `env` added to its environment.
    pub fn start_with_args_and_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(HATCHERY);
        command.arg("serve").envs(env.iter().copied());
        Daemon::start_command(command, args)
    }

    /// Starts a custom zygote program (one that takes the flags of `hatchery serve`)
    /// with `env` added, and waits until it accepts.
    pub fn start_zygote(program: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(program);
        command.envs(env.iter().copied());
        Daemon::start_command(command, args)
    }

    /// Starts `hatchery serve` with at most `open_files` fds (`RLIMIT_NOFILE`, set by
    /// util-linux's `prlimit`) and extra `serve` arguments.
    pub fn start_with_open_files(open_files: u64, args: &[&str]) -> Daemon {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={open_files}"))
            .args([HATCHERY, "serve"]);
        Daemon::start_command(command, args)
    }

    /// Starts `hatchery serve` with extra arguments, its log at `RUST_LOG=info` going to
    /// `log` (a file) instead of the test's stderr.
    pub fn start_logging_to(log: std::fs::File, args: &[&str]) -> Daemon {
        let mut command = Command::new(HATCHERY);
        command.arg("serve").env("RUST_LOG", "info").stderr(log);
        Daemon::start_command(command, args)
    }

    fn start_command(mut command: Command, args: &[&str]) -> Daemon {
        let dir = open_tempdir();
        let socket = dir.path().join("hatchery.sock");
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "warn");
        }
        let child = command
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the daemon");
        let mut daemon = Daemon { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !hatchery::client::probe_socket(&daemon.socket) {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the daemon exited before it listened: {status}");
            }
            assert!(Instant::now() < deadline, "daemon did not start listening");
            std::thread::sleep(Duration::from_millis(5));
        }
        daemon
    }

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to the test daemon")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The daemon's open fds.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read daemon fds")
            .count()
    }

    /// What the daemon's open fds refer to (`readlink` of each: `net:[…]`, `socket:[…]`,
    /// a path).
    pub fn fd_targets(&self) -> Vec<PathBuf> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read daemon fds")
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .collect()
    }

    /// Spawns `/bin/true` once in a sandbox with the probe's bind, and waits for it: the
    /// daemon builds a root template with that bind's mount point at the first such
    /// spawn, and keeps it (an fd) for the next. Fd counts taken after this show what
    /// spawns of the probe leave behind, not that.
    pub fn build_probe_template(&self) {
        let sandbox = SandboxConfig {
            binds: vec![probe_bind()],
            ..SandboxConfig::default()
        };
        let out = run(
            &self.client(),
            SpawnRequest::new("/bin/true").sandbox(sandbox),
        );
        assert!(out.verdict.status.success(), "{}", out.stderr);
    }

    /// The daemon's fd count once it has held steady for 100 ms (connections that
    /// clients closed a moment ago are gone by then).
    pub fn steady_fd_count(&self) -> usize {
        let mut last = self.fd_count();
        let mut steady_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(5);
        while steady_since.elapsed() < Duration::from_millis(100) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            let count = self.fd_count();
            if count != last {
                last = count;
                steady_since = Instant::now();
            }
        }
        last
    }

    /// The daemon's fd count once it has caught up with hang-ups it has not yet seen and
    /// with its spare network namespaces (one taken is replaced a moment later): waits
    /// up to 5 s for the count to come back to `expected`, then returns it.
    pub fn settled_fd_count(&self, expected: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let count = self.fd_count();
            if count == expected || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's sandboxes (its child processes but the helper that makes network
    /// namespaces ahead) as (pid, state) pairs.
    pub fn children(&self) -> Vec<(i32, char)> {
        children_of(self.pid())
            .into_iter()
            .filter(|&(child, _)| !self.is_netns_helper(child))
            .collect()
    }

    /// Waits (up to 5 s) until the daemon holds its [`SPARE_NETNS`] spare network
    /// namespaces, which its helper makes after the daemon starts; returns how many it
    /// holds then.
    pub fn wait_for_spare_namespaces(&self) -> usize {
        let own = std::fs::read_link(format!("/proc/{}/ns/net", self.pid())).ok();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let spares = self
                .fd_targets()
                .iter()
                .filter(|target| target.to_string_lossy().starts_with("net:["))
                .filter(|target| Some(*target) != own.as_ref())
                .count();
            if spares >= SPARE_NETNS || Instant::now() >= deadline {
                return spares;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The daemon's helper that makes network namespaces ahead, if it runs one.
    pub fn netns_helper(&self) -> Option<i32> {
        children_of(self.pid())
            .into_iter()
            .map(|(child, _)| child)
            .find(|&child| self.is_netns_helper(child))
    }

    /// Whether `child`, a child of the daemon, is its `hatchery-netns` helper: the one
    /// child in the daemon's own pid namespace (every sandbox's init has one of its own).
    /// The helper names itself only once it runs; its namespace is set by its clone.
    fn is_netns_helper(&self, child: i32) -> bool {
        let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        ns(child).is_some_and(|child_ns| Some(child_ns) == ns(self.pid()))
    }

    /// Waits until the daemon has no sandbox left.
    pub fn wait_childless(&self, within: Duration) -> Vec<(i32, char)> {
        let deadline = Instant::now() + within;
        loop {
            let children = self.children();
            if children.is_empty() || Instant::now() > deadline {
                return children;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits for the daemon to exit; returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait daemon");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// The `/proc` directories of every process on the host.
pub fn all_processes() -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .map(|e| e.path())
}

/// A process's state letter and parent pid, from its `/proc/PID/stat`.
fn state_and_parent(dir: &Path) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // The command name may hold spaces and parentheses: count from its end.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// How many network namespaces a daemon keeps made ahead, at most.
pub const SPARE_NETNS: usize = hatchery::internals::spare_namespaces::SPARES;

/// Whether `pid` is a daemon's helper that makes network namespaces ahead.
pub fn is_netns_helper(pid: i32) -> bool {
    let name = hatchery::internals::spare_namespaces::HELPER_NAME.to_bytes();
    std::fs::read(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_ascii_end() == name)
}

/// The user namespace that owns the namespace `kind` (`net`, `ipc`) of process `pid`
/// (`ioctl(NS_GET_USERNS)`), as its `user:[inode]` link.
pub fn namespace_owner(pid: i32, kind: &str) -> PathBuf {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/{kind}")).expect("open ns");
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd, or -1.
    let owner = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        owner >= 0,
        "NS_GET_USERNS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the ioctl just returned this fd, which nothing else owns.
    let owner = unsafe { OwnedFd::from_raw_fd(owner) };
    std::fs::read_link(format!("/proc/self/fd/{}", owner.as_raw_fd())).expect("readlink")
}

/// The child processes of `pid` as (pid, state) pairs.
pub fn children_of(pid: i32) -> Vec<(i32, char)> {
    all_processes()
        .filter_map(|dir| {
            let child = dir.file_name()?.to_str()?.parse().ok()?;
            let (state, parent) = state_and_parent(&dir)?;
            (parent == pid).then_some((child, state))
        })
        .collect()
}

/// Live processes whose pid namespace is `ns` (a `pid:[inode]` link target). Zombies
/// run nothing and are left out: an init whose parent (a killed daemon) is gone waits to
/// be reaped by the host's PID 1.
pub fn processes_in(ns: &Path) -> usize {
    pids_in(ns).len()
}

/// The pids (in the host's namespace) of [`processes_in`].
pub fn pids_in(ns: &Path) -> Vec<i32> {
    all_processes()
        .filter(|dir| std::fs::read_link(dir.join("ns/pid")).is_ok_and(|link| link == ns))
        .filter(|dir| state_and_parent(dir).is_some_and(|(state, _)| state != 'Z'))
        .filter_map(|dir| dir.file_name()?.to_str()?.parse().ok())
        .collect()
}

/// [`processes_in`] once the namespace has had up to 5 s to empty: its init may still be
/// in its exit when the last of its processes closes stdout.
pub fn settled_processes_in(ns: &Path) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = processes_in(ns);
        if count == 0 || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A copy of the probe that the sandbox's unprivileged host uid can reach: bind sources
/// are resolved with the sandbox's credentials, and the build directory may sit in a
/// private (0700) checkout.
pub fn probe_path() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| public_copy(PROBE_BUILT, "hatchery-probe"))
}

/// A copy of the `hatchery` binary that other uids can execute.
pub fn hatchery_for_others() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| public_copy(HATCHERY, "hatchery"))
}

/// Copies `built` into a world-readable directory of this test process.
fn public_copy(built: &str, name: &str) -> PathBuf {
    // One directory per test process; those of finished processes are removed here,
    // since a static is never dropped.
    let root = Path::new("/tmp/hatchery-test-binaries");
    std::fs::create_dir_all(root).expect("create the copies directory");
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for entry in std::fs::read_dir(root).expect("list copies").flatten() {
        let pid = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = root.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("create this process's copies directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.join(name);
    std::fs::copy(built, &path).expect("copy a binary");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod a binary");
    path
}

/// A read-only bind of the probe's directory at [`PROBE_DIR_INSIDE`].
pub fn probe_bind() -> Bind {
    let dir = probe_path().parent().expect("the copies' directory");
    Bind::read_only(dir, PROBE_DIR_INSIDE)
}

/// A request that runs the probe with `args` in a default sandbox.
pub fn probe_request(args: &[&str]) -> SpawnRequest {
    probe_request_in(args, SandboxConfig::default())
}

/// A request that runs the probe with `args` in `sandbox` (the probe bind is added).
pub fn probe_request_in(args: &[&str], mut sandbox: SandboxConfig) -> SpawnRequest {
    sandbox.binds.insert(0, probe_bind());
    SpawnRequest::new(PROBE_INSIDE).args(args).sandbox(sandbox)
}

/// What a finished child printed, and its verdict.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub verdict: Verdict,
}

/// Spawns `request`, collects stdout and stderr to end of file, and waits.
pub fn run(client: &Client, request: SpawnRequest) -> Output {
    collect(client.spawn_child(request).expect("spawn"))
}

/// Collects a spawned child's stdout and stderr to end of file, and waits.
pub fn collect(mut child: hatchery::ChildProcess) -> Output {
    drop(child.stdin.take());
    let mut stderr_pipe = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout).expect("read stdout");
    }
    let stderr = stderr_reader.join().expect("stderr reader");
    let verdict = child.wait().expect("wait");
    Output {
        stdout,
        stderr,
        verdict,
    }
}

/// Runs the probe and returns its `key=value` facts; fails the test unless it exits 0.
pub fn probe_facts(client: &Client, request: SpawnRequest) -> Facts {
    facts_of_success(run(client, request))
}

/// The `key=value` facts of a probe's run; fails the test unless it exited 0.
pub fn facts_of_success(out: Output) -> Facts {
    assert!(
        out.verdict.status.success(),
        "probe failed with {:?}; stdout: {} stderr: {}",
        out.verdict.status,
        out.stdout,
        out.stderr
    );
    facts(&out.stdout)
}

/// Parses `key=value` lines.
pub fn facts(text: &str) -> Facts {
    Facts(
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// What the probe reported: its `key=value` lines, by key.
///
/// `facts["key"]` is for a fact the command always reports: a missing one fails the test
/// with the key and every key the probe did report, which tells a renamed or misspelt
/// key from a command that stopped early. [`Facts::get`] is for a fact that may be
/// absent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Facts(HashMap<String, String>);

impl Facts {
    /// The value of `key`, if the probe reported it.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.get(key)
    }

    /// Whether the probe reported `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Every (key, value) pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Whether the probe reported nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every key the probe reported, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.0.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }
}

impl<Q: AsRef<str> + ?Sized> std::ops::Index<&Q> for Facts {
    type Output = String;

    /// The value of `key`.
    ///
    /// # Panics
    /// If the probe did not report `key`; the message lists the keys it did report.
    fn index(&self, key: &Q) -> &String {
        let key = key.as_ref();
        self.0.get(key).unwrap_or_else(|| {
            panic!(
                "the probe did not report {key:?}; it reported: {}",
                self.keys().join(", ")
            )
        })
    }
}

impl<'a> IntoIterator for &'a Facts {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::hash_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::fmt::Debug for Facts {
    /// The facts sorted by key, so that a failure message reads the same on every run.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sorted: std::collections::BTreeMap<_, _> = self.0.iter().collect();
        sorted.fmt(f)
    }
}

/// Runs `hatchery` with `args`, returning (exit code, stdout, stderr).
pub fn hatchery(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(HATCHERY);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run hatchery");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait hatchery");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A readable file without execute permission in `dir`; returns where it appears inside
/// the sandbox and the `SRC:DST` bind that puts it there.
pub fn non_executable_file(dir: &tempfile::TempDir) -> (&'static str, String) {
    let path = dir.path().join("data.txt");
    std::fs::write(&path, "not a program\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    ("/data.txt", format!("{}:/data.txt", path.display()))
}

/// The path of a file in the test's own directory.
pub fn in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Directories of `daemon`'s sandbox cgroups (`sandbox-<daemon pid>-<n>`) in every
/// cgroup hierarchy mounted on this machine, v1 or v2.
pub fn sandbox_cgroups_of(daemon: &Daemon) -> Vec<std::path::PathBuf> {
    let prefix = format!("sandbox-{}-", daemon.pid());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let roots: Vec<std::path::PathBuf> = mounts
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(Into::into))?
        })
        .collect();
    let mut found = Vec::new();
    let mut stack = roots;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(entry.path());
                } else {
                    stack.push(entry.path());
                }
            }
        }
    }
    found
}
