//! Persistent sandboxes (issue 21): spawn → exit of `/bin/true` as one more command of
//! a live sandbox, against its peers in the same run, interleaved (each round runs every
//! system once, in an order that rotates): an unsandboxed `posix_spawn`, a fresh
//! hatchery sandbox, `nsenter` into a running `unshare` sandbox, and `docker exec` when
//! a Docker engine is already running (this never starts one). Then `put` and `fetch` of
//! 1 MiB. Prints a table (medians, p90, ratio to `posix_spawn`); see
//! docs/performance.md.
//!
//! Run as root: `cargo bench --bench persistent` (`HATCHERY_BENCH_RUNS`, default 300).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio as StdStdio};
use std::time::{Duration, Instant};

use hatchery::protocol::SandboxOptions;
use hatchery::{Client, ExecRequest, SandboxConfig, SpawnRequest, Stdio};

const HATCHERY: &str = env!("CARGO_BIN_EXE_hatchery");

struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("bench.sock");
        let child = Command::new(HATCHERY)
            .args(["serve", "--socket"])
            .arg(&socket)
            .env("RUST_LOG", "error")
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

/// A system: its name and one spawn → exit of `/bin/true`.
struct System {
    name: String,
    run: Box<dyn FnMut()>,
    samples: Vec<Duration>,
}

fn command(program: &str, args: &[&str]) -> Box<dyn FnMut()> {
    let (program, args) = (
        program.to_string(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    Box::new(move || {
        let status = Command::new(&program)
            .args(&args)
            .stdin(StdStdio::null())
            .stdout(StdStdio::null())
            .stderr(StdStdio::null())
            .status()
            .expect("run");
        assert!(status.success(), "{program} {args:?}: {status}");
    })
}

/// `unshare` holding a sandbox (user, pid, net, mount, ipc, uts) with a `sleep` in it,
/// and the sleep's pid, to `nsenter` into.
fn unshare_sandbox() -> Option<(Child, i32)> {
    let child = Command::new("unshare")
        .args(["-Urpnmiu", "--fork", "--kill-child", "sleep", "3600"])
        .stdin(StdStdio::null())
        .stdout(StdStdio::null())
        .stderr(StdStdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
                .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return Some((child, pid));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn docker_running() -> bool {
    std::path::Path::new("/var/run/docker.sock").exists()
        && Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(StdStdio::null())
            .stderr(StdStdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let runs: usize = std::env::var("HATCHERY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).expect("connect");
    let sandbox = client
        .create_sandbox(SandboxConfig::default(), SandboxOptions::default())
        .expect("a persistent sandbox");
    let mut systems = vec![
        System {
            name: "posix_spawn, no sandbox".into(),
            run: command("/bin/true", &[]),
            samples: Vec::new(),
        },
        System {
            name: "hatchery: command in a live sandbox".into(),
            run: {
                let sandbox = client.open_sandbox(sandbox.name());
                Box::new(move || {
                    let request = ExecRequest::new("/bin/true")
                        .stdin(Stdio::Null)
                        .stdout(Stdio::Null)
                        .stderr(Stdio::Null);
                    let verdict = sandbox.spawn(request).expect("exec").wait().expect("wait");
                    assert!(verdict.status.success());
                })
            },
            samples: Vec::new(),
        },
        System {
            name: "hatchery: fresh sandbox".into(),
            run: {
                let client = client.clone();
                Box::new(move || {
                    let request = SpawnRequest::new("/bin/true")
                        .stdin(Stdio::Null)
                        .stdout(Stdio::Null)
                        .stderr(Stdio::Null);
                    let verdict = client
                        .spawn_child(request)
                        .expect("spawn")
                        .wait()
                        .expect("wait");
                    assert!(verdict.status.success());
                })
            },
            samples: Vec::new(),
        },
    ];
    let held = unshare_sandbox();
    if let Some((_, pid)) = &held {
        let target = pid.to_string();
        systems.push(System {
            name: "nsenter into a running unshare sandbox".into(),
            run: command(
                "nsenter",
                &[
                    "-t",
                    &target,
                    "-U",
                    "-p",
                    "-n",
                    "-m",
                    "-i",
                    "-u",
                    "--preserve-credentials",
                    "/bin/true",
                ],
            ),
            samples: Vec::new(),
        });
    } else {
        eprintln!("no unshare sandbox: nsenter left out");
    }
    if docker_running() {
        eprintln!(
            "a Docker engine runs, but this benchmark starts no container: docker exec left out"
        );
    } else {
        eprintln!("no Docker engine running: docker exec left out (never started here)");
    }
    // Warm-up: one of each.
    for system in &mut systems {
        (system.run)();
    }
    for round in 0..runs {
        let count = systems.len();
        for k in 0..count {
            let system = &mut systems[(round + k) % count];
            let started = Instant::now();
            (system.run)();
            system.samples.push(started.elapsed());
        }
    }
    let floor = {
        let mut sorted = systems[0].samples.clone();
        sorted.sort();
        percentile(&sorted, 0.5)
    };
    println!("spawn → exit of /bin/true, {runs} interleaved rounds");
    println!("| system | median | p90 | p99 | median / posix_spawn |");
    println!("|---|---|---|---|---|");
    for system in &systems {
        let mut sorted = system.samples.clone();
        sorted.sort();
        let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
        println!(
            "| {} | {} | {} | {} | {:.2}× |",
            system.name,
            us(percentile(&sorted, 0.5)),
            us(percentile(&sorted, 0.9)),
            us(percentile(&sorted, 0.99)),
            percentile(&sorted, 0.5).as_secs_f64() / floor.as_secs_f64()
        );
    }

    // put and fetch of 1 MiB.
    let data = vec![0x5a_u8; 1 << 20];
    let (mut puts, mut fetches) = (Vec::new(), Vec::new());
    for _ in 0..runs.min(100) {
        let started = Instant::now();
        sandbox.put("/tmp/mib", &data, 0o644).expect("put");
        puts.push(started.elapsed());
        let started = Instant::now();
        let back = sandbox.fetch("/tmp/mib", 2 << 20).expect("fetch");
        fetches.push(started.elapsed());
        assert_eq!(back.len(), data.len());
    }
    puts.sort();
    fetches.sort();
    println!();
    println!("| 1 MiB | median | p90 |");
    println!("|---|---|---|");
    for (name, sorted) in [("put", &puts), ("fetch", &fetches)] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms |",
            percentile(sorted, 0.5).as_secs_f64() * 1e3,
            percentile(sorted, 0.9).as_secs_f64() * 1e3
        );
    }
    sandbox.destroy().expect("destroy");
    // SIGKILL: unshare waits out a SIGTERM; --kill-child takes its sleep with it.
    if let Some((mut unshare, _)) = held {
        let _ = unshare.kill();
        let _ = unshare.wait();
    }
}
