//! Spawn → exit of a networked child that connects to its host end over TCP, hatchery
//! next to pyspawner's networked spawn and to hatchery without a network, interleaved.
//!
//! Run with `benches/network.sh` (installs pyspawner in a virtualenv, then
//! `cargo bench --bench network`), as root. Each round runs every system once, in an
//! order that rotates between rounds. A networked child connects to the host end of its
//! veth, sends `ping` and reads `pong` from a listener of this benchmark; each system's
//! listener counts the connections, and the run fails unless every spawn made one.
//!
//! - hatchery, veth: the daemon (`serve --veth-pool`) spawns `hatchery-probe tcp 0 0
//!   gw4:PORT` with `NetworkConfig::Veth`; timed from `spawn_child` to `wait()`.
//! - hatchery, veth, warm pool: the same request to a second daemon (`serve --veth-pool
//!   .. --warm-pool 2 --warm-pool-shape` the request's sandbox), served by an idle
//!   sandbox whose veth is already up.
//! - hatchery, no network: the same probe, `tcp 0 0` (no connection), default sandbox.
//! - pyspawner, veth: `benches/pyspawner_net.py` (one pyspawner, its `NetworkConfig`),
//!   timed from the request line to the `ok` after the child's `waitpid`.
//!
//! Traffic goes only to the host ends of veths made here. Environment:
//! `HATCHERY_BENCH_RUNS` (default 500), `HATCHERY_BENCH_PYTHON` (a Python with
//! pyspawner; without it pyspawner is left out), `HATCHERY_BENCH_JSON` (raw results,
//! default `target/bench/network.json`), `HATCHERY_BENCH_QUICK=1` (5 rounds after 2
//! warm-up runs, and no results file unless `HATCHERY_BENCH_JSON` names one: for CI, not
//! for figures).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio as ProcessStdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hatchery::protocol::{Bind, NetworkConfig, SandboxConfig, VethConfig};
use hatchery::{Client, SpawnRequest, Stdio};

const HATCHERY: &str = env!("CARGO_BIN_EXE_hatchery");
const PROBE: &str = env!("CARGO_BIN_EXE_hatchery-probe");
/// Untimed spawns of each system before the timed rounds (a full run).
const WARM_UP: usize = 20;
/// The same in quick mode.
const QUICK_WARM_UP: usize = 2;

struct System {
    name: &'static str,
    command: String,
    run: Box<dyn FnMut() -> Duration>,
    /// Connections its children must have made, and those its listener counted.
    expected_connections: Option<Arc<AtomicUsize>>,
    samples: Vec<Duration>,
}

fn main() {
    let quick = std::env::var("HATCHERY_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs: usize = std::env::var("HATCHERY_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 5 } else { 500 });
    let warm_up = if quick { QUICK_WARM_UP } else { WARM_UP };
    // A quick run's figures mean nothing: they never replace a full run's file.
    let keep = !quick || std::env::var_os("HATCHERY_BENCH_JSON").is_some();
    if quick {
        println!("quick mode: a few rounds; the figures mean nothing");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = dir.path().join("bench.sock");
    // Each daemon's sandboxes may reach its listener's port on their host end (the
    // default policy, `none`, refuses every other).
    let (fresh_listener, pooled_listener) = (listener(), listener());
    let fresh_port = format!("{}/tcp", fresh_listener.0);
    let pooled_port = format!("{}/tcp", pooled_listener.0);
    let mut daemon = start_daemon(
        &socket,
        &[
            "--veth-pool",
            "10.215.0.0/20",
            "--veth-pool",
            "fd00:6869:ff::/112",
            "--veth-prefix",
            "hbench",
            "--veth-host-port",
            &fresh_port,
        ],
    );
    let pooled_socket = dir.path().join("pooled.sock");
    let shape = dir.path().join("shape.json");
    let shape_config = probe_request(&[], NetworkConfig::Veth(VethConfig::default())).sandbox;
    std::fs::write(&shape, serde_json::to_string(&shape_config).expect("JSON")).expect("shape");
    let mut pooled_daemon = start_daemon(
        &pooled_socket,
        &[
            "--veth-pool",
            "10.215.16.0/20",
            "--veth-pool",
            "fd00:6869:fe::/112",
            "--veth-prefix",
            "hbenp",
            "--veth-host-port",
            &pooled_port,
            "--warm-pool",
            "2",
            "--warm-pool-shape",
            shape.to_str().expect("UTF-8 path"),
        ],
    );

    let mut systems = vec![
        hatchery_veth(
            &socket,
            fresh_listener,
            "hatchery, veth, connect to host end",
            "",
        ),
        hatchery_veth(
            &pooled_socket,
            pooled_listener,
            "hatchery, veth, warm pool, connect to host end",
            " --warm-pool 2 --warm-pool-shape <the request's sandbox>",
        ),
        hatchery_no_network(&socket),
    ];
    systems.extend(pyspawner_veth());

    for system in &mut systems {
        for _ in 0..warm_up {
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
    for system in &systems {
        if let Some(connections) = &system.expected_connections {
            // The last connection may still be in the listener's hands.
            let deadline = Instant::now() + Duration::from_secs(2);
            while connections.load(Ordering::SeqCst) < runs + warm_up && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                connections.load(Ordering::SeqCst),
                runs + warm_up,
                "{}: not every child reached its host end",
                system.name
            );
        }
    }
    for daemon in [&mut daemon, &mut pooled_daemon] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = daemon.wait();
    }
    report(&mut systems, runs, warm_up, keep);
}

fn start_daemon(socket: &Path, flags: &[&str]) -> Child {
    let daemon = Command::new(HATCHERY)
        .args(["serve", "--socket"])
        .arg(socket)
        .args(flags)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start hatchery serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hatchery::client::probe_socket(socket) {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    daemon
}

/// A listener on all addresses (children reach only their own host end's) that answers
/// `pong` to each `ping` and counts the connections.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(("::", 0)).expect("bind [::]:0");
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = BufReader::new(&mut stream).read_line(&mut line);
            let _ = stream.write_all(b"pong\n");
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

/// The probe, run from its build directory bound read-only at `/probe`: a directory bind
/// at the top of the root, as a service binds its job's directory, for which the daemon
/// keeps a root template (a file bound there would assemble each root in its sandbox).
fn probe_request(args: &[&str], network: NetworkConfig) -> SpawnRequest {
    let dir = Path::new(PROBE).parent().expect("the build directory");
    let sandbox = SandboxConfig {
        binds: vec![Bind::read_only(dir, "/probe")],
        network,
        ..SandboxConfig::default()
    };
    SpawnRequest::new("/probe/hatchery-probe")
        .args(args)
        .sandbox(sandbox)
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null)
}

fn hatchery_veth(
    socket: &Path,
    (port, connections): (u16, Arc<AtomicUsize>),
    name: &'static str,
    extra_flags: &str,
) -> System {
    let client = Client::connect(socket).expect("connect");
    let target = format!("gw4:{port}");
    let network = NetworkConfig::Veth(VethConfig::default());
    System {
        name,
        command: format!(
            "Client::spawn_child(hatchery-probe tcp 0 0 gw4:PORT, NetworkConfig::Veth) + \
             wait() [serve --veth-pool 10.215.x.0/20 --veth-pool fd00:6869:xx::/112 \
             --veth-host-port PORT/tcp{extra_flags}]"
        ),
        run: Box::new(move || {
            let start = Instant::now();
            let request = probe_request(&["tcp", "0", "0", &target], network.clone());
            let mut child = client.spawn_child(request).expect("spawn");
            assert!(child.wait().expect("wait").status.success());
            start.elapsed()
        }),
        expected_connections: Some(connections),
        samples: Vec::new(),
    }
}

fn hatchery_no_network(socket: &Path) -> System {
    let client = Client::connect(socket).expect("connect");
    System {
        name: "hatchery, no network",
        command: "Client::spawn_child(hatchery-probe tcp 0 0, NetworkConfig::None) + wait()".into(),
        run: Box::new(move || {
            let start = Instant::now();
            let request = probe_request(&["tcp", "0", "0"], NetworkConfig::None);
            let mut child = client.spawn_child(request).expect("spawn");
            assert!(child.wait().expect("wait").status.success());
            start.elapsed()
        }),
        expected_connections: None,
        samples: Vec::new(),
    }
}

fn pyspawner_veth() -> Option<System> {
    let Some(python) = std::env::var_os("HATCHERY_BENCH_PYTHON") else {
        println!(
            "skipped: pyspawner (HATCHERY_BENCH_PYTHON is not set; benches/network.sh sets it)"
        );
        return None;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pyspawner_net.py");
    let (port, connections) = listener();
    let child = Command::new(&python)
        .arg(&script)
        .arg(port.to_string())
        .stdin(ProcessStdio::piped())
        .stdout(ProcessStdio::piped())
        .spawn()
        .expect("start the pyspawner driver");
    let mut driver = Driver::new(child);
    Some(System {
        name: "pyspawner, veth, connect to host end",
        command: format!(
            "{} benches/pyspawner_net.py PORT (pyspawner 1.0.0, NetworkConfig())",
            Path::new(&python).display()
        ),
        run: Box::new(move || {
            let start = Instant::now();
            let line = driver.spawn_one();
            let elapsed = start.elapsed();
            assert_eq!(line, "ok\n", "pyspawner's child failed");
            elapsed
        }),
        expected_connections: Some(connections),
        samples: Vec::new(),
    })
}

/// The pyspawner driver: one line in, one line out per spawn; ended (stdin closed,
/// then reaped) when dropped.
struct Driver {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Driver {
    fn new(mut child: Child) -> Driver {
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Driver {
            child,
            input,
            output,
        }
    }

    fn spawn_one(&mut self) -> String {
        let input = self.input.as_mut().expect("driver stdin");
        input
            .write_all(b"go\n")
            .expect("write to the pyspawner driver");
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .expect("read the pyspawner driver");
        line
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(systems: &mut [System], runs: usize, warm_up: usize, keep: bool) {
    for system in systems.iter_mut() {
        system.samples.sort();
    }
    println!("spawn → exit, {runs} interleaved rounds (after {warm_up} warm-up runs each)\n");
    println!("| system | median ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for system in systems.iter() {
        let samples = &system.samples;
        let (median, p90, p99, max) = (
            percentile(samples, 0.5),
            percentile(samples, 0.9),
            percentile(samples, 0.99),
            samples[samples.len() - 1],
        );
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            system.name,
            ms(median),
            ms(p90),
            ms(p99),
            ms(max)
        );
        json.push(serde_json::json!({
            "system": system.name,
            "command": system.command,
            "median_ms": ms(median),
            "p90_ms": ms(p90),
            "p99_ms": ms(p99),
            "max_ms": ms(max),
            "samples_ms": samples.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        }));
    }
    let theirs = systems.iter().find(|s| s.name.starts_with("pyspawner"));
    if let (Some(ours), Some(theirs)) = (systems.first(), theirs) {
        let ratio = percentile(&theirs.samples, 0.5).as_secs_f64()
            / percentile(&ours.samples, 0.5).as_secs_f64();
        println!("\nmedian, pyspawner's networked spawn / hatchery's: {ratio:.1}×");
        // The performance issue's networked goal, for each way hatchery spawned.
        println!(
            "\nthe networked goal (median under 3 ms and more than 20× faster than pyspawner's):"
        );
        let pyspawner_ms = ms(percentile(&theirs.samples, 0.5));
        for ours in systems
            .iter()
            .filter(|s| s.name.starts_with("hatchery, veth"))
        {
            let median_ms = ms(percentile(&ours.samples, 0.5));
            let ratio = pyspawner_ms / median_ms;
            let met = median_ms < 3.0 && ratio > 20.0;
            println!(
                "- {}: {median_ms:.2} ms, {ratio:.1}×: {}",
                ours.name,
                if met { "met" } else { "not met" }
            );
        }
    }
    println!("\ncommands:");
    for system in systems.iter() {
        println!("- {}: `{}`", system.name, system.command);
    }
    let out = std::env::var_os("HATCHERY_BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/network.json"));
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let text = serde_json::to_string_pretty(&serde_json::json!({ "runs": runs, "results": json }))
        .expect("json");
    if !keep {
        println!(
            "\nquick mode: the raw results ({} bytes) are not kept",
            text.len()
        );
        return;
    }
    std::fs::write(&out, text).expect("write results");
}
