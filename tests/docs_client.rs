//! The Python client of `docs/protocol.md` §8 (`docs/client.py`) against real daemons:
//! its tour, one scenario per error kind that a client can provoke (every kind, today),
//! its decoder on the bytes this crate encodes for every kind, and its self-test on the
//! golden bytes of §6. Runs as the client: `python3` (Debian's, which `test.sh`
//! installs) in a subprocess; the daemons are subprocesses too.
//!
//! Without `python3` the tests skip, unless `HATCHERY_TESTS_MUST_RUN=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use hatchery::protocol::{encode, ErrorKind, Event, SetupFailure, SetupStep, PROTOCOL_VERSION};

use common::Daemon;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/client.py");
const PROTOCOL_DOC: &str = include_str!("../docs/protocol.md");
const TEST_ZYGOTE: &str = env!("CARGO_BIN_EXE_hatchery-test-zygote");

/// Each scenario of the script and the error kind that must answer it.
const SCENARIOS: &[(&str, &str)] = &[
    ("garbage", "Protocol"),
    ("wrong-version", "VersionMismatch"),
    ("permission-denied", "PermissionDenied"),
    ("invalid-request", "InvalidRequest"),
    // The ceiling refusal has no kind of its own.
    ("over-ceiling", "InvalidRequest"),
    ("busy", "Busy"),
    ("not-found", "NotFound"),
    ("cannot-execute", "CannotExecute"),
    ("setup-failed", "Setup"),
    ("internal", "Internal"),
    ("unknown-id", "UnknownId"),
    ("shutting-down", "ShuttingDown"),
    ("unenforceable-limits", "UnenforceableLimits"),
    ("network-unavailable", "NetworkUnavailable"),
    ("pool-exhausted", "AddressPoolExhausted"),
    ("unknown-entry", "UnknownEntry"),
    ("bad-entry-args", "BadEntryArgs"),
    ("unknown-sandbox", "UnknownSandbox"),
];

/// Runs the script with `args`; fails the test unless it exits 0 and says nothing on
/// stderr (a Python exception). Returns its stdout.
fn script(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "python3 client.py {args:?}: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// Runs `scenarios` against `daemon` in one script run, and checks the kind each line
/// names. Returns each scenario's line.
fn provoke(daemon: &Daemon, scenarios: &[&str]) -> BTreeMap<String, String> {
    let socket = daemon.socket.to_str().expect("a UTF-8 socket path");
    let mut args = vec![socket];
    args.extend_from_slice(scenarios);
    let out = script(&args);
    let lines: BTreeMap<String, String> = out
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, rest)| (name.to_string(), rest.to_string()))
        .collect();
    for name in scenarios {
        let expected = SCENARIOS
            .iter()
            .find(|(scenario, _)| scenario == name)
            .map(|(_, kind)| kind)
            .expect("a scenario of SCENARIOS");
        let line = lines
            .get(*name)
            .unwrap_or_else(|| panic!("no line for {name}: {out}"));
        let kind = line.split_whitespace().next().unwrap_or_default();
        assert_eq!(kind, *expected, "{name}: {line}");
        assert!(line.contains("('Error', "), "{name}: {line}");
    }
    lines
}

/// The variant names of `ErrorKind` in the table of `docs/protocol.md` §2.3 (which
/// `src/protocol/tests.rs` pins to the enum).
fn documented_kinds() -> BTreeSet<String> {
    PROTOCOL_DOC
        .lines()
        .skip_while(|line| !line.contains("**`ErrorKind`** (enum"))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .filter_map(|line| line.split('|').nth(2))
        .map(|cell| cell.trim().trim_matches('`').to_string())
        .collect()
}

#[test]
fn every_error_kind_has_a_scenario() {
    let driven: BTreeSet<String> = SCENARIOS.iter().map(|(_, k)| k.to_string()).collect();
    assert_eq!(driven, documented_kinds(), "kinds no scenario provokes");
}

#[test]
fn the_script_passes_its_self_test() {
    if !common::python_runs() {
        return;
    }
    assert_eq!(script(&["--self-test"]), "self-test: ok\n");
}

/// A sample of every kind, as the daemon would encode it: one of each, then an
/// `Internal` without a cause and the failures of a setup that are no system call.
fn every_error_kind() -> Vec<ErrorKind> {
    let mut kinds = hatchery::internals::one_of_each_error_kind();
    kinds.extend([
        ErrorKind::Internal { error: None },
        // The failures of a setup that are no system call.
        ErrorKind::Setup {
            step: SetupStep::IdMaps,
            error: SetupFailure::Protocol {
                expected: "IdMapsWritten".into(),
                received: "Run".into(),
            },
        },
        ErrorKind::Setup {
            step: SetupStep::DieWithZygote,
            error: SetupFailure::ZygoteGone,
        },
        ErrorKind::Setup {
            step: SetupStep::VerifyPrivileges,
            error: SetupFailure::Verification("a capability is left".into()),
        },
        ErrorKind::Setup {
            step: SetupStep::PrepareWorkload,
            error: SetupFailure::Request("a NUL in an argument".into()),
        },
    ]);
    kinds
}

#[test]
fn the_script_decodes_every_kind_this_crate_encodes() {
    if !common::python_runs() {
        return;
    }
    let kinds = every_error_kind();
    let hex: Vec<String> = kinds
        .iter()
        .map(|kind| {
            let event = Event::Error {
                id: Some(300),
                kind: kind.clone(),
                message: "m".into(),
            };
            let bytes = encode(&event).expect("encodes");
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect();
    let mut args = vec!["--decode"];
    args.extend(hex.iter().map(String::as_str));
    let out = script(&args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), kinds.len(), "{out}");
    let mut decoded = BTreeSet::new();
    for (kind, line) in kinds.iter().zip(&lines) {
        let name = format!("{kind:?}");
        let name = name.split([' ', '(', '{']).next().unwrap_or_default();
        assert!(
            line.starts_with(&format!("{name} ('Error', 300, ('{name}'")),
            "{kind:?} decoded as {line}"
        );
        assert!(line.ends_with(", 'm')"), "{kind:?} decoded as {line}");
        decoded.insert(name.to_string());
    }
    assert_eq!(decoded, documented_kinds(), "kinds without a sample");
    // The fields, where a kind has some.
    assert!(lines[1].contains("('VersionMismatch', 7)"), "{}", lines[1]);
    assert!(lines[6].contains("('CannotExecute', 13)"), "{}", lines[6]);
    let sys_error = "{'op': 'mount(MS_BIND)', 'path': '/nonexistent', 'errno': 2}";
    assert!(
        lines[7].contains(&format!("'RootDirectories', {sys_error})")),
        "{}",
        lines[7]
    );
    for (line, expected) in [
        (
            18,
            "('Setup', 'IdMaps', ('Protocol', 'IdMapsWritten', 'Run'))",
        ),
        (19, "('Setup', 'DieWithZygote', ('ZygoteGone',))"),
        (
            20,
            "('Setup', 'VerifyPrivileges', ('Verification', 'a capability is left'))",
        ),
        (
            21,
            "('Setup', 'PrepareWorkload', ('Request', 'a NUL in an argument'))",
        ),
    ] {
        assert!(lines[line].contains(expected), "{}", lines[line]);
    }
    assert!(
        lines[8].contains(&format!("('Internal', {sys_error})")),
        "{}",
        lines[8]
    );
    assert!(lines[17].contains("('Internal', None)"), "{}", lines[17]);
    assert!(
        lines[11].contains("['Memory', 'TmpInodes']"),
        "{}",
        lines[11]
    );
    assert!(lines[14].contains("('UnknownEntry', 'e')"), "{}", lines[14]);
    assert!(
        lines[16].contains("('UnknownSandbox', 's')"),
        "{}",
        lines[16]
    );
}

#[test]
fn the_tour_spawns_and_waits() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start();
    let socket = daemon.socket.to_str().expect("a UTF-8 socket path");
    let out = script(&[socket]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "welcome: ('Welcome', {PROTOCOL_VERSION}, 'hatchery "
        )),
        "{out}"
    );
    assert!(lines[1].starts_with("spawned: ('Spawned', 1, "), "{out}");
    assert!(lines[1].ends_with(", ['Pidfd'], None)"), "{out}");
    assert!(
        lines[2]
            .starts_with("exited: ('Exited', 1, {'status': ('Exited', 0), 'reason': 'Exited', "),
        "{out}"
    );
    assert!(lines[2].contains("'wall_time_ms': 10000,"), "{out}");
    assert!(lines[2].ends_with("'limits_reached': []})"), "{out}");
}

/// The script's `Status` (`SOCKET --status`) decodes what the Rust client reads.
#[test]
fn the_script_asks_a_daemon_for_its_status() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start();
    let client = daemon.client();
    let child = client
        .spawn_child(hatchery::SpawnRequest::new("/bin/sleep").arg("30"))
        .expect("spawn");
    let socket = daemon.socket.to_str().expect("a UTF-8 socket path");
    let out = script(&[socket, "--status"]);
    let from_python: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let from_rust = client.status().expect("status");
    assert_eq!(from_python["version"], from_rust.version.as_str());
    assert_eq!(from_python["pid"], from_rust.pid);
    assert_eq!(from_python["live"], 1);
    assert_eq!(from_python["served"]["fresh"], 1, "{out}");
    let sandbox = &from_python["sandboxes"][0];
    assert_eq!(sandbox["pid"], child.pid, "{out}");
    assert_eq!(sandbox["program"], "/bin/sleep", "{out}");
    assert_eq!(sandbox["phase"], "running", "{out}");
    assert_eq!(sandbox["owner_uid"], 0, "{out}");
    child.kill().expect("kill");
}

#[test]
fn a_stock_daemon_answers_with_each_kind() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    // --allow-uid makes the socket 0666, so that uid 65534 reaches the peer check.
    let daemon = Daemon::start_with(&["--allow-uid", "4242"]);
    let mut scenarios = vec![
        "garbage",
        "wrong-version",
        "invalid-request",
        "not-found",
        "cannot-execute",
        "setup-failed",
        "unknown-id",
        "network-unavailable",
        "unknown-entry",
        "unknown-sandbox",
    ];
    if common::root("permission-denied, which switches to uid 65534") {
        scenarios.push("permission-denied");
    }
    // Last: it stops the daemon.
    scenarios.push("shutting-down");
    let lines = provoke(&daemon, &scenarios);
    assert!(
        lines["wrong-version"].contains(&format!("('VersionMismatch', {PROTOCOL_VERSION})")),
        "{}",
        lines["wrong-version"]
    );
    assert!(
        lines["cannot-execute"].contains("('CannotExecute', 13)"),
        "{}",
        lines["cannot-execute"]
    );
    assert!(
        lines["setup-failed"].contains("'path': '/nonexistent-root'"),
        "{}",
        lines["setup-failed"]
    );
    assert!(
        lines["shutting-down"].contains("('Error', None, ('ShuttingDown',)"),
        "{}",
        lines["shutting-down"]
    );
    assert!(daemon.stop().success(), "the daemon's exit after SIGTERM");
}

#[test]
fn a_daemon_with_ceilings_refuses_what_is_above_them() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start_with(&["--max-children", "1", "--max-wall-time", "60s"]);
    let lines = provoke(&daemon, &["over-ceiling", "busy"]);
    assert!(
        lines["over-ceiling"].contains("ceiling of 60000"),
        "{}",
        lines["over-ceiling"]
    );
}

#[test]
fn a_daemon_without_cgroups_cannot_enforce_a_memory_limit() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    if !common::root("a daemon in a mount namespace of its own") {
        return;
    }
    let dir = common::open_tempdir();
    let daemon = common::start_without_cgroups(dir.path());
    let lines = provoke(&daemon, &["unenforceable-limits"]);
    assert!(
        lines["unenforceable-limits"].contains("('UnenforceableLimits', ['Memory'])"),
        "{}",
        lines["unenforceable-limits"]
    );
}

#[test]
fn a_daemon_with_a_pool_of_one_subnet_runs_out() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    // A prefix and a range of this test's own.
    let daemon = Daemon::start_with(&["--veth-pool", "10.231.88.0/30", "--veth-prefix", "hdocs"]);
    provoke(&daemon, &["pool-exhausted"]);
}

#[test]
fn a_zygote_of_entries_refuses_bad_arguments() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start_zygote(TEST_ZYGOTE, &[], &[]);
    let lines = provoke(&daemon, &["bad-entry-args", "unknown-entry"]);
    assert!(
        lines["bad-entry-args"].contains("('BadEntryArgs', 'echo')"),
        "{}",
        lines["bad-entry-args"]
    );
}

#[test]
fn a_zygote_that_cannot_fork_fails_on_its_side() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start_zygote(TEST_ZYGOTE, &[], &[("HATCHERY_TEST_ZYGOTE_THREAD", "1")]);
    let lines = provoke(&daemon, &["internal"]);
    assert!(
        lines["internal"].contains("('Internal', None)"),
        "{}",
        lines["internal"]
    );
}
