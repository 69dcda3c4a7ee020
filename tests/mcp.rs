//! `hatchery mcp`: a real MCP client (the Python `mcp` package, in the venv test.sh makes)
//! drives it through both protocol eras; raw JSON-RPC checks what a client package would
//! never send (garbage, huge lines, bad versions), the daemon's rules, and that nothing
//! is left once the client goes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{Daemon, HATCHERY};

/// The venv's python with the pinned `mcp` package: `$HATCHERY_MCP_PYTHON`, else where
/// test.sh makes it.
fn mcp_python() -> Option<PathBuf> {
    let path = std::env::var_os("HATCHERY_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv/bin/python")
        });
    if path.exists() {
        return Some(path);
    }
    assert!(
        !common::must_run(),
        "HATCHERY_TESTS_MUST_RUN=1 but {} is missing (test.sh makes it)",
        path.display()
    );
    eprintln!(
        "skipped: no MCP client at {} (test.sh makes it)",
        path.display()
    );
    None
}

/// The Python client's whole script: tools and schemas, each language, files, limits as
/// results, truncation, base64, cancellation, disconnection, `status`, and the 2026-07-28
/// era.
#[test]
fn a_real_mcp_client_drives_the_server() {
    require_sandbox!();
    let Some(python) = mcp_python() else { return };
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py"))
        .args([HATCHERY, "--embedded"])
        .output()
        .expect("run the MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each check printed its line: none was skipped.
    for check in [
        "ok run_code python",
        "ok status through the client",
        "ok output is bounded, head and tail kept, the cut said",
        "ok cancellation kills the sandbox",
        "ok nothing is left after the client disconnects",
        "ok tools/call without a handshake",
        "ok a session's files persist across calls",
        "ok a background job polled to completion",
        "ok job_kill",
        "ok another server cannot session_destroy a session",
        "ok no session is left after the client disconnects",
    ] {
        assert!(
            stdout.lines().any(|l| l == check),
            "{check} missing:\n{stdout}"
        );
    }
}

/// `hatchery mcp` as a subprocess spoken to line by line.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(HATCHERY)
            .arg("mcp")
            .args(args)
            // Only what the test names: no daemon of the environment's.
            .env_remove("HATCHERY_SOCKET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hatchery mcp");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Server {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to the server");
        stdin.flush().expect("flush");
    }

    fn send(&mut self, message: Value) {
        self.send_raw(format!("{message}\n").as_bytes());
    }

    /// The next line on stdout, which must be one JSON message.
    fn recv(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("an answer within 20 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON on stdout: {line}: {e}"))
    }

    /// Whether nothing more comes within `wait`.
    fn silent_for(&self, wait: Duration) -> bool {
        self.lines.recv_timeout(wait).is_err()
    }

    fn initialize(&mut self) {
        self.send(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        );
        let answer = self.recv();
        assert_eq!(
            answer["result"]["protocolVersion"], "2025-06-18",
            "{answer}"
        );
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }

    /// Closes stdin and waits for the server to exit.
    fn close(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {answer}"))
}

/// Host processes whose command line holds `marker`.
fn running(marker: &str) -> usize {
    common::all_processes()
        .filter(|dir| {
            std::fs::read(dir.join("cmdline"))
                .is_ok_and(|line| line.windows(marker.len()).any(|w| w == marker.as_bytes()))
        })
        .count()
}

fn wait_gone(marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(marker) > 0 {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Garbage, a huge line, a batch, a bad id, an unknown method or tool: each gets its
/// JSON-RPC error, and the server goes on serving.
#[test]
fn malformed_messages_are_answered_and_the_server_goes_on() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    server.send_raw(b"this is not json\n");
    let answer = server.recv();
    assert_eq!(error_code(&answer), -32700, "{answer}");
    assert_eq!(answer["id"], Value::Null);
    server.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    assert_eq!(
        error_code(&server.recv()),
        -32600,
        "tools/list before initialize"
    );
    server.initialize();
    let mut huge = vec![b'x'; hatchery_max_line() + 10];
    huge.push(b'\n');
    server.send_raw(&huge);
    let answer = server.recv();
    assert_eq!(error_code(&answer), -32600, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer than"));
    server.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]\n");
    assert_eq!(error_code(&server.recv()), -32600, "a batch");
    server.send_raw(b"42\n");
    assert_eq!(error_code(&server.recv()), -32600, "not an object");
    server.send(json!({"jsonrpc": "2.0", "id": {"an": "object"}, "method": "ping"}));
    assert_eq!(error_code(&server.recv()), -32600, "an object as id");
    server.send(json!({"jsonrpc": "1.0", "id": 3, "method": "ping"}));
    assert_eq!(error_code(&server.recv()), -32600, "jsonrpc 1.0");
    server.send(json!({"jsonrpc": "2.0", "id": 4, "method": "no/such"}));
    assert_eq!(error_code(&server.recv()), -32601);
    server.send(json!({"jsonrpc": "2.0", "id": 5, "method": "server/discover"}));
    assert_eq!(
        error_code(&server.recv()),
        -32601,
        "discover in the handshake era"
    );
    server.send(json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
        "params": {"name": "rm_rf", "arguments": {}}}));
    assert_eq!(error_code(&server.recv()), -32602, "an unknown tool");
    server.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"argv": "ls"}}}));
    let answer = server.recv();
    assert_eq!(answer["result"]["isError"], true, "bad arguments: {answer}");
    assert!(answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("argv must be an array"));
    server.send(json!({"jsonrpc": "2.0", "method": "notifications/whatever"}));
    server.send(json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}));
    let answer = server.recv();
    assert_eq!(answer["id"], 8, "a notification is not answered: {answer}");
    assert_eq!(answer["result"], json!({}));
    assert!(server.close().success());
}

fn hatchery_max_line() -> usize {
    4 << 20
}

/// The 2026-07-28 era, chosen by a first request that names it in `_meta`: no
/// `initialize`, the version on every request, `-32004` for another.
#[test]
fn the_stateless_era_needs_the_version_on_each_request() {
    require_sandbox!();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let mut server = Server::start(&["--embedded"]);
    server.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"_meta": meta}}));
    let answer = server.recv();
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    assert_eq!(answer["result"]["tools"][0]["name"], "run_command");
    server.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let answer = server.recv();
    assert_eq!(error_code(&answer), -32004, "{answer}");
    assert_eq!(answer["error"]["data"]["supported"], json!(["2026-07-28"]));
    server.send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2025-11-25"},
        "name": "run_command", "arguments": {"argv": ["true"]}}}),
    );
    assert_eq!(error_code(&server.recv()), -32004);
    server.send(
        json!({"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {
        "_meta": meta, "protocolVersion": "2025-11-25"}}),
    );
    assert_eq!(
        error_code(&server.recv()),
        -32601,
        "no handshake in this era"
    );
    server.send(
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "_meta": meta, "name": "run_command", "arguments": {"command": "echo $((6*7))"}}}),
    );
    let answer = server.recv();
    assert_eq!(
        answer["result"]["structuredContent"]["stdout"], "42\n",
        "{answer}"
    );
    assert_eq!(answer["result"]["resultType"], "complete");
    server.send(
        json!({"jsonrpc": "2.0", "id": 6, "method": "server/discover",
        "params": {"_meta": meta}}),
    );
    let answer = server.recv();
    assert_eq!(answer["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(answer["result"]["serverInfo"]["name"], "hatchery");
    assert!(server.close().success());
}

/// `notifications/cancelled` kills the call's sandbox, and the call is not answered.
#[test]
fn a_cancelled_call_is_killed_and_not_answered() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    server.initialize();
    let marker = "3600.5151";
    server.send(
        json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"argv": ["sleep", marker]}}}),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(marker) == 0 {
        assert!(Instant::now() < deadline, "the call never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "long", "reason": "the user stopped it"}}),
    );
    assert!(wait_gone(marker), "the sandbox outlived its cancellation");
    assert!(
        server.silent_for(Duration::from_millis(300)),
        "a cancelled call was answered"
    );
    server.send(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(server.recv()["id"], 2);
    assert!(server.close().success());
}

/// Through a daemon named by `--socket`: calls run there, and when the client closes
/// stdin with a call running, the server kills it and exits, and the daemon has no
/// sandbox left, nor its cgroup.
#[test]
fn through_a_daemon_nothing_is_left_after_the_client_goes() {
    require_sandbox!();
    let daemon = Daemon::start();
    let socket = daemon.socket.to_str().expect("UTF-8").to_string();
    let mut server = Server::start(&["--socket", &socket]);
    server.initialize();
    server.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"argv": ["echo", "via the daemon"]}}}));
    let answer = server.recv();
    assert_eq!(
        answer["result"]["structuredContent"]["stdout"], "via the daemon\n",
        "{answer}"
    );
    let marker = "3600.5252";
    // A memory limit: the sandbox has a cgroup, which must go too.
    server.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"argv": ["sleep", marker], "memory": "64M"}}}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.children().is_empty() || common::sandbox_cgroups_of(&daemon).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the call never started, or has no cgroup"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    assert!(server.close().success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the server waited for the call"
    );
    assert_eq!(daemon.wait_childless(Duration::from_secs(5)), []);
    assert!(wait_gone(marker));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::sandbox_cgroups_of(&daemon).is_empty() {
        assert!(Instant::now() < deadline, "a sandbox's cgroup was left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A socket named and not there: the server does not start (69), as `run` does not.
#[test]
fn a_named_socket_that_is_not_there_stops_the_server() {
    let out = Command::new(HATCHERY)
        .args(["mcp", "--socket", "/nonexistent/hatchery.sock"])
        .stdin(Stdio::null())
        .output()
        .expect("run hatchery mcp");
    assert_eq!(out.status.code(), Some(69));
    assert!(out.stdout.is_empty(), "stdout is the protocol's alone");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--socket /nonexistent/hatchery.sock: no such file"),
        "{stderr}"
    );
}

/// A bad option is the operator's mistake: said at start, in the flag's words.
#[test]
fn a_bad_option_stops_the_server_at_start() {
    let out = Command::new(HATCHERY)
        .args(["mcp", "--embedded", "--ro-bind", "no-such-dir:/data"])
        .stdin(Stdio::null())
        .output()
        .expect("run hatchery mcp");
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ro-bind no-such-dir:/data"), "{stderr}");
}

/// A server killed outright (SIGKILL: no chance to clean up) leaves no sandbox: the
/// embedded zygote dies with it, and its sandboxes with the zygote.
#[test]
fn a_killed_server_leaves_no_sandbox() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    server.initialize();
    let marker = "3600.5353";
    server.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"argv": ["sleep", marker]}}}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(marker) == 0 {
        assert!(Instant::now() < deadline, "the call never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().expect("SIGKILL the server");
    server.child.wait().expect("reap it");
    assert!(wait_gone(marker), "a sandbox outlived its killed server");
}

const MCP_DOC: &str = include_str!("../docs/mcp.md");
const README: &str = include_str!("../README.md");

/// The fenced blocks of docs/mcp.md in the given language.
fn doc_blocks(language: &str) -> Vec<String> {
    blocks(MCP_DOC, language)
}

/// The fenced blocks of `doc` in the given language.
fn blocks(doc: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}\n");
    doc.split(fence.as_str())
        .skip(1)
        .map(|rest| {
            rest.split("```")
                .next()
                .expect("a closed block")
                .to_string()
        })
        .collect()
}

/// Whether every field of `expected` is in `actual` with the same value (arrays element
/// by element), `duration_ms` aside.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected.iter().all(|(key, value)| {
            key == "duration_ms" || actual.get(key).is_some_and(|a| contains(a, value))
        }),
        (Value::Array(actual), Value::Array(expected)) => {
            expected.len() <= actual.len()
                && expected.iter().zip(actual).all(|(e, a)| contains(a, e))
        }
        _ => actual == expected,
    }
}

/// The host configurations of docs/mcp.md and the README start a server that answers
/// `initialize` (a named socket pointed at a test daemon).
#[test]
fn the_docs_host_configurations_start_a_server() {
    require_sandbox!();
    let daemon = Daemon::start();
    let configs: Vec<Value> = doc_blocks("json")
        .into_iter()
        .chain(blocks(README, "json"))
        .filter(|block| block.contains("\"command\": \"hatchery\""))
        .map(|block| serde_json::from_str(&block).expect("a config block is JSON"))
        .collect();
    assert_eq!(
        configs.len(),
        3,
        "docs/mcp.md's two snippets and the README's"
    );
    for config in configs {
        let servers = config
            .get("mcpServers")
            .or_else(|| config.get("servers"))
            .and_then(Value::as_object)
            .expect("mcpServers or servers");
        for entry in servers.values() {
            assert_eq!(entry["command"], "hatchery");
            let mut args: Vec<String> = entry["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("a string").to_string())
                .collect();
            assert_eq!(args.remove(0), "mcp");
            if let Some(at) = args.iter().position(|a| a == "--socket") {
                args[at + 1] = daemon.socket.to_str().expect("UTF-8").to_string();
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut server = Server::start(&args);
            server.initialize();
            assert!(server.close().success(), "{args:?}");
        }
    }
}

/// docs/mcp.md's worked example: its lines, sent; its answers, as the server gives them.
#[test]
fn the_docs_worked_example_is_what_the_server_answers() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    let [lines] = &doc_blocks("jsonl")[..] else {
        panic!("one jsonl block in docs/mcp.md")
    };
    let mut requests = 0;
    for line in lines.lines() {
        let message: Value = serde_json::from_str(line).expect("a JSON line");
        requests += usize::from(message.get("id").is_some());
        server.send(message);
    }
    let answers: Vec<Value> = (0..requests).map(|_| server.recv()).collect();
    let shown: Vec<Value> = doc_blocks("json")
        .iter()
        .filter(|block| block.contains("\"result\""))
        .map(|block| serde_json::from_str(block).expect("an answer block is JSON"))
        .collect();
    assert_eq!(shown.len(), 2);
    for expected in shown {
        let actual = answers
            .iter()
            .find(|a| a["id"] == expected["id"])
            .unwrap_or_else(|| panic!("no answer for {}", expected["id"]));
        assert!(
            contains(actual, &expected),
            "docs/mcp.md shows {expected}\nthe server: {actual}"
        );
    }
    assert!(server.close().success());
}

/// Calls run at once, each answered as it ends; past `--max-calls`, a call is an error
/// result that says why.
#[test]
fn calls_run_at_once_up_to_the_bound() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded", "--max-calls", "4"]);
    server.initialize();
    let started = Instant::now();
    for id in 1..=4 {
        server.send(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "run_command", "arguments": {"command": format!("sleep 1; echo {id}")}}}),
        );
    }
    server.send(
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "run_command", "arguments": {"argv": ["true"]}}}),
    );
    let busy = server.recv();
    assert_eq!(busy["id"], 5, "the fifth call is answered at once: {busy}");
    assert_eq!(busy["result"]["isError"], true);
    assert!(busy["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("busy: 4 calls are running"));
    let mut ids: Vec<i64> = (1..=4)
        .map(|_| {
            let answer = server.recv();
            let id = answer["id"].as_i64().expect("an id");
            assert_eq!(
                answer["result"]["structuredContent"]["stdout"],
                format!("{id}\n")
            );
            id
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4]);
    // Four seconds one after the other.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(server.close().success());
}

/// A `--profile` file as `run` takes it: its limits are the calls' ceilings and defaults,
/// and a flag overrides it.
#[test]
fn a_profile_sets_the_calls_limits() {
    require_sandbox!();
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/profiles/python-judge.toml"
    );
    let mut server = Server::start(&["--embedded", "--profile", profile, "--wall-time", "5s"]);
    server.initialize();
    server.send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "run_code", "arguments": {"language": "sh",
            "code": "hostname; echo $PYTHONHASHSEED; ulimit -n"}}}),
    );
    let answer = server.recv();
    assert_eq!(
        answer["result"]["structuredContent"]["stdout"], "judge\n0\n64\n",
        "{answer}"
    );
    server.send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_command", "arguments": {"argv": ["true"], "timeout_s": 6}}}),
    );
    let answer = server.recv();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("at most 5 (5s)"));
    server.send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "run_command", "arguments": {"argv": ["true"], "memory": "512M"}}}),
    );
    let answer = server.recv();
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("at most 256 MiB"),
        "{answer}"
    );
    assert!(server.close().success());
}

/// Sends a `status` call and returns its result.
fn status_call(server: &mut Server, id: i64) -> Value {
    server.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "status"}}));
    let answer = server.recv();
    assert_eq!(answer["id"], id, "{answer}");
    answer["result"].clone()
}

/// Every key `schema` requires, at every level, is in `value`.
fn has_required(value: &Value, schema: &Value) -> bool {
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    let here = required
        .iter()
        .all(|key| value.get(key.as_str().unwrap_or_default()).is_some());
    let nested = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, sub)| match (&value[key], sub["type"].as_str()) {
            (Value::Object(_), Some("object")) => has_required(&value[key], sub),
            (Value::Array(items), Some("array")) => {
                items.iter().all(|item| has_required(item, &sub["items"]))
            }
            _ => true,
        });
    here && nested
}

/// `status` is listed (read-only, no arguments, an output schema), says that an embedded
/// zygote serves, shows a running call's sandbox and refuses arguments.
#[test]
fn the_status_tool_reports_the_embedded_zygote() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    server.initialize();
    server.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    let tools = server.recv()["result"]["tools"].clone();
    let tool = tools
        .as_array()
        .expect("tools")
        .iter()
        .find(|tool| tool["name"] == "status")
        .unwrap_or_else(|| panic!("no status tool in {tools}"))
        .clone();
    assert_eq!(tool["annotations"]["readOnlyHint"], true, "{tool}");
    assert_eq!(tool["inputSchema"]["properties"], json!({}), "{tool}");
    let schema = tool["outputSchema"].clone();
    assert!(
        schema["required"].as_array().is_some_and(|r| r.len() > 10),
        "{schema}"
    );

    let idle = status_call(&mut server, 2);
    assert_eq!(idle["isError"], false, "{idle}");
    let fields = &idle["structuredContent"];
    assert!(
        has_required(fields, &schema),
        "{fields}\nlacks what {schema} requires"
    );
    assert_eq!(fields["served_by"]["kind"], "embedded", "{fields}");
    assert_eq!(fields["served_by"]["socket"], Value::Null, "{fields}");
    assert_eq!(fields["live"], 0, "{fields}");
    let text: Value = serde_json::from_str(idle["content"][0]["text"].as_str().unwrap())
        .expect("the text is the same fields as JSON");
    assert_eq!(&text, fields);

    let marker = "3600.5353";
    server.send(
        json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"argv": ["sleep", marker]}}}),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        let result = status_call(&mut server, 3);
        let fields = result["structuredContent"].clone();
        if fields["sandboxes"][0]["phase"] == "running" {
            break fields;
        }
        assert!(Instant::now() < deadline, "the call never ran: {fields}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(has_required(&busy, &schema), "{busy}");
    assert_eq!(busy["live"], 1, "{busy}");
    let sandbox = &busy["sandboxes"][0];
    assert!(
        sandbox["program"]
            .as_str()
            .is_some_and(|p| p.ends_with("sleep")),
        "{sandbox}"
    );
    assert_eq!(
        sandbox["owner_uid"],
        Value::Null,
        "the embedded zygote's own client: {sandbox}"
    );
    assert_eq!(sandbox["client_connected"], true, "{sandbox}");

    server.send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "status", "arguments": {"verbose": true}}}));
    let refused = server.recv();
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        refused["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("status takes no arguments")),
        "{refused}"
    );
    server.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "long"}}),
    );
    assert!(wait_gone(marker), "the sandbox outlived its cancellation");
    let after = status_call(&mut server, 5);
    assert_eq!(
        after["structuredContent"]["served"],
        json!([{"name": "fresh", "count": 1}]),
        "{after}"
    );
    assert!(server.close().success());
}

/// Through a daemon, `status` names its socket and shows the daemon's own counters.
#[test]
fn the_status_tool_names_the_daemon() {
    require_sandbox!();
    let daemon = Daemon::start();
    let socket = daemon.socket.to_str().expect("UTF-8").to_string();
    let mut server = Server::start(&["--socket", &socket]);
    server.initialize();
    server.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"argv": ["true"]}}}));
    assert_eq!(server.recv()["result"]["isError"], false);
    let result = status_call(&mut server, 2);
    let fields = &result["structuredContent"];
    assert_eq!(fields["served_by"]["kind"], "daemon", "{fields}");
    assert_eq!(fields["served_by"]["socket"], socket.as_str(), "{fields}");
    assert_eq!(fields["pid"], daemon.pid(), "{fields}");
    assert_eq!(
        fields["ended"],
        json!([{"name": "exited", "count": 1}]),
        "{fields}"
    );
    assert!(server.close().success());
}

/// A `tools/call` of `name`, answered: its result.
fn tool(server: &mut Server, id: i64, name: &str, arguments: Value) -> Value {
    server.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": arguments}}));
    let answer = server.recv();
    assert_eq!(answer["id"], id, "{answer}");
    answer["result"].clone()
}

/// A result that must not be an error: its structured fields.
fn fields(result: &Value) -> &Value {
    assert_eq!(result["isError"], false, "{result}");
    &result["structuredContent"]
}

/// An error result's text.
fn refusal(result: &Value) -> String {
    assert_eq!(result["isError"], true, "{result}");
    result["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// A session keeps its files across calls; a background job is polled to its end (its
/// output read from offsets); a run past its wait becomes a job; job_kill ends a job and
/// not its session; a destroyed session is unknown.
#[test]
fn a_session_keeps_its_files_and_runs_jobs() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    server.initialize();
    let created = tool(&mut server, 1, "session_create", json!({"name": "work"}));
    let id = fields(&created)["id"].as_str().expect("an id").to_string();
    assert_eq!(id.len(), 32, "{created}");
    assert_eq!(fields(&created)["name"], "work");
    let written = tool(
        &mut server,
        2,
        "file_write",
        json!({"id": id, "path": "notes/a.txt", "content": "first\n"}),
    );
    assert!(
        refusal(&written).contains("notes/a.txt"),
        "no directory yet"
    );
    tool(
        &mut server,
        3,
        "session_run",
        json!({"id": id, "command": "mkdir notes"}),
    );
    let written = tool(
        &mut server,
        4,
        "file_write",
        json!({"id": id, "path": "notes/a.txt", "content": "first\n"}),
    );
    assert_eq!(fields(&written)["path"], "/work/notes/a.txt");
    let ran = tool(
        &mut server,
        5,
        "session_run",
        json!({"id": id, "command": "cat notes/a.txt; echo second >> /work/notes/a.txt"}),
    );
    assert_eq!(fields(&ran)["stdout"], "first\n", "{ran}");
    assert_eq!(fields(&ran)["running"], false);
    let read = tool(
        &mut server,
        6,
        "file_read",
        json!({"id": id, "path": "/work/notes/a.txt"}),
    );
    assert_eq!(fields(&read)["content"], "first\nsecond\n");
    let binary = tool(
        &mut server,
        7,
        "file_write",
        json!({"id": id, "path": "b.bin", "content": "AP8=", "encoding": "base64"}),
    );
    assert_eq!(fields(&binary)["bytes"], 2);
    let read = tool(
        &mut server,
        8,
        "file_read",
        json!({"id": id, "path": "b.bin"}),
    );
    assert_eq!(fields(&read)["encoding"], "base64");
    assert_eq!(fields(&read)["content"], "AP8=");
    let listed = tool(&mut server, 9, "file_list", json!({"id": id}));
    let listing = fields(&listed)["listing"].as_str().unwrap_or_default();
    assert!(
        listing.contains("notes") && listing.contains("b.bin"),
        "{listed}"
    );

    // In the background: answered at once, polled to completion.
    let started = tool(
        &mut server,
        10,
        "session_run",
        json!({"id": id, "background": true,
        "command": "echo one; sleep 0.5; echo two; echo err >&2"}),
    );
    let job = fields(&started)["job"].as_str().expect("a job").to_string();
    assert_eq!(fields(&started)["running"], true);
    let mut seen = String::new();
    let mut since = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = tool(
            &mut server,
            11,
            "job_output",
            json!({"job": job, "stdout_since": since}),
        );
        let output = fields(&output).clone();
        seen.push_str(output["stdout"].as_str().unwrap_or_default());
        since = output["stdout_next"].as_u64().expect("an offset");
        if output["running"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "the job never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, "one\ntwo\n");
    let status = tool(&mut server, 12, "job_status", json!({"job": job}));
    assert_eq!(fields(&status)["exit_code"], 0, "{status}");
    assert_eq!(fields(&status)["stderr"], "err\n");

    // Past its wait: a job, which job_kill ends, the session living on.
    let marker = "3600.5454";
    let waited = Instant::now();
    let slow = tool(
        &mut server,
        13,
        "session_run",
        json!({"id": id, "argv": ["sleep", marker], "wait_s": 0.5}),
    );
    assert!(waited.elapsed() < Duration::from_secs(5));
    let job = fields(&slow)["job"].as_str().expect("a job").to_string();
    assert_eq!(fields(&slow)["running"], true);
    assert_eq!(running(marker), 1);
    let killed = tool(&mut server, 14, "job_kill", json!({"job": job}));
    assert_eq!(fields(&killed)["reason"], "killed", "{killed}");
    assert!(wait_gone(marker));
    let after = tool(
        &mut server,
        15,
        "session_run",
        json!({"id": id, "language": "sh", "code": "cat notes/a.txt | wc -l"}),
    );
    assert_eq!(fields(&after)["stdout"], "2\n", "{after}");

    let destroyed = tool(&mut server, 16, "session_destroy", json!({"id": id}));
    assert_eq!(fields(&destroyed)["destroyed"], true);
    for (name, arguments) in [
        ("session_run", json!({"id": id, "command": "true"})),
        ("file_read", json!({"id": id, "path": "notes/a.txt"})),
        ("session_destroy", json!({"id": id})),
    ] {
        let result = tool(&mut server, 17, name, arguments);
        assert!(refusal(&result).starts_with("unknown session"), "{result}");
    }
    let gone = tool(&mut server, 18, "job_status", json!({"job": job}));
    assert!(refusal(&gone).starts_with("unknown job"), "{gone}");
    assert!(server.close().success());
}

/// Two servers on one daemon: a session of one is unknown to the other, which can
/// neither use nor destroy it; `--max-sessions` bounds a server's sessions; an idle
/// session ends; and when a server ends, its sessions (their jobs, cgroups) are gone.
#[test]
fn sessions_belong_to_their_server_and_end_with_it() {
    require_sandbox!();
    let daemon = Daemon::start();
    let socket = daemon.socket.to_str().expect("UTF-8").to_string();
    // A memory limit: the session has a cgroup, which must go too.
    let mut first = Server::start(&[
        "--socket",
        &socket,
        "--max-sessions",
        "1",
        "--memory",
        "256M",
    ]);
    let mut second = Server::start(&["--socket", &socket, "--session-idle", "1s"]);
    first.initialize();
    second.initialize();
    let created = tool(&mut first, 1, "session_create", json!({}));
    let id = fields(&created)["id"].as_str().expect("an id").to_string();
    let more = tool(&mut first, 2, "session_create", json!({}));
    let said = refusal(&more);
    assert!(
        said.contains("--max-sessions") && said.contains(&id),
        "{said}"
    );
    for (name, arguments) in [
        ("session_run", json!({"id": id, "command": "true"})),
        ("file_write", json!({"id": id, "path": "x", "content": "x"})),
        ("file_list", json!({"id": id})),
        ("session_destroy", json!({"id": id})),
    ] {
        let result = tool(&mut second, 3, name, arguments);
        assert!(
            refusal(&result).starts_with("unknown session"),
            "{name}: {result}"
        );
    }
    let still = tool(
        &mut first,
        4,
        "session_run",
        json!({"id": id, "command": "echo here"}),
    );
    assert_eq!(fields(&still)["stdout"], "here\n");

    // Idle for longer than --session-idle: ended, and said so.
    let idle = tool(&mut second, 5, "session_create", json!({}));
    let idle = fields(&idle)["id"].as_str().expect("an id").to_string();
    std::thread::sleep(Duration::from_millis(2500));
    let late = tool(
        &mut second,
        6,
        "session_run",
        json!({"id": idle, "command": "true"}),
    );
    let said = refusal(&late);
    assert!(
        said.contains("unknown session") || said.contains("has ended"),
        "{said}"
    );
    assert!(second.close().success());

    let marker = "3600.5555";
    let job = tool(
        &mut first,
        7,
        "session_run",
        json!({"id": id, "argv": ["sleep", marker], "background": true}),
    );
    assert_eq!(fields(&job)["running"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(marker) == 0 {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!common::sandbox_cgroups_of(&daemon).is_empty());
    assert!(first.close().success());
    assert!(wait_gone(marker), "a session's job outlived its server");
    assert_eq!(daemon.wait_childless(Duration::from_secs(5)), []);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::sandbox_cgroups_of(&daemon).is_empty() {
        assert!(Instant::now() < deadline, "a session's cgroup was left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cancelling a `session_run` kills its command, not its session, and is not answered.
#[test]
fn a_cancelled_session_run_kills_its_command_only() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    server.initialize();
    let created = tool(&mut server, 1, "session_create", json!({}));
    let id = fields(&created)["id"].as_str().expect("an id").to_string();
    let marker = "3600.5656";
    server.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "session_run", "arguments": {"id": id, "argv": ["sleep", marker]}}}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(marker) == 0 {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2}}),
    );
    assert!(wait_gone(marker), "the cancelled command lives on");
    let still = tool(
        &mut server,
        3,
        "session_run",
        json!({"id": id, "command": "echo alive"}),
    );
    assert_eq!(fields(&still)["stdout"], "alive\n", "{still}");
    assert!(server.close().success());
}

/// A session runs at most 16 jobs at once: one more is an error result, and once one is
/// killed another may start.
#[test]
fn a_session_bounds_its_running_jobs() {
    require_sandbox!();
    let mut server = Server::start(&["--embedded"]);
    server.initialize();
    let created = tool(&mut server, 1, "session_create", json!({}));
    let id = fields(&created)["id"].as_str().expect("an id").to_string();
    let mut jobs = Vec::new();
    for n in 0..16 {
        let started = tool(
            &mut server,
            2 + n,
            "session_run",
            json!({"id": id, "argv": ["sleep", "3600.5757"], "background": true}),
        );
        jobs.push(fields(&started)["job"].as_str().expect("a job").to_string());
    }
    let more = tool(
        &mut server,
        20,
        "session_run",
        json!({"id": id, "command": "true"}),
    );
    assert!(refusal(&more).contains("16 jobs are running"), "{more}");
    tool(&mut server, 21, "job_kill", json!({"job": jobs[0]}));
    let now = tool(
        &mut server,
        22,
        "session_run",
        json!({"id": id, "command": "echo ok"}),
    );
    assert_eq!(fields(&now)["stdout"], "ok\n", "{now}");
    assert!(server.close().success());
    assert!(wait_gone("3600.5757"));
}

/// In the 2026-07-28 era a session is the explicit handle that revision asks for: its id
/// passed back as an argument, each request naming the version.
#[test]
fn sessions_work_without_a_handshake() {
    require_sandbox!();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let mut server = Server::start(&["--embedded"]);
    let mut call = |id: i64, name: &str, arguments: Value| {
        server.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"_meta": meta, "name": name, "arguments": arguments}}));
        let answer = server.recv();
        assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
        answer["result"].clone()
    };
    let created = call(1, "session_create", json!({}));
    let id = fields(&created)["id"].as_str().expect("an id").to_string();
    call(
        2,
        "file_write",
        json!({"id": id, "path": "n", "content": "7"}),
    );
    let ran = call(
        3,
        "session_run",
        json!({"id": id, "command": "echo $(( $(cat n) * 6 ))"}),
    );
    assert_eq!(fields(&ran)["stdout"], "42\n", "{ran}");
    let destroyed = call(4, "session_destroy", json!({"id": id}));
    assert_eq!(fields(&destroyed)["destroyed"], true);
    assert!(server.close().success());
}
