//! Spawn → exit latency of `/bin/true`, hatchery next to its peers, in one interleaved run.
//!
//! Run with `benches/spawn.sh` (installs the peers, then `cargo bench --bench spawn`). Each
//! round runs every system once, in an order that rotates between rounds, so that drift
//! of this noisy machine (other load, frequency, page cache) lands on all of them alike.
//! Every system's stdio is /dev/null and each measurement covers start to reaped exit.
//!
//! Environment: `HATCHERY_BENCH_RUNS` (default 500), `HATCHERY_BENCH_JSON` (where the
//! raw results go, default `target/bench/spawn.json`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcessStdio};
use std::time::{Duration, Instant};

use hatchery::{Client, SpawnRequest, Stdio};

const HATCHERY: &str = env!("CARGO_BIN_EXE_hatchery");

/// One system under test: a name, the exact command it stands for, and one spawn → exit.
struct System {
    name: &'static str,
    command: String,
    run: Box<dyn FnMut() -> Duration>,
    samples: Vec<Duration>,
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    let runs: usize = std::env::var("HATCHERY_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = dir.path().join("bench.sock");
    let mut daemon = Command::new(HATCHERY)
        .args(["serve", "--socket"])
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start hatchery serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hatchery::client::probe_socket(&socket) {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut systems = vec![
        hatchery_library(&socket),
        hatchery_cli(&socket),
        plain_spawn(),
    ];
    systems.extend(unshare());
    systems.extend(bwrap());

    for system in &mut systems {
        for _ in 0..20 {
            (system.run)();
        }
    }
    for round in 0..runs {
        let count = systems.len();
        for i in 0..count {
            let system = &mut systems[(i + round) % count];
            let elapsed = (system.run)();
            system.samples.push(elapsed);
        }
    }

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    report(&mut systems, runs);
}

fn hatchery_library(socket: &Path) -> System {
    let client = Client::connect(socket).expect("connect");
    System {
        name: "hatchery (daemon, library)",
        command: "Client::spawn_child(/bin/true) + wait()".into(),
        run: Box::new(move || {
            let start = Instant::now();
            let request = SpawnRequest::new("/bin/true")
                .stdin(Stdio::Null)
                .stdout(Stdio::Null)
                .stderr(Stdio::Null);
            let mut child = client.spawn_child(request).expect("spawn");
            assert!(child.wait().expect("wait").status.success());
            start.elapsed()
        }),
        samples: Vec::new(),
    }
}

fn hatchery_cli(socket: &Path) -> System {
    let args = vec![
        "run".to_string(),
        "--socket".into(),
        socket.display().to_string(),
        "--".into(),
        "/bin/true".into(),
    ];
    command_system("hatchery run (CLI, daemon)", HATCHERY, args)
}

fn plain_spawn() -> System {
    command_system("posix_spawn, no sandbox", "/bin/true", Vec::new())
}

fn unshare() -> Option<System> {
    let args = ["-Urpnmiu", "--fork", "/bin/true"]
        .map(String::from)
        .to_vec();
    which("unshare").map(|path| command_system("unshare -Urpnmiu --fork", &path, args))
}

/// bwrap with the same namespaces and a root like hatchery's default: the host's /usr,
/// /etc and /lib* read-only (symlinks kept), fresh /proc, minimal /dev, private /tmp.
fn bwrap() -> Option<System> {
    let path = which("bwrap")?;
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
    args.extend(
        [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "/bin/true",
        ]
        .map(String::from),
    );
    Some(command_system("bwrap --unshare-all", &path, args))
}

fn command_system(name: &'static str, program: &str, args: Vec<String>) -> System {
    let command = std::iter::once(program.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let program = program.to_string();
    System {
        name,
        command,
        run: Box::new(move || {
            let start = Instant::now();
            let status = Command::new(&program)
                .args(&args)
                .stdin(ProcessStdio::null())
                .stdout(ProcessStdio::null())
                .stderr(ProcessStdio::null())
                .status()
                .expect("spawn");
            assert!(status.success(), "{program} failed: {status}");
            start.elapsed()
        }),
        samples: Vec::new(),
    }
}

fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(systems: &mut [System], runs: usize) {
    for system in systems.iter_mut() {
        system.samples.sort();
    }
    let base = percentile(&systems[0].samples, 0.5);
    println!("spawn → exit of /bin/true, {runs} interleaved rounds (after 20 warm-up runs each)\n");
    println!("| system | median ms | p90 ms | p99 ms | median vs hatchery |");
    println!("|---|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for system in systems.iter() {
        let (median, p90, p99) = (
            percentile(&system.samples, 0.5),
            percentile(&system.samples, 0.9),
            percentile(&system.samples, 0.99),
        );
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2}× |",
            system.name,
            ms(median),
            ms(p90),
            ms(p99),
            median.as_secs_f64() / base.as_secs_f64()
        );
        json.push(serde_json::json!({
            "system": system.name,
            "command": system.command,
            "median_ms": ms(median),
            "p90_ms": ms(p90),
            "p99_ms": ms(p99),
            "samples_ms": system.samples.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        }));
    }
    println!("\ncommands:");
    for system in systems.iter() {
        println!("- {}: `{}`", system.name, system.command);
    }
    let out = std::env::var_os("HATCHERY_BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/spawn.json"));
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let text = serde_json::to_string_pretty(&serde_json::json!({ "runs": runs, "results": json }))
        .expect("json");
    std::fs::write(&out, text).expect("write results");
    println!("\nraw samples: {}", out.display());
}
