//! The daemon's log as an operator reads it: at INFO, a line for each spawn that failed,
//! each sandbox the daemon killed (a limit, its shutdown) and each refused request, with
//! the daemon-wide sandbox number, the request id, the client's uid and pid, the program
//! and the verdict as `key=value` fields; no colour codes in a file; `--log-format json`
//! writes one JSON object per line.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Daemon;
use hatchery::protocol::{EndReason, Limits, SandboxConfig};
use hatchery::{SpawnError, SpawnRequest};

/// The lines of the daemon's log file that contain every one of `needles`.
fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .collect()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read the daemon's log")
}

fn sleep_for(seconds: &str, wall_time_ms: u64) -> SpawnRequest {
    SpawnRequest::new("/bin/sleep")
        .arg(seconds)
        .sandbox(SandboxConfig {
            limits: Limits {
                wall_time_ms: Some(wall_time_ms),
                ..Limits::default()
            },
            ..SandboxConfig::default()
        })
}

#[test]
fn failures_kills_and_refusals_are_logged_at_info_with_fields() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let daemon = Daemon::start_logging_to(log, &[]);
    let client_fields = format!(
        "client_uid={} client_pid={}",
        nix::unistd::getuid(),
        std::process::id()
    );

    // A spawn that fails: the program is not there. Request 1 of the first connection,
    // the daemon's sandbox 1.
    let first = daemon.client();
    let err = first
        .spawn_child(SpawnRequest::new("/no/such/program"))
        .expect_err("a missing program");
    assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");
    let log = read_log(&log_path);
    let failed = lines_with(&log, &["INFO", "spawn failed", "program=/no/such/program"]);
    assert_eq!(failed.len(), 1, "one line for the failed spawn in:\n{log}");
    for field in [
        "sandbox=1 ",
        "id=1 ",
        &client_fields,
        "step=exec",
        "kind=not_found",
    ] {
        assert!(
            failed[0].contains(field),
            "{field} missing in {}",
            failed[0]
        );
    }

    // A wall-time kill: request 1 of a second connection, yet the daemon's sandbox 2.
    let second = daemon.client();
    let mut child = second
        .spawn_child(sleep_for("5", 300))
        .expect("spawn sleep");
    let verdict = child.wait().expect("wait");
    assert_eq!(verdict.reason, EndReason::WallTimeout);
    let log = read_log(&log_path);
    let killed = lines_with(&log, &["INFO", "sandbox killed", "reason=wall_timeout"]);
    assert_eq!(killed.len(), 1, "one line for the kill in:\n{log}");
    for field in [
        "sandbox=2 ",
        "id=1 ",
        &client_fields,
        "program=/bin/sleep",
        "signal=9",
        "wall_time_ms=",
        "cpu_ms=",
        "max_rss_kib=",
    ] {
        assert!(
            killed[0].contains(field),
            "{field} missing in {}",
            killed[0]
        );
    }
    let wall_ms: u64 = killed[0]
        .split("wall_time_ms=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .expect("a number of milliseconds");
    assert!(
        (300..5000).contains(&wall_ms),
        "{wall_ms} ms in {}",
        killed[0]
    );
    assert!(
        !killed[0].contains("Verdict {"),
        "a debug dump: {}",
        killed[0]
    );

    // A refused request: the working directory is not absolute.
    let err = first
        .spawn_child(SpawnRequest::new("/bin/true").cwd("relative/dir"))
        .expect_err("a relative cwd");
    assert!(matches!(err, SpawnError::InvalidRequest(_)), "{err:?}");
    let log = read_log(&log_path);
    let refused = lines_with(&log, &["INFO", "refused a spawn request"]);
    assert_eq!(refused.len(), 1, "one line for the refusal in:\n{log}");
    for field in [
        "sandbox=3 ",
        "id=2 ",
        &client_fields,
        "program=/bin/true",
        "kind=invalid_request",
    ] {
        assert!(
            refused[0].contains(field),
            "{field} missing in {}",
            refused[0]
        );
    }

    // A sandbox the daemon's shutdown kills.
    let _running = second
        .spawn_child(sleep_for("30", 60_000))
        .expect("spawn sleep");
    daemon.stop();
    let log = read_log(&log_path);
    let shutdown = lines_with(&log, &["INFO", "sandbox killed", "reason=daemon_shutdown"]);
    assert_eq!(
        shutdown.len(),
        1,
        "one line for the shutdown kill in:\n{log}"
    );
    assert!(shutdown[0].contains("sandbox=4 "), "{}", shutdown[0]);

    assert!(
        !log.contains("\x1b["),
        "colour codes in a log written to a file:\n{log:?}"
    );
}

#[test]
fn json_log_lines_parse() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let daemon = Daemon::start_logging_to(log, &["--log-format", "json"]);
    let err = daemon
        .client()
        .spawn_child(SpawnRequest::new("/no/such/program"))
        .expect_err("a missing program");
    assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");
    daemon.stop();
    std::thread::sleep(Duration::from_millis(10));
    let log = read_log(&log_path);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|event| event["fields"]["message"] == "serving"),
        "{log}"
    );
    let failed = events
        .iter()
        .find(|event| event["fields"]["message"] == "spawn failed")
        .unwrap_or_else(|| panic!("no spawn failure in:\n{log}"));
    assert_eq!(failed["level"], "INFO");
    assert_eq!(failed["fields"]["program"], "/no/such/program");
    assert_eq!(failed["fields"]["sandbox"], 1);
    assert_eq!(failed["fields"]["client_pid"], std::process::id());
}
