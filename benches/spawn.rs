//! Spawn benchmark: hatchery next to the floors and its peers, in one interleaved run.
//!
//! Run with `benches/spawn.sh` (installs the peers, then `cargo bench --bench spawn`).
//! Three parts, each over every system present on the machine:
//!
//! - **Latency**, spawn → reaped exit, of `/bin/true` and of a child that echoes one line
//!   (read to end of file by the caller). Each round runs every system once, in an order
//!   that rotates between rounds, so that drift of a noisy machine (other load,
//!   frequency, page cache) lands on all of them alike.
//! - **Throughput**, spawns of `/bin/true` completed per second with 1 and with N
//!   concurrent clients (threads, each with its own connection), in rotated rounds of a
//!   fixed duration; the median round is reported.
//! - **Memory**: the daemon's RSS idle and with 100 live sandboxes, and what each live
//!   sandbox costs beyond its workload, measured as the growth of a memory cgroup (user
//!   and kernel memory) that holds the spawner while it starts 100 `sleep`s, less the
//!   same for 100 unsandboxed `sleep`s.
//!
//! Environment: `HATCHERY_BENCH_RUNS` (latency rounds, default 500),
//! `HATCHERY_BENCH_QUICK=1` (10 rounds, short throughput rounds, and no results file
//! unless `HATCHERY_BENCH_JSON` names one: for CI and iteration, not for figures),
//! `HATCHERY_BENCH_CLIENTS` (N, default 2), `HATCHERY_BENCH_JSON` (default
//! `target/bench/spawn.json`, which docs/performance.md's figures come from), `HATCHERY_BENCH_PEERS` (a directory with more peers'
//! binaries: `nsjail`, and `pyspawner-driver` with the Python that runs it),
//! `HATCHERY_BENCH_ONLY` (comma-separated parts of system names: only the latency of
//! those systems, e.g. `fresh,pool,clone3`; for iteration, not for figures),
//! `HATCHERY_BENCH_DAEMON_LOG` (the daemons' `RUST_LOG`, `error` by default;
//! `hatchery=debug` logs each sandbox's setup timeline on stderr),
//! `HATCHERY_BENCH_SETTLE_MS` (an untimed pause after each timed spawn, default 0: see
//! `settle`).

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcessStdio};
use std::time::{Duration, Instant};

use hatchery::protocol::{Layer, SandboxConfig};
use hatchery::{Client, SpawnRequest, Stdio};

const HATCHERY: &str = env!("CARGO_BIN_EXE_hatchery");

/// What each spawn runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// `/bin/true`.
    True,
    /// `/bin/echo hello`, its stdout read to end of file.
    Echo,
}

impl Workload {
    fn argv(self) -> Vec<String> {
        match self {
            Workload::True => vec!["/bin/true".into()],
            Workload::Echo => vec!["/bin/echo".into(), "hello".into()],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::True => "/bin/true",
            Workload::Echo => "echo one line",
        }
    }
}

/// One spawn → exit; returns once the child is reaped (and its output read).
type Run = Box<dyn FnMut() + Send>;

/// A system under test: a name, the exact command it stands for, and a way to make a
/// runner (one per client thread).
struct System {
    name: String,
    command: String,
    make: Box<dyn Fn(Workload) -> Option<Run>>,
    /// Part of the throughput comparison.
    throughput: bool,
}

struct Measured {
    system: String,
    workload: Workload,
    samples: Vec<Duration>,
}

/// A `hatchery serve` subprocess.
struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("bench.sock");
        let child = Command::new(HATCHERY)
            .args(["serve", "--socket"])
            .arg(&socket)
            .args(args)
            // The no-net-ns system opts out of a layer, which the daemon logs at warn.
            // HATCHERY_BENCH_DAEMON_LOG=hatchery=debug shows each sandbox's setup
            // timeline (on stderr).
            .env(
                "RUST_LOG",
                std::env::var("HATCHERY_BENCH_DAEMON_LOG").unwrap_or_else(|_| "error".into()),
            )
            .spawn()
            .expect("start hatchery serve");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !hatchery::client::probe_socket(&socket) {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Daemon {
            child,
            socket,
            _dir: dir,
        }
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// The pause after each timed spawn, untimed (`HATCHERY_BENCH_SETTLE_MS`, default 0):
/// what a system leaves running once its spawn has returned (the kernel's teardown of
/// its namespaces, a sandbox's init exiting after its `Exited`, the warm pool's refill
/// 3 ms after an exec) finishes in it, not during the next system's measurement; but
/// the CPUs also go idle in it, and every spawn then pays for waking them
/// (docs/performance.md compares both).
fn settle() {
    static PAUSE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    let pause = PAUSE
        .get_or_init(|| Duration::from_millis(env_number("HATCHERY_BENCH_SETTLE_MS", 0) as u64));
    if !pause.is_zero() {
        std::thread::sleep(*pause);
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let quick = std::env::var("HATCHERY_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs = env_number("HATCHERY_BENCH_RUNS", if quick { 10 } else { 500 });
    if quick {
        println!("quick mode: every part once over; the figures mean nothing");
    }
    let clients = env_number("HATCHERY_BENCH_CLIENTS", 2);
    let (tp_rounds, tp_duration) = if quick {
        (1, Duration::from_millis(500))
    } else {
        (3, Duration::from_secs(2))
    };
    // Some systems and the breakdown switch layers off (no net ns, no seccomp).
    const ALLOW: [&str; 2] = ["--allow-unsafe-disable", "seccomp,network-namespace"];
    let fresh = Daemon::start(&ALLOW);
    let pooled = Daemon::start(&[ALLOW[0], ALLOW[1], "--warm-pool", "4"]);

    let mut systems = systems(&fresh.socket, &pooled.socket);
    let mut results = Vec::new();
    if let Ok(only) = std::env::var("HATCHERY_BENCH_ONLY") {
        systems.retain(|s| only.split(',').any(|part| s.name.contains(part)));
        results.extend(latency(&systems, Workload::True, runs));
        report_latency(&mut results, runs);
        return;
    }
    // A quick run's figures mean nothing: they never replace a full run's file.
    let keep = !quick || std::env::var_os("HATCHERY_BENCH_JSON").is_some();
    for workload in [Workload::True, Workload::Echo] {
        results.extend(latency(&systems, workload, runs));
    }
    let breakdown = breakdown(&fresh.socket, &pooled.socket, runs);
    let throughput = throughput(&systems, clients, tp_rounds, tp_duration);
    let memory = memory(&fresh, &pooled);
    drop(pooled);
    drop(fresh);
    let raw = report(
        &systems,
        &mut results,
        &breakdown,
        &throughput,
        &memory,
        runs,
        clients,
    );
    if keep {
        keep_raw_samples(&raw);
    } else {
        println!(
            "\nquick mode: the raw samples ({} bytes) are not kept",
            raw.len()
        );
    }
}

/// Every system present on this machine.
fn systems(fresh: &Path, pooled: &Path) -> Vec<System> {
    let mut systems = vec![
        hatchery_library("hatchery (library, fresh)", fresh, SandboxConfig::default()),
        hatchery_library(
            "hatchery (library, warm pool)",
            pooled,
            SandboxConfig::default(),
        ),
        hatchery_library(
            "hatchery (library, fresh, no net ns)",
            fresh,
            SandboxConfig {
                opt_out: vec![Layer::NetworkNamespace],
                ..SandboxConfig::default()
            },
        ),
        hatchery_cli(fresh),
        command_system("posix_spawn, no sandbox", "", &[], true),
        clone_floor(true),
        clone_floor(false),
    ];
    let unshare = which("unshare");
    for (peer, found) in [
        ("unshare", &unshare),
        ("bwrap", &which("bwrap")),
        ("firejail", &which("firejail")),
    ] {
        if found.is_none() {
            println!("skipped: {peer} is not installed");
        }
    }
    if let Some(unshare) = unshare {
        systems.push(command_system(
            "unshare -Urpnmiu --fork",
            &unshare,
            &["-Urpnmiu", "--fork"],
            true,
        ));
    }
    if let Some(bwrap) = which("bwrap") {
        let args = bwrap_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        systems.push(command_system("bwrap --unshare-all", &bwrap, &args, true));
    }
    if let Some(firejail) = which("firejail") {
        // The quietest equivalent: no profile, every namespace firejail offers, no
        // network, private /tmp and /dev, all capabilities dropped, its seccomp filter.
        let args = [
            "--quiet",
            "--noprofile",
            "--net=none",
            "--ipc-namespace",
            "--private-tmp",
            "--private-dev",
            "--caps.drop=all",
            "--nonewprivs",
            "--seccomp",
            "--",
        ];
        systems.push(command_system("firejail", &firejail, &args, false));
    }
    let peers = std::env::var_os("HATCHERY_BENCH_PEERS").map(PathBuf::from);
    let nsjail = peers
        .as_ref()
        .map(|dir| dir.join("nsjail"))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .or_else(|| which("nsjail"));
    if let Some(nsjail) = nsjail {
        // Every namespace, the host's system directories read-only, quiet.
        let args = [
            "-Mo",
            "--really_quiet",
            "--disable_rlimits",
            "-R",
            "/usr",
            "-R",
            "/lib",
            "-R",
            "/lib64",
            "-R",
            "/bin",
            "-R",
            "/etc",
            "--",
        ];
        systems.push(command_system("nsjail -Mo", &nsjail, &args, false));
    } else {
        println!("skipped: nsjail is not installed (nor in HATCHERY_BENCH_PEERS)");
    }
    if let Some(driver) = peers
        .as_ref()
        .map(|dir| dir.join("pyspawner-driver"))
        .filter(|p| p.is_file())
    {
        systems.push(pyspawner(&driver));
    } else {
        println!("skipped: pyspawner (no pyspawner-driver in HATCHERY_BENCH_PEERS)");
    }
    systems
}

fn hatchery_library(name: &str, socket: &Path, sandbox: SandboxConfig) -> System {
    let socket = socket.to_path_buf();
    let command = format!(
        "Client::spawn_child(SpawnRequest::new(W){}) + wait()",
        if sandbox.opt_out.is_empty() {
            String::new()
        } else {
            format!(" with opt_out {:?}", sandbox.opt_out)
        }
    );
    System {
        name: name.into(),
        command,
        throughput: true,
        make: Box::new(move |workload| {
            let client = Client::connect(&socket).expect("connect");
            let argv = workload.argv();
            let sandbox = sandbox.clone();
            Some(Box::new(move || {
                let request = SpawnRequest::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::Null)
                    .stdout(match workload {
                        Workload::True => Stdio::Null,
                        Workload::Echo => Stdio::Pipe,
                    })
                    .stderr(Stdio::Null)
                    .sandbox(sandbox.clone());
                let mut child = client.spawn_child(request).expect("spawn");
                if let Some(mut out) = child.stdout.take() {
                    let mut line = String::new();
                    out.read_to_string(&mut line).expect("read");
                    assert_eq!(line, "hello\n");
                }
                assert!(child.wait().expect("wait").status.success());
            }) as Run)
        }),
    }
}

fn hatchery_cli(socket: &Path) -> System {
    let socket = socket.display().to_string();
    let args = ["run", "--socket", &socket, "--"];
    command_system("hatchery run (CLI, daemon)", HATCHERY, &args, false)
}

/// A program with `args`, then the workload's argv (an empty `program`: the workload
/// alone, through `std::process::Command`, i.e. `posix_spawn`).
fn command_system(name: &str, program: &str, args: &[&str], throughput: bool) -> System {
    let prefix: Vec<String> = std::iter::once(program)
        .filter(|p| !p.is_empty())
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    System {
        name: name.into(),
        command: format!("{} W", prefix.join(" ")).trim_start().into(),
        throughput,
        make: Box::new(move |workload| {
            let mut argv = prefix.clone();
            argv.extend(workload.argv());
            Some(Box::new(move || {
                let mut command = Command::new(&argv[0]);
                command
                    .args(&argv[1..])
                    .stdin(ProcessStdio::null())
                    .stderr(ProcessStdio::null());
                match workload {
                    Workload::True => {
                        let status = command
                            .stdout(ProcessStdio::null())
                            .status()
                            .expect("spawn");
                        if !status.success() {
                            let again = Command::new(&argv[0]).args(&argv[1..]).output();
                            panic!("{argv:?} failed: {status}; once more: {again:?}");
                        }
                    }
                    Workload::Echo => {
                        let out = command.output().expect("spawn");
                        assert!(out.status.success(), "{argv:?} failed: {}", out.status);
                        assert_eq!(out.stdout, b"hello\n", "{argv:?}");
                    }
                }
            }) as Run)
        }),
    }
}

/// The floor of a namespaced spawn: one raw `clone3` into new user, pid, mount, IPC and
/// UTS namespaces (and net, with `net`), then `execve` of the workload and `waitpid`.
/// No id maps, no mounts, no capability drop, no seccomp: the kernel's share alone.
fn clone_floor(net: bool) -> System {
    let mut flags = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS) as u64;
    if net {
        flags |= libc::CLONE_NEWNET as u64;
    }
    System {
        name: if net {
            "raw clone3 + exec (user,pid,mnt,ipc,uts,net)".into()
        } else {
            "raw clone3 + exec (user,pid,mnt,ipc,uts)".into()
        },
        command: format!("clone3(flags {flags:#x}) + execv(W) + waitpid, in the benchmark"),
        throughput: false,
        make: Box::new(move |workload| {
            if workload != Workload::True {
                return None;
            }
            let argv: Vec<CString> = workload
                .argv()
                .into_iter()
                .map(|a| CString::new(a).expect("argv"))
                .collect();
            let threads =
                hatchery::internals::sys::ThreadCounter::open().expect("open /proc/self/stat");
            Some(Box::new(move || {
                // The latency rounds run on the main thread alone, so the clone is safe.
                let single = threads
                    .check()
                    .ok()
                    .and_then(hatchery::internals::sys::Threads::single);
                let single = single.expect("the latency rounds run on the main thread alone");
                match hatchery::internals::sys::clone3(single, flags, None).expect("clone3") {
                    hatchery::internals::sys::Cloned::Child(_) => {
                        let _ = nix::unistd::execv(&argv[0], &argv);
                        hatchery::internals::sys::exit_now(127)
                    }
                    hatchery::internals::sys::Cloned::Parent { pid, pidfd } => {
                        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
                            .expect("waitpid");
                        assert!(
                            matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
                            "{status:?}"
                        );
                        drop(pidfd);
                    }
                }
            }) as Run)
        }),
    }
}

/// pyspawner through a small Python driver that spawns one child per line it reads
/// and answers once the child has exited (its run includes that line's round trip).
fn pyspawner(driver: &Path) -> System {
    let driver = driver.to_path_buf();
    System {
        name: "pyspawner (no network)".into(),
        command: format!("{} (one spawn_child + wait per line)", driver.display()),
        throughput: false,
        make: Box::new(move |workload| {
            let mut driver = Driver::start(&driver, workload);
            Some(Box::new(move || driver.spawn()) as Run)
        }),
    }
}

/// The pyspawner driver process: `ready` once started, then `ok` per `go`.
struct Driver {
    child: Child,
    input: Option<std::process::ChildStdin>,
    output: BufReader<std::process::ChildStdout>,
    line: String,
}

impl Driver {
    fn start(path: &Path, workload: Workload) -> Driver {
        let mut child = Command::new(path)
            .arg(match workload {
                Workload::True => "true",
                Workload::Echo => "echo",
            })
            .stdin(ProcessStdio::piped())
            .stdout(ProcessStdio::piped())
            .spawn()
            .expect("start the pyspawner driver");
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().expect("driver stdout"));
        let mut driver = Driver {
            child,
            input,
            output,
            line: String::new(),
        };
        driver.answer("ready");
        driver
    }

    fn answer(&mut self, expected: &str) {
        self.line.clear();
        self.output.read_line(&mut self.line).expect("driver");
        assert_eq!(self.line.trim(), expected, "pyspawner driver");
    }

    fn spawn(&mut self) {
        let input = self.input.as_mut().expect("driver stdin");
        input.write_all(b"go\n").expect("driver");
        self.answer("ok");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // End of input ends the driver.
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

/// bwrap with the same namespaces and a root like hatchery's default: the host's /usr,
/// /etc and /lib* read-only (symlinks kept), fresh /proc, minimal /dev, private /tmp.
fn bwrap_args() -> Vec<String> {
    let mut args: Vec<String> = ["--unshare-all", "--new-session", "--die-with-parent"]
        .map(String::from)
        .to_vec();
    for dir in [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
    ] {
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(dir).expect("readlink");
                args.extend(["--symlink".into(), target.display().to_string(), dir.into()]);
            }
            Ok(_) => args.extend(["--ro-bind".into(), dir.into(), dir.into()]),
            Err(_) => {}
        }
    }
    args.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"].map(String::from));
    args
}

fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Interleaved latency rounds of every system that can run `workload`.
fn latency(systems: &[System], workload: Workload, runs: usize) -> Vec<Measured> {
    assert_eq!(
        hatchery::internals::sys::thread_count().expect("thread count"),
        1,
        "the raw clone floor needs a single-threaded benchmark"
    );
    let mut runners: Vec<(usize, Run)> = systems
        .iter()
        .enumerate()
        .filter_map(|(i, s)| (s.make)(workload).map(|run| (i, run)))
        .collect();
    for (_, run) in &mut runners {
        for _ in 0..20 {
            run();
        }
    }
    let mut samples = vec![Vec::with_capacity(runs); runners.len()];
    for round in 0..runs {
        let count = runners.len();
        for i in 0..count {
            let at = (i + round) % count;
            let start = Instant::now();
            (runners[at].1)();
            samples[at].push(start.elapsed());
            settle();
        }
    }
    runners
        .iter()
        .zip(samples)
        .map(|((i, _), samples)| Measured {
            system: systems[*i].name.clone(),
            workload,
            samples,
        })
        .collect()
}

/// Medians of a hatchery spawn's two halves: request → `Spawned` (the workload has
/// exec'd) and `Spawned` → `Exited` (its run, the sandbox's end, the reap).
struct Breakdown {
    system: String,
    to_spawned_ms: f64,
    to_exited_ms: f64,
}

/// Interleaved rounds of `/bin/true` through the library, timing both halves.
fn breakdown(fresh: &Path, pooled: &Path, runs: usize) -> Vec<Breakdown> {
    let no_net = SandboxConfig {
        opt_out: vec![Layer::NetworkNamespace],
        ..SandboxConfig::default()
    };
    let no_seccomp = SandboxConfig {
        opt_out: vec![Layer::Seccomp],
        ..SandboxConfig::default()
    };
    let cases = [
        ("fresh", fresh, SandboxConfig::default()),
        ("warm pool", pooled, SandboxConfig::default()),
        ("fresh, no net ns", fresh, no_net),
        ("fresh, no seccomp", fresh, no_seccomp),
    ];
    let clients: Vec<Client> = cases
        .iter()
        .map(|(_, socket, _)| Client::connect(socket).expect("connect"))
        .collect();
    let mut halves = vec![(Vec::new(), Vec::new()); cases.len()];
    for round in 0..runs {
        for i in 0..cases.len() {
            let at = (i + round) % cases.len();
            let request = SpawnRequest::new("/bin/true")
                .stdin(Stdio::Null)
                .stdout(Stdio::Null)
                .stderr(Stdio::Null)
                .sandbox(cases[at].2.clone());
            let start = Instant::now();
            let mut child = clients[at].spawn_child(request).expect("spawn");
            let spawned = start.elapsed();
            assert!(child.wait().expect("wait").status.success());
            halves[at].0.push(ms(spawned));
            halves[at].1.push(ms(start.elapsed() - spawned));
            settle();
        }
    }
    cases
        .iter()
        .zip(halves)
        .map(|((name, _, _), (spawned, exited))| Breakdown {
            system: format!("hatchery ({name})"),
            to_spawned_ms: median(&spawned),
            to_exited_ms: median(&exited),
        })
        .collect()
}

struct Throughput {
    system: String,
    clients: usize,
    /// Spawns per second of each round.
    rounds: Vec<f64>,
}

/// Spawns of `/bin/true` per second with 1 and `clients` concurrent clients, in rotated
/// rounds of `duration`.
fn throughput(
    systems: &[System],
    clients: usize,
    rounds: usize,
    duration: Duration,
) -> Vec<Throughput> {
    let mut cases: Vec<Throughput> = Vec::new();
    let chosen: Vec<&System> = systems.iter().filter(|s| s.throughput).collect();
    for system in &chosen {
        for n in [1, clients] {
            cases.push(Throughput {
                system: system.name.clone(),
                clients: n,
                rounds: Vec::new(),
            });
        }
    }
    for round in 0..rounds {
        let count = cases.len();
        for i in 0..count {
            let at = (i + round) % count;
            let system = chosen[at / 2];
            let n = cases[at].clients;
            let runners: Vec<Run> = (0..n)
                .map(|_| (system.make)(Workload::True).expect("a runner"))
                .collect();
            let deadline = Instant::now() + duration;
            let start = Instant::now();
            let done: usize = std::thread::scope(|scope| {
                let threads: Vec<_> = runners
                    .into_iter()
                    .map(|mut run| {
                        scope.spawn(move || {
                            let mut done = 0;
                            while Instant::now() < deadline {
                                run();
                                done += 1;
                            }
                            done
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().expect("client")).sum()
            });
            cases[at]
                .rounds
                .push(done as f64 / start.elapsed().as_secs_f64());
        }
    }
    cases
}

struct Memory {
    fresh_idle_kib: u64,
    pooled_idle_kib: u64,
    fresh_with_100_kib: u64,
    /// Per live sandbox beyond an unsandboxed `sleep`, by system, in KiB; empty without
    /// a memory cgroup to measure in.
    per_sandbox_kib: Vec<(String, f64)>,
    method: String,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

const LIVE: usize = 100;

fn memory(fresh: &Daemon, pooled: &Daemon) -> Memory {
    let fresh_idle_kib = fresh.rss_kib();
    let pooled_idle_kib = pooled.rss_kib();
    let client = Client::connect(&fresh.socket).expect("connect");
    let mut live: Vec<_> = (0..LIVE)
        .map(|_| {
            client
                .spawn_child(SpawnRequest::new("/bin/sleep").arg("1000"))
                .expect("spawn")
        })
        .collect();
    let fresh_with_100_kib = fresh.rss_kib();
    for child in &mut live {
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
    drop(live);
    let (per_sandbox_kib, method) = match MemCgroup::create() {
        Some(cgroup) => per_sandbox(&cgroup),
        None => (
            Vec::new(),
            "not measured: no writable cgroup v1 memory controller".into(),
        ),
    };
    Memory {
        fresh_idle_kib,
        pooled_idle_kib,
        fresh_with_100_kib,
        per_sandbox_kib,
        method,
    }
}

/// A cgroup v1 memory cgroup under the benchmark's own, which the benchmark moves
/// itself into so that everything it starts is charged there.
struct MemCgroup {
    dir: PathBuf,
    home: PathBuf,
}

impl MemCgroup {
    fn create() -> Option<MemCgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))?;
        let home = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
        let dir = home.join(format!("hatchery-bench-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(MemCgroup { dir, home })
    }

    fn enter(&self) {
        std::fs::write(
            self.dir.join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .expect("enter the memory cgroup");
    }

    fn leave(&self) {
        std::fs::write(
            self.home.join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .expect("leave the memory cgroup");
    }

    fn usage(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.usage_in_bytes"))
            .expect("memory usage")
            .trim()
            .parse()
            .expect("a number")
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        self.leave();
        // Its last tasks may take a moment to be gone; a daemon that ran in it left the
        // parent of its sandboxes' cgroups there.
        for _ in 0..100 {
            if let Ok(entries) = std::fs::read_dir(&self.dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            }
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// A way to start `LIVE` sleeping workloads and end them.
type Fleet = Box<dyn FnMut(bool)>;

fn per_sandbox(cgroup: &MemCgroup) -> (Vec<(String, f64)>, String) {
    let sleep_args = |prefix: &[String]| -> Vec<String> {
        let mut argv = prefix.to_vec();
        argv.extend(["/bin/sleep".to_string(), "1000".to_string()]);
        argv
    };
    let mut fleets: Vec<(String, Vec<String>)> = vec![("sleep, no sandbox".into(), Vec::new())];
    if let Some(unshare) = which("unshare") {
        // --kill-child: killing unshare must end its sleep too.
        fleets.push((
            "unshare -Urpnmiu --fork".into(),
            vec![
                unshare,
                "-Urpnmiu".into(),
                "--fork".into(),
                "--kill-child".into(),
            ],
        ));
    }
    if let Some(bwrap) = which("bwrap") {
        let mut argv = vec![bwrap];
        argv.extend(bwrap_args());
        fleets.push(("bwrap --unshare-all".into(), argv));
    }
    let mut costs = Vec::new();
    for (name, prefix) in fleets {
        let argv = sleep_args(&prefix);
        let cost = measure_fleet(
            cgroup,
            Box::new({
                let mut children: Vec<Child> = Vec::new();
                move |start| {
                    if start {
                        for _ in 0..LIVE {
                            children.push(
                                Command::new(&argv[0])
                                    .args(&argv[1..])
                                    .stdin(ProcessStdio::null())
                                    .stdout(ProcessStdio::null())
                                    .stderr(ProcessStdio::null())
                                    .spawn()
                                    .expect("spawn"),
                            );
                        }
                    } else {
                        for mut child in children.drain(..) {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                    }
                }
            }),
            None,
        );
        costs.push((name, cost));
    }
    // hatchery: a daemon started inside the cgroup, so its sandboxes are charged there.
    for (name, args) in [
        ("hatchery (fresh)", &[][..]),
        ("hatchery (warm pool of 4)", &["--warm-pool", "4"][..]),
    ] {
        cgroup.enter();
        let daemon = Daemon::start(args);
        cgroup.leave();
        let client = Client::connect(&daemon.socket).expect("connect");
        let cost = measure_fleet(
            cgroup,
            Box::new({
                let mut children = Vec::new();
                move |start| {
                    if start {
                        for _ in 0..LIVE {
                            children.push(
                                client
                                    .spawn_child(SpawnRequest::new("/bin/sleep").arg("1000"))
                                    .expect("spawn"),
                            );
                        }
                    } else {
                        for mut child in children.drain(..) {
                            child.kill().expect("kill");
                            child.wait().expect("wait");
                        }
                    }
                }
            }),
            Some(&daemon),
        );
        costs.push((name.to_string(), cost));
        drop(daemon);
    }
    let base = costs[0].1;
    let beyond = costs
        .iter()
        .skip(1)
        .map(|(name, cost)| (name.clone(), cost - base))
        .collect();
    (
        beyond,
        format!(
            "growth of a cgroup v1 memory cgroup (memory.usage_in_bytes: user and kernel \
             memory) while {LIVE} `sleep 1000` run in it, per process, less the same for \
             {LIVE} unsandboxed sleeps ({base:.0} KiB each); the spawner runs in the cgroup \
             (for hatchery, its daemon), median of 3 repetitions"
        ),
    )
}

/// KiB per live workload: the cgroup's growth from before `fleet(true)` to 300 ms after,
/// divided by `LIVE`; the median of 3 repetitions.
fn measure_fleet(cgroup: &MemCgroup, mut fleet: Fleet, daemon: Option<&Daemon>) -> f64 {
    let mut costs = Vec::new();
    for _ in 0..3 {
        if daemon.is_none() {
            cgroup.enter();
        }
        std::thread::sleep(Duration::from_millis(200));
        let before = cgroup.usage();
        fleet(true);
        std::thread::sleep(Duration::from_millis(300));
        let after = cgroup.usage();
        fleet(false);
        if daemon.is_none() {
            cgroup.leave();
        }
        costs.push((after as f64 - before as f64) / 1024.0 / LIVE as f64);
    }
    costs.sort_by(f64::total_cmp);
    costs[1]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Prints the latency tables, one per workload measured, and returns them as JSON.
/// One goal of the performance issue, checked against this run.
struct Goal {
    goal: &'static str,
    measured: String,
    /// `None` where a system it compares with was not measured here.
    met: Option<bool>,
}

/// The performance issue's goals (fresh and pooled latency against the floors and the
/// peers, throughput, memory), from this run's medians; the networked goal is the
/// network benchmark's.
fn goals(
    results: &[Measured],
    throughput: &[Throughput],
    memory: &Memory,
    clients: usize,
) -> Vec<Goal> {
    let latency = |system: &str| {
        results
            .iter()
            .find(|m| m.system == system && m.workload == Workload::True)
            .map(|m| {
                let mut samples = m.samples.clone();
                samples.sort();
                ms(percentile(&samples, 0.5))
            })
    };
    let fresh = latency("hatchery (library, fresh)");
    let pool = latency("hatchery (library, warm pool)");
    let faster = |peer: &'static str, ours: Option<f64>| {
        let (peer_ms, ours) = (latency(peer)?, ours?);
        Some((peer, peer_ms / ours))
    };
    // `ours` within `limit` times `floor`.
    let within =
        |goal: &'static str, ours: Option<f64>, floor: Option<f64>, limit: f64| match (ours, floor)
        {
            (Some(ours), Some(floor)) => Goal {
                goal,
                measured: format!("{ours:.2} / {floor:.2} ms = {:.2}×", ours / floor),
                met: Some(ours / floor <= limit),
            },
            _ => Goal {
                goal,
                measured: "—".into(),
                met: None,
            },
        };
    let mut goals = vec![within(
        "fresh spawn ≤ 1.3× a raw clone3 into the same namespaces plus exec",
        fresh,
        latency("raw clone3 + exec (user,pid,mnt,ipc,uts,net)"),
        1.3,
    )];
    let peers: Vec<_> = [
        "bwrap --unshare-all",
        "nsjail -Mo",
        "pyspawner (no network)",
    ]
    .into_iter()
    .map(|peer| faster(peer, fresh))
    .collect();
    goals.push(Goal {
        goal: "fresh spawn ≥ 2.5× faster than bwrap, nsjail, pyspawner",
        measured: peers
            .iter()
            .flatten()
            .map(|(peer, x)| format!("{peer}: {x:.2}×"))
            .collect::<Vec<_>>()
            .join(", "),
        met: peers
            .iter()
            .try_fold(true, |all, p| p.map(|(_, x)| all && x >= 2.5)),
    });
    goals.push(within(
        "warm pool ≤ 1.5× an unsandboxed posix_spawn",
        pool,
        latency("posix_spawn, no sandbox"),
        1.5,
    ));
    let bwrap = faster("bwrap --unshare-all", pool);
    goals.push(Goal {
        goal: "warm pool ≥ 5× faster than bwrap",
        measured: bwrap.map_or("—".into(), |(_, x)| format!("{x:.2}×")),
        met: bwrap.map(|(_, x)| x >= 5.0),
    });
    let spawns = |system: &str| {
        throughput
            .iter()
            .find(|t| t.system == system && t.clients == clients)
            .map(|t| median(&t.rounds))
    };
    let best = ["hatchery (library, fresh)", "hatchery (library, warm pool)"]
        .into_iter()
        .filter_map(spawns)
        .fold(None, |best: Option<f64>, x| {
            Some(best.map_or(x, |b| b.max(x)))
        });
    goals.push(Goal {
        goal: "≥ 1,500 sandboxed spawns/s with 2 clients",
        measured: best.map_or("—".into(), |x| format!("{x:.0}/s with {clients} clients")),
        met: best.filter(|_| clients == 2).map(|x| x >= 1500.0),
    });
    let per_sandbox = memory
        .per_sandbox_kib
        .iter()
        .find(|(name, _)| name == "hatchery (fresh)")
        .map(|(_, kib)| *kib);
    goals.push(Goal {
        goal: "≤ 500 KiB per live sandbox beyond the workload",
        measured: per_sandbox.map_or("—".into(), |kib| format!("{kib:.0} KiB")),
        met: per_sandbox.map(|kib| kib <= 500.0),
    });
    goals.push(Goal {
        goal: "the daemon idles under 10 MiB RSS",
        measured: format!("{} KiB", memory.fresh_idle_kib),
        met: Some(memory.fresh_idle_kib < 10 * 1024),
    });
    goals
}

fn report_latency(results: &mut [Measured], runs: usize) -> Vec<serde_json::Value> {
    let mut json = Vec::new();
    for workload in [Workload::True, Workload::Echo] {
        if !results.iter().any(|m| m.workload == workload) {
            continue;
        }
        println!(
            "\nspawn → exit of {}, {runs} interleaved rounds (after 20 warm-up runs each)\n",
            workload.name()
        );
        println!("| system | median ms | p90 ms | p99 ms | median vs hatchery fresh |");
        println!("|---|---:|---:|---:|---:|");
        let mut base = None;
        for m in results.iter_mut().filter(|m| m.workload == workload) {
            m.samples.sort();
            let (median, p90, p99) = (
                percentile(&m.samples, 0.5),
                percentile(&m.samples, 0.9),
                percentile(&m.samples, 0.99),
            );
            let base = *base.get_or_insert(median);
            println!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2}× |",
                m.system,
                ms(median),
                ms(p90),
                ms(p99),
                median.as_secs_f64() / base.as_secs_f64()
            );
            json.push(serde_json::json!({
                "system": m.system,
                "workload": workload.name(),
                "median_ms": ms(median),
                "p90_ms": ms(p90),
                "p99_ms": ms(p99),
                "samples_ms": m.samples.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            }));
        }
    }
    json
}

fn report(
    systems: &[System],
    results: &mut [Measured],
    breakdown: &[Breakdown],
    throughput: &[Throughput],
    memory: &Memory,
    runs: usize,
    clients: usize,
) -> String {
    let json = report_latency(results, runs);
    println!(
        "\nhatchery's spawn of /bin/true in two halves, medians of {runs} interleaved rounds\n"
    );
    println!("| system | request → Spawned ms | Spawned → Exited ms |");
    println!("|---|---:|---:|");
    for b in breakdown {
        println!(
            "| {} | {:.2} | {:.2} |",
            b.system, b.to_spawned_ms, b.to_exited_ms
        );
    }
    println!("\nthroughput of /bin/true, spawns/s (median of the rounds)\n");
    println!("| system | 1 client | {clients} clients |");
    println!("|---|---:|---:|");
    let mut tp_json = Vec::new();
    for pair in throughput.chunks(2) {
        println!(
            "| {} | {:.0} | {:.0} |",
            pair[0].system,
            median(&pair[0].rounds),
            median(&pair[1].rounds)
        );
        for t in pair {
            tp_json.push(serde_json::json!({
                "system": t.system,
                "clients": t.clients,
                "spawns_per_s": median(&t.rounds),
                "rounds": t.rounds,
            }));
        }
    }
    println!("\nmemory\n");
    println!(
        "- daemon RSS idle: {} KiB (warm pool of 4: {} KiB); with {LIVE} live sandboxes: {} KiB",
        memory.fresh_idle_kib, memory.pooled_idle_kib, memory.fresh_with_100_kib
    );
    for (name, kib) in &memory.per_sandbox_kib {
        println!("- per live sandbox beyond its workload, {name}: {kib:.0} KiB");
    }
    println!("- method: {}", memory.method);
    let goals = goals(results, throughput, memory, clients);
    println!("\nthe goals of the performance issue, against this run\n");
    println!("| goal | this run | met? |");
    println!("|---|---|---|");
    for goal in &goals {
        let met = match goal.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not measured",
        };
        println!("| {} | {} | {met} |", goal.goal, goal.measured);
    }
    println!("\ncommands (W is the workload's argv):");
    for system in systems {
        println!("- {}: `{}`", system.name, system.command);
    }
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "runs": runs,
        "latency": json,
        "throughput": tp_json,
        "breakdown": breakdown.iter()
            .map(|b| serde_json::json!({
                "system": b.system,
                "to_spawned_ms": b.to_spawned_ms,
                "to_exited_ms": b.to_exited_ms,
            }))
            .collect::<Vec<_>>(),
        "memory": {
            "daemon_rss_idle_kib": memory.fresh_idle_kib,
            "daemon_rss_idle_warm_pool_4_kib": memory.pooled_idle_kib,
            "daemon_rss_with_100_live_kib": memory.fresh_with_100_kib,
            "per_sandbox_beyond_workload_kib": memory.per_sandbox_kib.iter()
                .map(|(name, kib)| serde_json::json!({"system": name, "kib": kib}))
                .collect::<Vec<_>>(),
            "method": memory.method,
        },
        "commands": systems.iter()
            .map(|s| serde_json::json!({"system": s.name, "command": s.command}))
            .collect::<Vec<_>>(),
        "goals": goals.iter()
            .map(|g| serde_json::json!({"goal": g.goal, "measured": g.measured, "met": g.met}))
            .collect::<Vec<_>>(),
    }))
    .expect("json");
    text
}

/// Writes the raw samples where `HATCHERY_BENCH_JSON` says, by default
/// `target/bench/spawn.json` (which the figures of docs/performance.md come from).
fn keep_raw_samples(text: &str) {
    let out = std::env::var_os("HATCHERY_BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/spawn.json"));
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&out, text).expect("write results");
    println!("\nraw samples: {}", out.display());
}
