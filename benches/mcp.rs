//! MCP benchmark: a tool call through `hatchery mcp`, request → response, next to
//! `hatchery run` through the same daemon, and `run_code` of Python next to a bare
//! `python3 -c` start.
//!
//! One daemon (`hatchery serve`) and one MCP server (`hatchery mcp --socket`, spoken to
//! over its stdin/stdout as an agent's host does, initialized once) serve every round;
//! each round times, in an order that rotates between rounds:
//!
//! - `mcp run_command true`: a `tools/call` of `run_command {argv: ["/bin/true"]}`,
//!   from writing its line to reading its answer;
//! - `hatchery run true`: the whole `hatchery run --socket S -- /bin/true` command, from
//!   its start to its exit (a CLI process, its connection, the sandbox);
//! - `mcp run_code python`: `run_code {language: python, code: "print(1)"}`;
//! - `python3 -c print(1)`: the same interpreter, bare (unsandboxed);
//! - `mcp session_run true`: `session_run {id, argv: ["/bin/true"]}` in one live session
//!   (made once, before the rounds): a command in a persistent sandbox;
//! - `/bin/true`: the same command, bare (unsandboxed), its spawn to its exit.
//!
//! Environment: `HATCHERY_BENCH_RUNS` (rounds, default 200), `HATCHERY_BENCH_QUICK=1`
//! (10 rounds and no results file: for CI), `HATCHERY_BENCH_JSON` (default
//! `target/bench/mcp.json`, which docs/performance.md's figures come from).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const HATCHERY: &str = env!("CARGO_BIN_EXE_hatchery");

struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// `hatchery mcp`, initialized, with its pipes.
struct Mcp {
    _process: Stopped,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Mcp {
    fn start(socket: &Path) -> Mcp {
        let mut process = Command::new(HATCHERY)
            .arg("mcp")
            .arg("--socket")
            .arg(socket)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hatchery mcp");
        let stdin = process.stdin.take().expect("stdin");
        let stdout = BufReader::new(process.stdout.take().expect("stdout"));
        let mut mcp = Mcp {
            _process: Stopped(process),
            stdin,
            stdout,
            next_id: 0,
        };
        mcp.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"}}),
        );
        writeln!(
            mcp.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .expect("write");
        mcp
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let line =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        writeln!(self.stdin, "{line}").expect("write to hatchery mcp");
        self.stdin.flush().expect("flush");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("read");
        let answer: Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(answer["id"], self.next_id, "{answer}");
        answer["result"].clone()
    }

    /// Times one tool call; checks that it ran and printed `expected`.
    fn call(&mut self, tool: &str, arguments: Value, expected: &str) -> Duration {
        let started = Instant::now();
        let result = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        let took = started.elapsed();
        assert_eq!(result["isError"], false, "{result}");
        assert_eq!(result["structuredContent"]["stdout"], expected, "{result}");
        took
    }
}

fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run");
    let took = started.elapsed();
    assert!(status.success(), "{command:?}: {status}");
    took
}

fn main() {
    let quick = std::env::var("HATCHERY_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs: usize = std::env::var("HATCHERY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10 } else { 200 });
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("hatchery.sock");
    let _daemon = Stopped(
        Command::new(HATCHERY)
            .args(["serve", "--socket"])
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start hatchery serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hatchery::client::probe_socket(&socket) {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut mcp = Mcp::start(&socket);
    // The interpreter `run_code` finds (the first in /usr/local/bin, /usr/bin, /bin), not
    // a shim that PATH may put first.
    let python = ["/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("python3");

    let session = mcp.request(
        "tools/call",
        json!({"name": "session_create", "arguments": {"name": "bench"}}),
    );
    assert_eq!(session["isError"], false, "{session}");
    let session = session["structuredContent"]["id"].clone();

    const NAMES: [&str; 6] = [
        "mcp run_command true",
        "hatchery run true",
        "mcp run_code python",
        "python3 -c print(1)",
        "mcp session_run true",
        "/bin/true",
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); NAMES.len()];
    // Warm-up: the page cache, the daemon's first sandboxes.
    for round in 0..runs + 3 {
        for k in 0..NAMES.len() {
            let which = (round + k) % NAMES.len();
            let took = match which {
                0 => mcp.call("run_command", json!({"argv": ["/bin/true"]}), ""),
                1 => timed(
                    Command::new(HATCHERY)
                        .args(["run", "--quiet", "--socket"])
                        .arg(&socket)
                        .args(["--", "/bin/true"]),
                ),
                2 => mcp.call(
                    "run_code",
                    json!({"language": "python", "code": "print(1)"}),
                    "1\n",
                ),
                3 => timed(Command::new(python).args(["-c", "print(1)"])),
                4 => mcp.call(
                    "session_run",
                    json!({"id": session, "argv": ["/bin/true"]}),
                    "",
                ),
                _ => timed(&mut Command::new("/bin/true")),
            };
            if round >= 3 {
                samples[which].push(took);
            }
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut results = serde_json::Map::new();
    println!("{runs} rounds; milliseconds, request → response (median, p90)");
    let mut medians = Vec::new();
    for (name, mut taken) in NAMES.iter().zip(samples) {
        taken.sort();
        let median = ms(taken[taken.len() / 2]);
        let p90 = ms(taken[taken.len() * 9 / 10]);
        println!("  {name:<24} {median:>8.2} {p90:>8.2}");
        results.insert(
            name.to_string(),
            json!({"median_ms": median, "p90_ms": p90, "runs": taken.len()}),
        );
        medians.push(median);
    }
    println!(
        "  mcp run_command true / hatchery run true: {:.2}x; run_code python - python3 -c: {:+.2} ms; \
         session_run true - /bin/true: {:+.2} ms",
        medians[0] / medians[1],
        medians[2] - medians[3],
        medians[4] - medians[5]
    );
    let out = std::env::var_os("HATCHERY_BENCH_JSON")
        .map(PathBuf::from)
        .or_else(|| (!quick).then(|| PathBuf::from("target/bench/mcp.json")));
    if let Some(out) = out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).expect("create the results' directory");
        }
        std::fs::write(&out, format!("{:#}\n", Value::Object(results))).expect("write the results");
        println!("results in {}", out.display());
    }
}
