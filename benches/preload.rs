//! What preloading buys, in one interleaved run: per-call latency of the example zygote's
//! `lookup` entry with 0, 256 MiB, 1 GiB and 4 GiB preloaded in a sealed `Preloaded`
//! region (and, for comparison, 256 MiB and 1 GiB on the heap, which each fork must copy
//! the page tables of); the cold start the zygote saves (a sandboxed process that builds
//! the 1 GiB table itself); and the memory 100 concurrent children add (PSS from
//! `/proc/PID/smaps_rollup`, page tables from `VmPTE`).
//!
//! Run as root:
//! `cargo build --release --example preloaded_zygote && cargo bench --bench preload`.
//! Environment: `HATCHERY_BENCH_RUNS` (rounds, default 200), `HATCHERY_BENCH_COLD_RUNS`
//! (default 7), `HATCHERY_BENCH_CHILDREN` (default 100), `HATCHERY_BENCH_QUICK=1` (every
//! section once over, for CI: 10 rounds, one cold start, 5 children, and 64 MiB tables
//! instead of 256 MiB to 4 GiB; its figures mean nothing).
//!
//! Runs on the host as the client of the example's zygotes; it counts their processes
//! from the host's `/proc`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hatchery::protocol::{Bind, SandboxConfig, Stdio};
use hatchery::{Client, SpawnRequest};
use serde::Serialize;

const HATCHERY: &str = env!("CARGO_BIN_EXE_hatchery");

#[derive(Serialize)]
struct LookupArgs {
    key: u64,
}

/// One zygote of the example under test.
struct Zygote {
    name: String,
    process: Stopped,
    client: Client,
    samples: Vec<Duration>,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let quick = std::env::var("HATCHERY_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs = env_number("HATCHERY_BENCH_RUNS", if quick { 10 } else { 200 });
    let cold_runs = env_number("HATCHERY_BENCH_COLD_RUNS", if quick { 1 } else { 7 });
    let children = env_number("HATCHERY_BENCH_CHILDREN", if quick { 5 } else { 100 });
    if quick {
        println!("quick mode: every section once over; the figures mean nothing");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let example = example_binary(dir.path());

    let configs: &[(&str, usize, bool)] = if quick {
        &[
            ("sealed 0 MiB", 0, false),
            ("sealed 64 MiB", 64, false),
            ("heap 64 MiB", 64, true),
        ]
    } else {
        &[
            ("sealed 0 MiB", 0, false),
            ("sealed 256 MiB", 256, false),
            ("sealed 1 GiB", 1024, false),
            ("sealed 4 GiB", 4096, false),
            ("heap 256 MiB", 256, true),
            ("heap 1 GiB", 1024, true),
        ]
    };
    // The zygotes whose children's memory is measured, and the table a cold start builds.
    let (measured, cold_mib) = if quick {
        (["sealed 64 MiB", "heap 64 MiB"], 64)
    } else {
        (["sealed 1 GiB", "heap 1 GiB"], 1024)
    };
    let mut zygotes: Vec<Zygote> = configs
        .iter()
        .map(|&(name, mib, heap)| start_zygote(&example, dir.path(), name, mib, heap))
        .collect();

    // The cold start: the stock daemon runs the example, which builds the table itself.
    let stock = start_stock(dir.path());
    let stock_client = Client::connect(dir.path().join("stock.sock")).expect("connect");
    let mut cold = Vec::new();

    for zygote in &mut zygotes {
        for key in 0..10 {
            call(&zygote.client, key);
        }
    }
    let cold_every = (runs / cold_runs.max(1)).max(1);
    for round in 0..runs {
        let n = zygotes.len();
        for i in 0..n {
            let zygote = &mut zygotes[(round + i) % n];
            let started = Instant::now();
            call(&zygote.client, round as u64 * 7919);
            zygote.samples.push(started.elapsed());
        }
        if round % cold_every == 0 && cold.len() < cold_runs {
            cold.push(cold_start(&stock_client, &example, cold_mib, round as u64));
        }
    }

    println!("\n## per-call latency, {runs} interleaved rounds\n");
    println!("| preload | median ms | p90 ms | p99 ms | median vs sealed 0 MiB |");
    println!("|---|---:|---:|---:|---:|");
    let base = median(&mut zygotes[0].samples.clone());
    for zygote in &mut zygotes {
        print_row(&zygote.name, &mut zygote.samples, base);
    }
    print_row(
        &format!("cold start, {cold_mib} MiB (builds it)"),
        &mut cold,
        base,
    );

    println!("\n## memory of {children} concurrent children\n");
    println!("| zygote | zygote PSS MiB | added PSS MiB (per child KiB) | added page tables MiB |");
    println!("|---|---:|---:|---:|");
    for zygote in zygotes
        .iter()
        .filter(|z| measured.contains(&z.name.as_str()))
    {
        memory(zygote, children);
    }
    drop(stock_client);
    drop(stock);
}

/// A daemon stopped (SIGTERM, then reaped) when this is dropped, also on a panic.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// The example, built in this benchmark's profile (`cargo build --release --example
/// preloaded_zygote` for `cargo bench`; `cargo test` builds it in the test profile), copied
/// where the sandbox's unprivileged uid can read it (for the cold start).
fn example_binary(dir: &Path) -> PathBuf {
    let bench = std::env::current_exe().expect("current exe");
    let profile_dir = bench
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let built = profile_dir.join("examples/preloaded_zygote");
    let release = if profile_dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    assert!(
        built.exists(),
        "{} is missing: cargo build{release} --example preloaded_zygote",
        built.display()
    );
    let copy = dir.join("preloaded_zygote");
    std::fs::copy(&built, &copy).expect("copy the example");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

fn start_zygote(example: &Path, dir: &Path, name: &str, mib: usize, heap: bool) -> Zygote {
    let socket = dir.join(format!("{}.sock", name.replace(' ', "-")));
    let process = Command::new(example)
        .arg("--socket")
        .arg(&socket)
        .env("HATCHERY_TABLE_MIB", mib.to_string())
        .env("HATCHERY_TABLE_HEAP", if heap { "1" } else { "0" })
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start the example zygote");
    let process = Stopped(process);
    wait_for(&socket, Duration::from_secs(600));
    Zygote {
        name: name.to_string(),
        process,
        client: Client::connect(&socket).expect("connect"),
        samples: Vec::new(),
    }
}

fn start_stock(dir: &Path) -> Stopped {
    let socket = dir.join("stock.sock");
    let process = Command::new(HATCHERY)
        .args(["serve", "--socket"])
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start hatchery serve");
    let process = Stopped(process);
    wait_for(&socket, Duration::from_secs(10));
    process
}

fn wait_for(socket: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !hatchery::client::probe_socket(socket) {
        assert!(
            Instant::now() < deadline,
            "{} did not start",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn call(client: &Client, key: u64) -> Option<u64> {
    client
        .call("lookup", &LookupArgs { key }, SandboxConfig::default())
        .expect("lookup")
}

/// Spawn → reaped exit of a sandboxed process that builds a table of `mib` MiB (1 GiB in
/// a full run) and looks one key up.
fn cold_start(client: &Client, example: &Path, mib: usize, key: u64) -> Duration {
    let request = SpawnRequest::new("/bench/preloaded_zygote")
        .args(["cold-lookup", &key.to_string()])
        .env("HATCHERY_TABLE_MIB", mib.to_string())
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null)
        .sandbox(SandboxConfig {
            binds: vec![Bind::read_only(example, "/bench/preloaded_zygote")],
            ..SandboxConfig::default()
        });
    let started = Instant::now();
    let mut child = client.spawn_child(request).expect("spawn the cold start");
    let verdict = child.wait().expect("wait");
    assert!(verdict.status.success(), "cold start failed: {verdict:?}");
    started.elapsed()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn print_row(name: &str, samples: &mut [Duration], base: Duration) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2}× |",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(0.5)) / ms(base)
    );
}

/// Spawns `count` children of the `hold` entry, waits until each has read the table,
/// and sums the PSS and page tables of the zygote's whole tree against the zygote alone.
fn memory(zygote: &Zygote, count: usize) {
    let pid = zygote.process.0.id() as i32;
    let (alone_pss, alone_pte) = usage(&[pid]);
    let mut held = Vec::new();
    for key in 0..count {
        let request = SpawnRequest::entry(
            "hold",
            &LookupArgs {
                key: key as u64 * 4099,
            },
        )
        .expect("encode")
        .stdin(Stdio::Pipe);
        let mut child = zygote.client.spawn_child(request).expect("spawn hold");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read ready");
        assert_eq!(line, "ready\n");
        held.push(child);
    }
    // The zygote's helper that makes network namespaces ahead is its child too, but no
    // child's cost: it is left out, as the zygote alone was measured without it.
    let tree: Vec<i32> = descendants(pid)
        .into_iter()
        .filter(|&process| !is_netns_helper(pid, process))
        .collect();
    assert_eq!(
        tree.len(),
        1 + 2 * count,
        "zygote, and an init and a workload per child: {tree:?}"
    );
    let (pss, pte) = usage(&tree);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "| {} | {:.1} | {:.1} ({:.0}) | {:.1} |",
        zygote.name,
        mib(alone_pss),
        mib(pss - alone_pss),
        (pss - alone_pss) as f64 / count as f64,
        mib(pte.saturating_sub(alone_pte)),
    );
    for mut child in held {
        drop(child.stdin.take());
        child.wait().expect("wait hold");
    }
}

/// Whether `process` is the helper of zygote `zygote` that makes network namespaces
/// ahead: the one child of the zygote in the zygote's own pid namespace (every sandbox's
/// init has one of its own), as `tests/common` tells it apart.
fn is_netns_helper(zygote: i32, process: i32) -> bool {
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let parent = std::fs::read_to_string(format!("/proc/{process}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_string();
            rest.split_whitespace().nth(1)?.parse::<i32>().ok()
        });
    parent == Some(zygote) && ns(process).is_some_and(|own| Some(own) == ns(zygote))
}

/// `pid` and every process below it.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(parent) = parent {
            parents.push((child, parent));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let at = tree[i];
        tree.extend(parents.iter().filter(|(_, p)| *p == at).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// Summed PSS (from `smaps_rollup`) and page tables (`VmPTE`), in KiB.
fn usage(pids: &[i32]) -> (u64, u64) {
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    pids.iter().fold((0, 0), |(pss, pte), pid| {
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        (pss + field(&rollup, "Pss:"), pte + field(&status, "VmPTE:"))
    })
}
