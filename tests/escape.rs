//! Known ways out of container sandboxes, each tried from inside a default sandbox by the
//! probe program, each test asserting that the breakout fails. Every test names the CVE
//! or the class of escape it covers; SECURITY.md says which layer is meant to stop it.
//!
//! Each test runs twice (`fresh_and_pooled!`): in a fresh sandbox, and in a warm-pool
//! sandbox, whose init installed the filter and dropped privileges before the request.
//!
//! The probe commands used here are in `tests/probe/`, by what they look at
//! (`files.rs`, `processes.rs`, `seccomp.rs`, `ipc.rs`, ...). Where the host takes part (a pty, a mount, an abstract socket, a second
//! sandbox), the test makes it, and removes it again, itself.

mod common;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Lines, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::time::{Duration, Instant};

use common::warm::Spawns;
use common::{probe_request, probe_request_in, Daemon, Facts};
use hatchery::protocol::{Bind, SandboxConfig};
use hatchery::seccomp::SeccompPolicy;
use hatchery::{ChildProcess, ExitStatus, SpawnRequest, Stdio};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The sandbox of [`probe_request`]: a default one with the probe's bind. A pooled
/// daemon for the tests that use only such sandboxes keeps warm ones of this shape.
fn default_shape() -> SandboxConfig {
    probe_request(&[]).sandbox
}

/// Runs the probe with `args` in a default sandbox of a daemon of its own.
fn probe(spawns: Spawns, args: &[&str]) -> Facts {
    let daemon = spawns.daemon(&default_shape());
    spawns.probe_facts(&daemon, probe_request(args))
}

/// Asserts that each of `keys` was reported and is anything but `ok`.
fn assert_all_fail(facts: &Facts, keys: &[&str]) {
    for key in keys {
        assert_ne!(facts[*key], "ok", "{key} must fail inside the sandbox");
    }
}

/// A sandbox whose probe prints `ready`, then holds something: `ipc-hold` and `lock-hold`
/// until their stdin closes, `ls-after-line` until a line arrives, `detach-tree` until
/// it is killed.
struct Held {
    child: ChildProcess,
    /// What the probe printed before `ready`.
    facts: Facts,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Held {
    /// Spawns `request` and reads its stdout up to the `ready` line.
    fn start(spawns: Spawns, daemon: &Daemon, request: SpawnRequest) -> Held {
        let mut child = spawns.spawn(daemon, request);
        let mut lines = BufReader::new(child.stdout.take().expect("stdout pipe")).lines();
        let mut text = String::new();
        loop {
            match lines.next() {
                Some(Ok(line)) if line == "ready" => break,
                Some(Ok(line)) => {
                    text.push_str(&line);
                    text.push('\n');
                }
                _ => {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                    panic!("the probe ended before `ready`; stdout: {text} stderr: {stderr}");
                }
            }
        }
        Held {
            child,
            facts: common::facts(&text),
            lines,
        }
    }

    /// Sends one line to the probe's stdin.
    fn send_line(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin pipe");
        stdin.write_all(b"go\n").expect("write to the probe");
    }

    /// Closes the probe's stdin, reads the rest of its stdout as facts, and waits.
    fn finish(mut self) -> (Facts, ExitStatus) {
        drop(self.child.stdin.take());
        let rest: Vec<String> = self.lines.by_ref().map(|l| l.expect("read")).collect();
        let status = self.child.wait().expect("wait").status;
        (common::facts(&rest.join("\n")), status)
    }
}

/// Runs `ipc-hold NAME` in one sandbox and, while it holds, `ipc-look NAME` in a second
/// one of the same daemon: what the first made, and what the second found of it.
fn covert_channel(spawns: Spawns, name: &str) -> (Facts, Facts) {
    let daemon = spawns.daemon(&default_shape());
    let holder = Held::start(spawns, &daemon, probe_request(&["ipc-hold", name]));
    let looked = spawns.probe_facts(&daemon, probe_request(&["ipc-look", name]));
    let made = holder.facts.clone();
    let (_, status) = holder.finish();
    assert!(status.success(), "ipc-hold ended with {status:?}");
    (made, looked)
}

/// A name no other test process and no other test uses (the fresh and the pooled run of
/// one test run at once, in the same process).
fn unique(spawns: Spawns, tag: &str) -> String {
    let mode = match spawns {
        Spawns::Fresh => "fresh",
        Spawns::Pooled => "pooled",
    };
    format!("{tag}-{mode}-{}", std::process::id())
}

/// The pid namespace of host process `pid`, as its `ns/pid` link reads.
fn pid_namespace_of(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// How many host processes are in pid namespace `ns`.
/// Reads `stdout` to end of file, which comes only once every process holding its
/// write end is gone; fails the test unless that happens within `within`.
fn assert_eof_within(stdout: Lines<BufReader<ChildStdout>>, within: Duration) {
    let started = Instant::now();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        stdout.for_each(drop);
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(within).is_ok(),
        "processes of the sandbox still hold its stdout {:?} after the teardown",
        started.elapsed()
    );
}

/// Kills the sandbox whose init has host pid `.0` on drop, if any process of its pid
/// namespace `.1` is left (a test that found a survivor does not leave it behind).
struct KillSurvivors(i32, PathBuf);

impl Drop for KillSurvivors {
    fn drop(&mut self) {
        // Checked first, so that a reused pid of some other process is never signalled.
        if pid_namespace_of(self.0).is_some_and(|ns| ns == self.1) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A pseudo-terminal pair that the test owns: the master side, and the path of the slave.
struct Pty {
    master: File,
    slave: PathBuf,
}

impl Pty {
    fn open() -> Pty {
        use nix::fcntl::OFlag;
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("open /dev/ptmx");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let slave = PathBuf::from(nix::pty::ptsname_r(&master).expect("ptsname"));
        let master = fs::File::from(std::os::fd::OwnedFd::from(master));
        Pty { master, slave }
    }

    /// A new open file description of the slave side; never our controlling terminal.
    fn open_slave(&self, nonblocking: bool) -> File {
        let flags = libc::O_NOCTTY | if nonblocking { libc::O_NONBLOCK } else { 0 };
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(&self.slave)
            .expect("open the pty's slave side")
    }

    /// Everything the master side reads until `marker` comes through (written to the slave
    /// by the caller after everything else, so all earlier output precedes it).
    fn master_output_until(&mut self, marker: &str) -> String {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !String::from_utf8_lossy(&seen).contains(marker) {
            assert!(
                Instant::now() < deadline,
                "the marker never reached the master side"
            );
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(1000u16)).expect("poll the pty master");
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                let mut buf = [0u8; 4096];
                let n = self.master.read(&mut buf).expect("read the pty master");
                seen.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }
}

/// A tmpfs the test mounted on the host; unmounted on drop.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A copy of the probe in a fresh directory (bind it into the sandbox, read-only), owned
/// by root with `mode`.
fn probe_copy(mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = common::open_tempdir();
    let copy = dir.path().join("probe-copy");
    fs::copy(common::probe_path(), &copy).expect("copy the probe");
    std::os::unix::fs::chown(&copy, Some(0), Some(0)).expect("chown root:root");
    fs::set_permissions(&copy, fs::Permissions::from_mode(mode)).expect("chmod");
    (dir, copy)
}

/// Gives `file` the file capabilities `cap_setuid,cap_sys_admin=eip` (version 2, which
/// names host root as their owner): with the `setcap` tool where there is one, else with a
/// direct `setxattr("security.capability")`.
fn set_file_caps(file: &Path) -> io::Result<()> {
    if let Ok(status) = std::process::Command::new("setcap")
        .arg("cap_setuid,cap_sys_admin=eip")
        .arg(file)
        .status()
    {
        return if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("setcap: {status}")))
        };
    }
    // struct vfs_cap_data, revision 2: magic_etc (revision | effective flag), then
    // (permitted, inheritable) for capabilities 0-31 and 32-63.
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    const CAP_SETUID: u32 = 7;
    const CAP_SYS_ADMIN: u32 = 21;
    let permitted_low = (1 << CAP_SETUID) | (1 << CAP_SYS_ADMIN);
    let words = [
        VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
        permitted_low,
        permitted_low,
        0,
        0,
    ];
    let value: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).expect("path");
    let ret = sys::set_file_capability(&path, &value);
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the test itself may do what needs host root (mounts, file capabilities):
/// otherwise the test skips, unless `HATCHERY_TESTS_MUST_RUN=1`, where it fails.
fn host_root_or_skip(what: &str, result: io::Result<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) if common::must_run() => panic!("{what}: {e}"),
        Err(e) => {
            eprintln!("skipped: {what}: {e} (needs root on the host)");
            false
        }
    }
}

// ---------------------------------------------------------------------------------------
// Terminal injection
// ---------------------------------------------------------------------------------------

/// CVE-2017-5226 (bubblewrap): a sandbox that inherits the caller's terminal pushes a
/// command into its input with `ioctl(TIOCSTI)` (or pastes with `TIOCLINUX` on a virtual
/// console), and the caller's shell runs it once the sandbox exits. Here stdin is a pty
/// the test allocated; the probe tries `TIOCSTI` and `TIOCLINUX` as it is, then takes the
/// pty as the controlling terminal of a session of its own and tries `TIOCSTI` again.
/// Every call must fail, and nothing may arrive in the pty's input or echo on its master.
fn terminal_injection_into_a_passed_pty_fails(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let mut pty = Pty::open();
    let stdin = OwnedFd::from(pty.open_slave(false));
    let watch = pty.open_slave(true);
    let request = probe_request(&["tty-inject"]).stdin(Stdio::fd(stdin));
    let facts = spawns.probe_facts(&daemon, request);

    assert_eq!(
        facts["stdin_is_tty"], "true",
        "the probe got the pty: {facts:?}"
    );
    assert!(!facts.contains_key("skipped"), "{facts:?}");
    assert_ne!(
        facts["dev_tty"], "ok",
        "the sandbox has no controlling terminal"
    );
    assert_all_fail(&facts, &["tiocsti", "tioclinux", "tiocsti_as_ctty"]);

    // Nothing reached the pty's input queue (a whole line would be readable now)...
    let mut buf = [0u8; 256];
    match (&watch).read(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!(
            "the pty's input holds {:?}",
            other.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        ),
    }
    // ...and nothing was echoed: everything output before our marker precedes it.
    (&watch)
        .write_all(b"end-of-test\n")
        .expect("write to the pty");
    let output = pty.master_output_until("end-of-test");
    assert!(
        !output.contains("hatchery-escape"),
        "injected input was echoed by the pty: {output:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The runtime, leaked fds, the working directory
// ---------------------------------------------------------------------------------------

/// CVE-2019-5736 (runc): a container process opens the runtime's binary through
/// `/proc/self/exe` (after the runtime exec'd into it) or `/proc/<runtime pid>/exe`,
/// directly or through an `O_PATH` handle reopened later, and overwrites it, so that the
/// host runs the attacker's code the next time it starts the runtime. Here the runtime
/// is the sandbox init, a copy of the zygote: neither its binary nor the probe's may be
/// opened for writing, and the host's `hatchery` binary stays byte for byte the same.
fn runtime_binary_cannot_be_overwritten_through_proc_exe(spawns: Spawns) {
    require_sandbox!();
    let before = fs::read(common::HATCHERY).expect("read the hatchery binary");
    let facts = probe(spawns, &["exe-write"]);
    assert_all_fail(&facts, &["self_exe_open_write", "init_exe_open_write"]);
    // An `O_PATH` handle of its own binary is the probe's to take; one of the init's is
    // refused (the init is not dumpable). Where a handle was taken, reopening it for
    // writing must fail; where none was, the probe cannot have tried.
    assert_eq!(facts["self_exe_open_path"], "ok", "{facts:?}");
    assert_ne!(
        facts["self_exe_reopen_write"], "ok",
        "self_exe_reopen_write"
    );
    match facts["init_exe_open_path"].as_str() {
        "ok" => assert_ne!(
            facts["init_exe_reopen_write"], "ok",
            "init_exe_reopen_write"
        ),
        _ => assert!(!facts.contains_key("init_exe_reopen_write"), "{facts:?}"),
    }
    assert_ne!(
        facts["init_exe_link"],
        common::HATCHERY,
        "the init's binary on the host must not even be named"
    );
    let after = fs::read(common::HATCHERY).expect("read the hatchery binary");
    assert!(before == after, "the hatchery binary changed");
}

/// CVE-2024-21626 (runc "Leaky Vessels"), its fd half: runc leaked an fd of a host
/// directory into the container, and a process started with its cwd at
/// `/proc/self/fd/<n>` walked out of the root. Here, with a second sandbox running in the
/// same daemon (so that there are other fds to leak), the workload holds fds 0-2 only,
/// none of them a directory, and cannot reach the init's fds, among them its channel to
/// the zygote.
fn only_stdio_leaks_in_and_the_inits_fds_are_out_of_reach(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let mut busy = spawns.spawn(&daemon, probe_request(&["sleep", "30"]));
    let facts = spawns.probe_facts(&daemon, probe_request(&["root-walk"]));
    busy.kill().expect("kill the other sandbox");
    busy.wait().expect("wait");

    let mut fds: Vec<(&str, &str)> = facts
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("fd.")?, v.as_str())))
        .collect();
    fds.sort();
    let numbers: Vec<&str> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, ["0", "1", "2"], "{facts:?}");
    for (fd, target) in fds {
        assert!(
            target.starts_with("pipe:") || target == "/dev/null",
            "fd {fd} is {target:?}, not the stdio the request asked for"
        );
    }
    assert_all_fail(&facts, &["init_fds", "init_fd3", "init_cwd"]);
}

/// CVE-2024-21626, its cwd half (and the old chroot `..` escape): a working directory
/// outside the root lets `..` walk up into the host. Here the workload starts in the
/// requested directory inside the root, `/proc/self/cwd` and `/proc/self/root` resolve
/// inside it, and any number of `..` ends at the sandbox's own `/`.
fn cwd_and_dotdot_stay_inside_the_root(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let facts = spawns.probe_facts(&daemon, probe_request(&["root-walk"]).cwd("/usr/bin"));
    assert_eq!(facts["proc_self_cwd"], "/usr/bin");
    assert_eq!(facts["proc_self_cwd_is_cwd"], "true");
    assert_eq!(facts["proc_self_root"], "/");
    assert_eq!(facts["dotdot_is_root"], "true", "/.. is / itself");
    assert_eq!(facts["cwd_after_dotdot"], "/");
    assert_eq!(facts["cwd_after_dotdot_is_root"], "true");
}

// ---------------------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------------------

/// Setuid and setgid binaries bound into the sandbox (the classic way up: a root-owned
/// setuid program): every bind is `nosuid`, and `no_new_privs` is set, so a
/// setuid-root, setgid-root copy of the probe runs with the sandbox's ids and no
/// capabilities.
fn setuid_and_setgid_root_binaries_bound_in_grant_nothing(spawns: Spawns) {
    require_sandbox!();
    let (dir, copy) = probe_copy(0o6755);
    let sandbox = SandboxConfig {
        binds: vec![Bind::read_only(dir.path(), "/suid")],
        ..SandboxConfig::default()
    };
    let name = copy.file_name().expect("file name");
    let request = SpawnRequest::new(Path::new("/suid").join(name))
        .arg("privs")
        .sandbox(sandbox);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    for id in ["uid", "euid", "suid", "gid", "egid", "sgid"] {
        assert_eq!(facts[id], "1000", "{id}: {facts:?}");
    }
    for set in ["CapPrm", "CapEff"] {
        assert_eq!(facts[set], "0000000000000000", "{set}");
    }
}

/// File capabilities bound into the sandbox (`security.capability` on a binary, e.g.
/// `cap_setuid,cap_sys_admin=eip`): `nosuid` binds ignore them and `no_new_privs`
/// forbids them, so the probe runs with no capabilities.
fn file_capabilities_bound_in_grant_nothing(spawns: Spawns) {
    require_sandbox!();
    let (dir, copy) = probe_copy(0o755);
    if !host_root_or_skip("set file capabilities", set_file_caps(&copy)) {
        return;
    }
    let sandbox = SandboxConfig {
        binds: vec![Bind::read_only(dir.path(), "/caps")],
        ..SandboxConfig::default()
    };
    let name = copy.file_name().expect("file name");
    let request = SpawnRequest::new(Path::new("/caps").join(name))
        .arg("privs")
        .sandbox(sandbox);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    for set in ["CapPrm", "CapEff", "CapInh", "CapAmb"] {
        assert_eq!(facts[set], "0000000000000000", "{set}: {facts:?}");
    }
    assert_eq!(facts["euid"], "1000");
}

/// Becoming root inside (the first step of most escapes from a user namespace):
/// `setuid(0)`, `setgid(0)`, `setresuid`, `setresgid`, `setgroups([0])` and `setfsuid(0)`
/// all fail: no id but the sandbox's is mapped, and no capability is left.
fn setuid_and_setgid_to_root_fail(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["set-ids"]);
    assert_all_fail(
        &facts,
        &[
            "setuid",
            "setgid",
            "setresuid",
            "setresgid",
            "setgroups",
            "setfsuid",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Other processes' memory
// ---------------------------------------------------------------------------------------

/// ptrace of the sandbox init (which holds a copy of the zygote's memory and its channel
/// to the zygote) and of the probe's parent (the init as well), and ptrace within the
/// workload's own tree (a child seizing the probe, which the kernel alone would allow: same
/// user, dumpable): all refused.
fn ptrace_of_init_and_of_its_own_parent_fails(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["peek"]);
    assert_eq!(facts["ppid"], "1", "the probe's parent is the init");
    assert_all_fail(
        &facts,
        &[
            "init_ptrace_seize",
            "parent_ptrace_seize",
            "child_ptrace_seize_parent",
        ],
    );
}

/// `process_vm_readv` of the init's memory (a copy of the zygote's, with whatever it
/// preloaded), of the parent's, and within the workload's own tree: all refused.
fn process_vm_readv_of_init_and_of_its_own_parent_fails(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["peek"]);
    assert_all_fail(
        &facts,
        &[
            "init_process_vm_readv",
            "parent_process_vm_readv",
            "child_process_vm_readv_parent",
        ],
    );
}

/// `/proc/1/mem` of the init, opened for reading and for writing (a write to it patches
/// the code of a more privileged process): refused, as the init is not dumpable.
fn proc_mem_of_init_cannot_be_opened(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["peek"]);
    assert_all_fail(
        &facts,
        &[
            "init_mem_read",
            "init_mem_write",
            "parent_mem_read",
            "parent_mem_write",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Kernel attack surface
// ---------------------------------------------------------------------------------------

/// Kernel keyrings, which no namespace fully isolates and which have a long record of
/// bugs (e.g. CVE-2016-0728): joining a new session keyring and adding a key both fail.
fn keyrings_are_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "keyctl_join", "add_key"]);
    assert_all_fail(&facts, &["keyctl_join", "add_key"]);
}

/// userfaultfd, the standard tool for stalling the kernel mid-copy to win the race of a
/// use-after-free exploit: refused.
fn userfaultfd_is_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "userfaultfd"]);
    assert_all_fail(&facts, &["userfaultfd"]);
}

/// io_uring, a large surface with many privilege escalations (e.g. CVE-2022-29582,
/// CVE-2023-2598) whose operations bypass the syscall filter: `io_uring_setup` refused.
fn io_uring_is_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "io_uring_setup"]);
    assert_all_fail(&facts, &["io_uring_setup"]);
}

/// eBPF, the verifier being a classic escalation path (e.g. CVE-2021-3490,
/// CVE-2022-23222): even creating a map is refused.
fn bpf_is_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "bpf_map_create"]);
    assert_all_fail(&facts, &["bpf_map_create"]);
}

/// perf_event_open, a source of kernel bugs (e.g. CVE-2013-2094) and side channels:
/// refused, even for a user-space counter of the process itself.
fn perf_event_open_is_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "perf_event_open"]);
    assert_all_fail(&facts, &["perf_event_open"]);
}

/// The "shocker" escape (Docker 2014): `open_by_handle_at` opens files by handle without a
/// path lookup, so a guessed handle reaches files outside the root. Both halves refused.
fn open_by_handle_at_is_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "name_to_handle_at", "open_by_handle_at"]);
    assert_all_fail(&facts, &["name_to_handle_at", "open_by_handle_at"]);
}

/// What `seccomp/default.json`, the policy sandboxes get by default, does with
/// `syscall`: `None` if it allows it outright, else the name of the errno it answers.
/// Fails the test for a rule this test does not know how to expect (a condition on the
/// arguments, a kill): the test must then learn it.
fn default_policy_refusal(syscall: &str) -> Option<String> {
    let policy = SeccompPolicy::default_policy().expect("the default policy");
    if let Some((_, errno)) = policy
        .blocked_syscalls()
        .into_iter()
        .find(|(name, _)| name == syscall)
    {
        return Some(format!("{:?}", nix::errno::Errno::from_raw(errno)));
    }
    assert!(
        policy.allowed_syscalls().iter().any(|name| name == syscall),
        "the default policy neither allows nor refuses {syscall} outright"
    );
    None
}

/// `memfd_create` + `execveat` (fileless execution, as in CVE-2019-5736 exploits and
/// malware droppers). The test reads from the default policy whether it allows both
/// (it does today) and demands exactly that: a refused call fails with the policy's
/// errno; an allowed exec works, and the program it runs gets nothing back: the same
/// ids, no capabilities, `no_new_privs` still set.
fn exec_from_a_memfd_gains_no_privileges(spawns: Spawns) {
    require_sandbox!();
    let memfd_refused = default_policy_refusal("memfd_create");
    let execveat_refused = default_policy_refusal("execveat");
    let facts = probe(spawns, &["memfd-exec"]);
    match &memfd_refused {
        Some(errno) => {
            assert_eq!(&facts["memfd_create"], errno, "{facts:?}");
            // The probe stops there: nothing was executed.
            assert!(!facts.contains_key("execveat"), "{facts:?}");
        }
        None => assert_eq!(facts["memfd_create"], "ok", "{facts:?}"),
    }
    match (&memfd_refused, &execveat_refused) {
        (Some(_), _) => {}
        (None, Some(errno)) => assert_eq!(&facts["execveat"], errno, "{facts:?}"),
        (None, None) => {
            assert_eq!(
                facts.get("execveat"),
                None,
                "the policy allows execveat, so the exec must work: {facts:?}"
            );
            for id in ["memfd.uid", "memfd.euid", "memfd.gid", "memfd.egid"] {
                assert_eq!(facts[id], "1000", "{id}: {facts:?}");
            }
            for set in ["memfd.CapPrm", "memfd.CapEff", "memfd.CapAmb"] {
                assert_eq!(facts[set], "0000000000000000", "{set}");
            }
            assert_eq!(facts["memfd.NoNewPrivs"], "1");
        }
    }
}

/// `AF_VSOCK` sockets: vsock is not isolated by network namespaces (on this kernel), so a
/// workload on a VM with a vsock device (virtio-vsock, as on Firecracker or QEMU) could
/// talk to the hypervisor's services and listen for it, whatever its network namespace
/// says. Creating the socket must fail.
fn vsock_sockets_cannot_be_created(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "vsock", "vsock_bind"]);
    assert_all_fail(&facts, &["vsock", "vsock_bind"]);
}

/// `AF_PACKET` raw sockets (e.g. CVE-2017-7308, CVE-2020-14386): need `CAP_NET_RAW`,
/// which the sandbox does not have.
fn packet_sockets_cannot_be_created(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "packet"]);
    assert_all_fail(&facts, &["packet"]);
}

/// A nested user namespace through `unshare(CLONE_NEWUSER)`: it would hand the workload
/// every capability over new namespaces, the door to most unprivileged kernel exploits
/// (CVE-2024-1086 class, nf_tables). Refused.
fn nested_user_namespace_via_unshare_fails(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "unshare_user"]);
    assert_all_fail(&facts, &["unshare_user"]);
}

/// The same through `clone(CLONE_NEWUSER)` (CVE-2024-1086 class): refused.
fn nested_user_namespace_via_clone_fails(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "clone_user"]);
    assert_all_fail(&facts, &["clone_user"]);
}

/// A new mount namespace, alone or with a new user namespace (how an unprivileged
/// process gets to mount, e.g. CVE-2022-0185's fsconfig overflow): refused.
fn new_mount_namespace_fails(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "unshare_mount", "unshare_user_mount"]);
    assert_all_fail(&facts, &["unshare_mount", "unshare_user_mount"]);
}

// ---------------------------------------------------------------------------------------
// Seccomp bypasses
// ---------------------------------------------------------------------------------------

/// The x32 ABI: syscall numbers with bit 30 set pass a filter that only knows the x86_64
/// numbers. `unshare(CLONE_NEWUSER)` through it must fail. (A kernel built without x32
/// answers ENOSYS too, so there this test cannot tell the filter from the kernel.)
fn x32_abi_syscalls_are_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "x32_unshare_user"]);
    assert_all_fail(&facts, &["x32_unshare_user"]);
}

/// The i386 ABI (`int 0x80` from a 64-bit process): other syscall numbers under another
/// audit architecture, which per-syscall rules miss. `unshare(CLONE_NEWUSER)` through it
/// must fail (the policy kills the process).
fn i386_abi_syscalls_are_refused(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "i386_unshare_user"]);
    assert_all_fail(&facts, &["i386_unshare_user"]);
}

/// 32-bit argument truncation: the kernel reads an ioctl request and clone's flags as 32
/// bits, so a filter comparing all 64 bits is dodged by junk in the upper half. With a
/// bad fd (and conflicting clone flags) a call that got past the filter fails with the
/// kernel's EBADF (EINVAL); the filter's own answer is EPERM.
fn junk_in_upper_argument_bits_does_not_dodge_the_filter(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(
        spawns,
        &[
            "try",
            "ioctl_tiocsti_high_bits",
            "ioctl_tioclinux_high_bits",
            "clone_user_high_bits",
        ],
    );
    for key in [
        "ioctl_tiocsti_high_bits",
        "ioctl_tioclinux_high_bits",
        "clone_user_high_bits",
    ] {
        assert_eq!(facts[key], "EPERM", "{key}: refused by the filter");
    }
}

/// `clone3` keeps its flags in memory the filter cannot read, so it must be ENOSYS (libc
/// then falls back to `clone`, whose flags are checked), even asked for a new user
/// namespace.
fn clone3_is_enosys(spawns: Spawns) {
    require_sandbox!();
    let facts = probe(spawns, &["try", "clone3_user"]);
    assert_eq!(facts["clone3_user"], "ENOSYS");
}

// ---------------------------------------------------------------------------------------
// Mounts, /proc and /sys
// ---------------------------------------------------------------------------------------

/// Mounting from inside (covering the setup's mounts, or reaching mount code bugs):
/// `mount` of a tmpfs, a bind of `/`, and the new mount API's `fsopen` all fail.
fn mounting_inside_fails(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let facts = spawns.probe_facts(&daemon, probe_request(&["mount-tmpfs"]));
    assert_all_fail(&facts, &["mount_tmpfs", "mount_bind"]);
    let facts = spawns.probe_facts(&daemon, probe_request(&["try", "fsopen"]));
    assert_all_fail(&facts, &["fsopen"]);
}

/// Mount propagation into a running sandbox: a mount the host makes, after the sandbox
/// started, under a directory bound into it must not appear inside. The test makes that
/// directory a shared mount first (as everything is on a systemd host, where `/` is
/// shared), so only the sandbox's own private propagation keeps the new mount out; with
/// shared or slave propagation the host would plant files in a running sandbox, and a
/// sandbox's mounts could reach the host.
fn host_mounts_do_not_propagate_into_a_running_sandbox(spawns: Spawns) {
    use nix::mount::{mount, MsFlags};
    require_sandbox!();
    let dir = common::open_tempdir();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).expect("mkdir");
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).expect("chmod");
    let shared = mount(
        Some(dir.path()),
        dir.path(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    if !host_root_or_skip(
        "bind-mount a directory on the host",
        shared.map_err(io::Error::from),
    ) {
        return;
    }
    let _unmount_dir = HostMount(dir.path().to_path_buf());
    mount(
        None::<&str>,
        dir.path(),
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .expect("make the directory a shared mount");

    let sandbox = SandboxConfig {
        binds: vec![Bind::read_only(dir.path(), "/shared")],
        ..SandboxConfig::default()
    };
    // In a pooled daemon, the warm sandbox is made now, with the shared mount in place.
    let request = probe_request_in(&["ls-after-line", "/shared/sub"], sandbox);
    let daemon = spawns.daemon(&request.sandbox);
    let mut held = Held::start(spawns, &daemon, request);
    mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .expect("mount a tmpfs on the host");
    let _unmount_sub = HostMount(sub.clone());
    fs::write(sub.join("planted"), "from the host").expect("write into the host's tmpfs");

    held.send_line();
    let (facts, status) = held.finish();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        facts["entries"], "",
        "the host's new mount must not show in the sandbox"
    );
}

/// Host-wide kernel settings through /proc: `core_pattern` (a pipe there runs a program
/// as root on the next crash, the classic container escape), `/proc/sysrq-trigger`,
/// `modprobe`, `drop_caches` and `sysrq`: none can be opened for writing.
fn proc_sys_and_sysrq_trigger_are_not_writable(spawns: Spawns) {
    require_sandbox!();
    let paths = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sysrq-trigger",
        "/proc/sys/kernel/modprobe",
        "/proc/sys/kernel/sysrq",
        "/proc/sys/vm/drop_caches",
    ];
    let mut args = vec!["writable"];
    args.extend(paths);
    let facts = probe(spawns, &args);
    assert_all_fail(&facts, &paths);
}

/// `/sys` (kernel and device settings, `uevent_helper`, the cgroup `release_agent` of
/// CVE-2022-0492): not in the sandbox at all, and no sysfs is mounted anywhere.
fn sys_is_absent(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let facts = spawns.probe_facts(&daemon, probe_request(&["ls", "/"]));
    assert!(
        !facts["entries"].split(',').any(|e| e == "sys"),
        "{facts:?}"
    );
    let facts = spawns.probe_facts(&daemon, probe_request(&["writable", "/sys"]));
    assert_eq!(facts["/sys"], "ENOENT");
    let out = spawns.run(&daemon, probe_request(&["mounts"]));
    assert!(
        !out.stdout.lines().any(|l| l.contains(" - sysfs ")),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------

/// Abstract Unix sockets of the host (X11's `@/tmp/.X11-unix/X0`, D-Bus, containerd's
/// shim sockets: CVE-2020-15257): they live in the network namespace, so a socket the
/// test binds on the host can be neither reached nor seen from inside.
fn host_abstract_sockets_are_unreachable(spawns: Spawns) {
    require_sandbox!();
    use std::os::linux::net::SocketAddrExt;
    let name = unique(spawns, "hatchery-escape-abstract");
    let address =
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
    let _listener =
        std::os::unix::net::UnixListener::bind_addr(&address).expect("bind on the host");
    let target = format!("@{name}");
    let facts = probe(spawns, &["connect", &target]);
    assert_ne!(
        facts[&target], "ok",
        "connect to the host's abstract socket"
    );
    assert_eq!(facts[&format!("{target}.listed")], "false");
}

/// The daemon's own socket: a workload that reached it could ask for sandboxes with
/// binds of its choosing. It is neither in the sandbox's tree nor in its network
/// namespace's socket table.
fn daemon_socket_is_unreachable(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let socket = daemon.socket.to_str().expect("UTF-8 socket path");
    let facts = spawns.probe_facts(&daemon, probe_request(&["connect", socket]));
    assert_ne!(facts[socket], "ok", "connect to the daemon's socket");
    assert_eq!(facts[&format!("{socket}.listed")], "false");
}

// ---------------------------------------------------------------------------------------
// Covert channels between two sandboxes running at once
// ---------------------------------------------------------------------------------------

/// Shared memory files in `/dev/shm` (POSIX `shm_open`): each sandbox has its own.
fn dev_shm_is_not_shared_between_sandboxes(spawns: Spawns) {
    require_sandbox!();
    let (made, looked) = covert_channel(spawns, &unique(spawns, "shm"));
    assert_eq!(made["dev_shm"], "ok", "the first sandbox made its file");
    assert_ne!(looked["dev_shm"], "ok", "the second sandbox sees it");
}

/// SysV shared memory, semaphores and message queues, found by key (`ipcs`): each
/// sandbox has its own IPC namespace.
fn sysv_ipc_is_not_shared_between_sandboxes(spawns: Spawns) {
    require_sandbox!();
    let (made, looked) = covert_channel(spawns, &unique(spawns, "sysv"));
    for kind in ["shm", "sem", "msg"] {
        assert_eq!(made[kind], "ok", "the first sandbox made its {kind}");
        assert_ne!(
            looked[kind], "ok",
            "the second sandbox finds the {kind} by key"
        );
    }
    assert_eq!(looked["sysvipc_objects"], "0", "ipcs lists nothing");
}

/// POSIX message queues (`mq_open`): per IPC namespace too.
fn posix_message_queues_are_not_shared_between_sandboxes(spawns: Spawns) {
    require_sandbox!();
    let (made, looked) = covert_channel(spawns, &unique(spawns, "mq"));
    assert_eq!(made["mqueue"], "ok", "the first sandbox made its queue");
    assert_ne!(
        looked["mqueue"], "ok",
        "the second sandbox opens it by name"
    );
}

/// Abstract Unix sockets between sandboxes: each has its own network namespace.
fn abstract_sockets_are_not_shared_between_sandboxes(spawns: Spawns) {
    require_sandbox!();
    let (made, looked) = covert_channel(spawns, &unique(spawns, "sock"));
    assert_eq!(made["abstract"], "ok", "the first sandbox listens");
    assert_ne!(looked["abstract"], "ok", "the second sandbox connects");
}

/// Kernel keyrings between sandboxes (both run as the same unprivileged host uid, whose
/// keys would be readable to each other): no key can be added, searched or listed.
fn keyrings_are_not_shared_between_sandboxes(spawns: Spawns) {
    require_sandbox!();
    let (made, looked) = covert_channel(spawns, &unique(spawns, "key"));
    assert_ne!(made["keyring"], "ok", "the first sandbox adds a key");
    assert_ne!(looked["keyring"], "ok", "the second sandbox finds it");
    assert_eq!(looked["proc_keys"], "false", "/proc/keys lists it");
}

/// File locks on a shared read-only bind: a read-only file still takes POSIX read locks
/// and `flock`s, which another sandbox with the same bind can test for, one bit at a
/// time. The second sandbox must not see the first one's locks. (The default root is such
/// a bind too: `/etc` and `/usr` are the host's, shared by every sandbox and the host.)
fn file_locks_on_a_shared_read_only_bind_are_not_shared_between_sandboxes(spawns: Spawns) {
    require_sandbox!();
    let dir = common::open_tempdir();
    let file = dir.path().join("shared.txt");
    fs::write(&file, "shared, read-only\n").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let sandbox = SandboxConfig {
        binds: vec![Bind::read_only(dir.path(), "/shared")],
        ..SandboxConfig::default()
    };
    let daemon = spawns.daemon(&probe_request_in(&[], sandbox.clone()).sandbox);
    let holder = Held::start(
        spawns,
        &daemon,
        probe_request_in(&["lock-hold", "/shared/shared.txt"], sandbox.clone()),
    );
    let looked = spawns.probe_facts(
        &daemon,
        probe_request_in(&["lock-look", "/shared/shared.txt"], sandbox),
    );
    let made = holder.facts.clone();
    let (_, status) = holder.finish();
    assert!(status.success(), "{status:?}");
    assert_eq!(made["posix_lock"], "ok", "the first sandbox locks the file");
    assert_eq!(made["flock"], "ok", "the first sandbox flocks the file");
    assert_eq!(
        (
            looked["posix_lock_seen"].as_str(),
            looked["flock_exclusive"].as_str()
        ),
        ("false", "ok"),
        "the second sandbox sees the first one's POSIX lock, or is blocked by its flock"
    );
}

// ---------------------------------------------------------------------------------------
// Other processes
// ---------------------------------------------------------------------------------------

/// Signalling, seeing or ptracing the zygote or another sandbox: from inside, their host
/// pids do not exist (`kill(pid, 0)` is ESRCH), /proc does not list them, and neither
/// `pidfd_open` nor `ptrace` reaches them.
fn the_zygote_and_other_sandboxes_cannot_be_seen_signalled_or_traced(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let mut other = spawns.spawn(&daemon, probe_request(&["sleep", "30"]));
    let other_workload = common::children_of(other.pid)
        .first()
        .map(|&(pid, _)| pid)
        .expect("the other sandbox's workload");
    let targets = [daemon.pid(), other.pid, other_workload];
    for pid in targets {
        // Pids this small could exist inside the sandbox's own namespace.
        assert!(pid > 10, "host pid {pid}");
    }
    let args: Vec<String> = targets.iter().map(|p| p.to_string()).collect();
    let mut argv = vec!["signal-pids"];
    argv.extend(args.iter().map(String::as_str));
    let facts = spawns.probe_facts(&daemon, probe_request(&argv));
    other.kill().expect("kill the other sandbox");
    other.wait().expect("wait");

    for pid in &args {
        assert_eq!(facts[&format!("kill.{pid}")], "ESRCH", "kill({pid}, 0)");
        assert_eq!(facts[&format!("proc.{pid}")], "false", "/proc/{pid}");
        assert_ne!(facts[&format!("pidfd.{pid}")], "ok", "pidfd_open({pid})");
        assert_ne!(facts[&format!("ptrace.{pid}")], "ok", "ptrace({pid})");
    }
}

/// A fork bomb or a PDEATHSIG race outliving its sandbox: processes that double-fork,
/// start sessions of their own, clear their parent-death signal and keep hopping to new
/// pids are all gone once the client kills the sandbox (the kernel kills the whole pid
/// namespace with its init).
fn detached_processes_do_not_outlive_a_killed_sandbox(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let held = Held::start(spawns, &daemon, probe_request(&["detach-tree", "4", "30"]));
    let ns = pid_namespace_of(held.child.pid).expect("the sandbox's pid namespace");
    let _cleanup = KillSurvivors(held.child.pid, ns.clone());
    assert!(
        common::processes_in(&ns) >= 3,
        "the init, the probe and its walkers"
    );
    held.child.kill().expect("kill");
    let Held {
        mut child, lines, ..
    } = held;
    assert_eq!(
        child.wait().expect("wait").status,
        ExitStatus::Signaled(libc::SIGKILL)
    );
    assert_eof_within(lines, Duration::from_secs(10));
    assert_eq!(
        common::settled_processes_in(&ns),
        0,
        "no process of the sandbox survives"
    );
}

/// The same when the daemon itself dies (SIGKILL, so it cleans nothing up): the init's
/// parent-death signal takes the sandbox down, walkers and all.
fn detached_processes_do_not_outlive_the_daemon(spawns: Spawns) {
    require_sandbox!();
    let daemon = spawns.daemon(&default_shape());
    let held = Held::start(spawns, &daemon, probe_request(&["detach-tree", "4", "30"]));
    let ns = pid_namespace_of(held.child.pid).expect("the sandbox's pid namespace");
    let _cleanup = KillSurvivors(held.child.pid, ns.clone());
    assert!(common::processes_in(&ns) >= 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the daemon");
    assert_eof_within(held.lines, Duration::from_secs(10));
    assert_eq!(
        common::settled_processes_in(&ns),
        0,
        "no process of the sandbox survives"
    );
}

// ---------------------------------------------------------------------------------------
// Exec into a running sandbox (persistent sandboxes, issue 21)
// ---------------------------------------------------------------------------------------
//
// A command in a persistent sandbox is forked by the sandbox's own init, which is inside
// every namespace already: nothing joins the namespaces from outside, so runc's
// exec-into escapes have no joining process to attack. These run the probe as a second
// command, beside a first that stays running, as an attacker inside would be.

/// A persistent sandbox with the probe bound in, and a first command that keeps running
/// in it (an attacker already inside).
fn live_sandbox(daemon: &Daemon) -> (hatchery::Sandbox, ChildProcess) {
    let config = SandboxConfig {
        binds: vec![common::probe_bind()],
        ..SandboxConfig::default()
    };
    let sandbox = daemon
        .client()
        .create_sandbox(config, hatchery::SandboxOptions::default())
        .expect("create a persistent sandbox");
    let resident = sandbox
        .spawn(hatchery::ExecRequest::new(common::PROBE_INSIDE).args(["sleep", "30"]))
        .expect("a first command");
    (sandbox, resident)
}

/// The probe's facts, run as one more command in `sandbox`.
fn exec_probe(sandbox: &hatchery::Sandbox, args: &[&str], stdin: Stdio) -> Facts {
    let output = sandbox
        .output(
            hatchery::ExecRequest::new(common::PROBE_INSIDE)
                .args(args)
                .stdin(stdin),
        )
        .expect("run the probe as a command");
    assert!(
        output.verdict.status.success(),
        "probe {args:?}: {:?}, stderr {}",
        output.verdict,
        String::from_utf8_lossy(&output.stderr)
    );
    common::facts(&String::from_utf8_lossy(&output.stdout))
}

/// CVE-2016-9962 (runc): a process inside ptraces the process that joins its namespaces
/// and uses that process's fds. Here the process that starts a command is the sandbox's
/// init, which the command cannot ptrace, `process_vm_readv` or open `/proc/1/mem` of
/// (it is undumpable: `SetupStep::Undumpable`), nor walk `/proc/1/fd` of.
#[test]
fn exec_into_the_init_cannot_be_ptraced_or_read() {
    require_sandbox!();
    let daemon = Daemon::start();
    let (sandbox, mut resident) = live_sandbox(&daemon);
    let facts = exec_probe(&sandbox, &["peek"], Stdio::Null);
    assert_eq!(
        facts["ppid"], "1",
        "the command's parent is the sandbox's init"
    );
    assert_all_fail(
        &facts,
        &[
            "init_ptrace_seize",
            "init_process_vm_readv",
            "init_mem_read",
            "init_mem_write",
        ],
    );
    let facts = exec_probe(&sandbox, &["root-walk"], Stdio::Null);
    assert_all_fail(&facts, &["init_fds", "init_fd3", "init_cwd"]);
    resident.kill().expect("kill");
    resident.wait().expect("wait");
    sandbox.destroy().expect("destroy");
}

/// CVE-2019-5736 (runc): overwriting the joining runtime's binary through
/// `/proc/self/exe` or `/proc/<runtime>/exe`. Nothing of the daemon's execs into the
/// sandbox: the init's `/proc/1/exe` cannot be opened for writing, nor the command's own.
#[test]
fn exec_into_leaves_no_runtime_binary_to_overwrite() {
    require_sandbox!();
    let daemon = Daemon::start();
    let (sandbox, mut resident) = live_sandbox(&daemon);
    let facts = exec_probe(&sandbox, &["exe-write"], Stdio::Null);
    assert_all_fail(&facts, &["self_exe_open_write", "init_exe_open_write"]);
    resident.kill().expect("kill");
    resident.wait().expect("wait");
    sandbox.destroy().expect("destroy");
}

/// CVE-2024-21626 (runc): a leaked fd or an unchecked cwd of the joining process. A
/// command gets exactly its three streams, whatever the first command opened, and
/// starts in its requested directory inside the root.
#[test]
fn exec_into_leaks_no_fd_and_no_outside_cwd() {
    require_sandbox!();
    let daemon = Daemon::start();
    let (sandbox, mut resident) = live_sandbox(&daemon);
    let facts = exec_probe(&sandbox, &["root-walk"], Stdio::Null);
    let mut fds: Vec<&str> = facts
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("fd."))
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"], "{facts:?}");
    let cwd = sandbox
        .output(
            hatchery::ExecRequest::new("/bin/sh")
                .args(["-c", "cd ../../..; pwd; ls /proc/self/fd"])
                .cwd("/tmp"),
        )
        .expect("a command in /tmp");
    assert_eq!(String::from_utf8_lossy(&cwd.stdout), "/\n0\n1\n2\n3\n");
    resident.kill().expect("kill");
    resident.wait().expect("wait");
    sandbox.destroy().expect("destroy");
}

/// CVE-2017-5226 and CVE-2023-28100 for a command: a pty the client passes as its stdin
/// cannot be injected into (`TIOCSTI`, `TIOCLINUX`, nor after `setsid` + `TIOCSCTTY`).
#[test]
fn exec_into_cannot_inject_into_a_passed_terminal() {
    require_sandbox!();
    let daemon = Daemon::start();
    let (sandbox, mut resident) = live_sandbox(&daemon);
    let pty = Pty::open();
    let stdin = OwnedFd::from(pty.open_slave(false));
    let facts = exec_probe(&sandbox, &["tty-inject"], Stdio::fd(stdin));
    assert_eq!(facts["stdin_is_tty"], "true", "{facts:?}");
    assert_ne!(
        facts["dev_tty"], "ok",
        "a command has no controlling terminal"
    );
    assert_all_fail(&facts, &["tiocsti", "tioclinux", "tiocsti_as_ctty"]);
    resident.kill().expect("kill");
    resident.wait().expect("wait");
    sandbox.destroy().expect("destroy");
}

fresh_and_pooled!(
    terminal_injection_into_a_passed_pty_fails,
    runtime_binary_cannot_be_overwritten_through_proc_exe,
    only_stdio_leaks_in_and_the_inits_fds_are_out_of_reach,
    cwd_and_dotdot_stay_inside_the_root,
    setuid_and_setgid_root_binaries_bound_in_grant_nothing,
    file_capabilities_bound_in_grant_nothing,
    setuid_and_setgid_to_root_fail,
    ptrace_of_init_and_of_its_own_parent_fails,
    process_vm_readv_of_init_and_of_its_own_parent_fails,
    proc_mem_of_init_cannot_be_opened,
    keyrings_are_refused,
    userfaultfd_is_refused,
    io_uring_is_refused,
    bpf_is_refused,
    perf_event_open_is_refused,
    open_by_handle_at_is_refused,
    exec_from_a_memfd_gains_no_privileges,
    vsock_sockets_cannot_be_created,
    packet_sockets_cannot_be_created,
    nested_user_namespace_via_unshare_fails,
    nested_user_namespace_via_clone_fails,
    new_mount_namespace_fails,
    x32_abi_syscalls_are_refused,
    i386_abi_syscalls_are_refused,
    junk_in_upper_argument_bits_does_not_dodge_the_filter,
    clone3_is_enosys,
    mounting_inside_fails,
    host_mounts_do_not_propagate_into_a_running_sandbox,
    proc_sys_and_sysrq_trigger_are_not_writable,
    sys_is_absent,
    host_abstract_sockets_are_unreachable,
    daemon_socket_is_unreachable,
    dev_shm_is_not_shared_between_sandboxes,
    sysv_ipc_is_not_shared_between_sandboxes,
    posix_message_queues_are_not_shared_between_sandboxes,
    abstract_sockets_are_not_shared_between_sandboxes,
    keyrings_are_not_shared_between_sandboxes,
    #[ignore = "known limitation, see SECURITY.md: locks on files shared between sandboxes are visible to both"]
    file_locks_on_a_shared_read_only_bind_are_not_shared_between_sandboxes,
    the_zygote_and_other_sandboxes_cannot_be_seen_signalled_or_traced,
    detached_processes_do_not_outlive_a_killed_sandbox,
    detached_processes_do_not_outlive_the_daemon,
);

/// The test's only raw system call: nix has no `setxattr`.
mod sys {
    /// `setxattr(path, "security.capability", value)`; returns its raw result.
    pub fn set_file_capability(path: &std::ffi::CStr, value: &[u8]) -> libc::c_int {
        // SAFETY: the path and the name are NUL-terminated; the kernel reads `value.len()`
        // bytes of `value`, a live buffer.
        unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"security.capability".as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        }
    }
}
