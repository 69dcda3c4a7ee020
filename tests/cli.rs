//! `hatchery run`: exit-code mapping, stdio pass-through, signal forwarding, the verdict
//! file, and the embedded zygote when no daemon runs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{hatchery, Daemon};

/// A socket path where no daemon listens: `run` must start its embedded zygote.
const NO_DAEMON: &str = "/nonexistent/hatchery.sock";

fn run_embedded(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut full = vec!["run", "--socket", NO_DAEMON];
    full.extend_from_slice(args);
    hatchery(&full, stdin, &[])
}

/// With `RUST_LOG=hatchery=debug`, the zygote logs how long each part of a sandbox's
/// setup took, as its init measured it (`benches/steps.sh` sums these): every part of a
/// fresh exec spawn, in order, from the clone to the workload's `execve`.
#[test]
fn the_setup_of_each_sandbox_is_timed_part_by_part_in_the_debug_log() {
    require_sandbox!();
    let (code, _, stderr) = hatchery(
        &["run", "--socket", NO_DAEMON, "--", "/bin/true"],
        b"",
        &[("RUST_LOG", "hatchery=debug"), ("NO_COLOR", "1")],
    );
    assert_eq!(code, 0, "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.contains("its setup"))
        .unwrap_or_else(|| panic!("no setup timeline logged: {stderr}"));
    let setup = line.split_once("setup=").expect("the setup field").1;
    let parts: Vec<(&str, u64)> = setup
        .split(", ")
        .map(|part| {
            let (name, us) = part.rsplit_once(' ').expect("NAME MICROSECONDS");
            (name, us.parse().expect("microseconds"))
        })
        .collect();
    let names: Vec<&str> = parts.iter().map(|&(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "clone",
            "place fds",
            "hold signals",
            "prepare workload",
            "id maps",
            "user ids",
            "die with zygote",
            "scratch root",
            "root directories",
            "proc and tmp",
            "dev",
            "binds",
            "pivot root",
            "detach old root",
            "read-only root",
            "hostname",
            "loopback",
            "bounding set",
            "drop capabilities",
            "no_new_privs",
            "verify privileges",
            "working directory",
            "session",
            "resource limits",
            "start workload",
            "seccomp",
            "execve"
        ],
        "{line}"
    );
    let total: u64 = parts.iter().map(|&(_, us)| us).sum();
    assert!(
        (100..10_000_000).contains(&total),
        "clone to execve in {total} µs: {line}"
    );
}

#[test]
fn runs_a_command_without_a_daemon() {
    require_sandbox!();
    let (code, stdout, stderr) = hatchery(
        &["run", "--", "/bin/echo", "hello"],
        b"",
        &[("HATCHERY_SOCKET", NO_DAEMON)],
    );
    assert_eq!((code, stdout.as_str()), (0, "hello\n"), "{stderr}");
}

#[test]
fn runs_a_command_through_a_daemon() {
    require_sandbox!();
    let daemon = Daemon::start();
    let socket = daemon.socket.to_str().unwrap();
    let (code, stdout, stderr) = hatchery(
        &["run", "--", "/bin/echo", "via daemon"],
        b"",
        &[("HATCHERY_SOCKET", socket)],
    );
    assert_eq!((code, stdout.as_str()), (0, "via daemon\n"), "{stderr}");
}

#[test]
fn passes_stdio_through() {
    require_sandbox!();
    let (code, stdout, stderr) = run_embedded(
        &["--", "/bin/sh", "-c", "cat; echo oops >&2"],
        b"from stdin\n",
    );
    assert_eq!(code, 0);
    assert_eq!(stdout, "from stdin\n");
    assert_eq!(stderr, "oops\n");
}

#[test]
fn exits_with_the_childs_code() {
    require_sandbox!();
    for code in [0, 3, 255] {
        let (got, _, stderr) = run_embedded(&["--", "/bin/sh", "-c", &format!("exit {code}")], b"");
        assert_eq!(got, code, "{stderr}");
    }
}

#[test]
fn exits_128_plus_the_signal_that_killed_the_child() {
    require_sandbox!();
    let (code, _, _) = run_embedded(&["--", "/bin/sh", "-c", "kill -9 $$"], b"");
    assert_eq!(code, 137);
    let (code, _, _) = run_embedded(&["--", "/bin/sh", "-c", "kill -TERM $$"], b"");
    assert_eq!(code, 143);
}

#[test]
fn exits_127_when_the_program_is_not_found() {
    require_sandbox!();
    let (code, _, stderr) = run_embedded(&["--", "/no/such/program"], b"");
    assert_eq!(code, 127);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line naming the cause: {stderr}"
    );
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn exits_126_when_the_program_cannot_execute() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let (path, bind) = common::non_executable_file(&dir);
    let (code, _, stderr) = run_embedded(&["--ro-bind", &bind, "--", path], b"");
    assert_eq!(code, 126);
    assert!(stderr.contains("EACCES"), "{stderr}");
}

#[test]
fn exits_125_on_its_own_failures() {
    require_sandbox!();
    let (code, _, stderr) = run_embedded(&["--chroot", "/no/such/root", "--", "/bin/true"], b"");
    assert_eq!(code, 125);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("root directories") && stderr.contains("/no/such/root"),
        "{stderr}"
    );
    let (code, _, stderr) = run_embedded(&["--env", "NOEQUALS", "--", "/bin/true"], b"");
    assert_eq!(code, 125, "{stderr}");
}

#[test]
fn passes_flags_into_the_sandbox() {
    require_sandbox!();
    let dir = common::open_tempdir();
    std::fs::write(dir.path().join("input.txt"), "bound in\n").unwrap();
    let bind = format!("{}:/data", dir.path().display());
    let (code, stdout, stderr) = run_embedded(
        &[
            "--ro-bind",
            &bind,
            "--env",
            "GREETING=hi",
            "--cwd",
            "/data",
            "--hostname",
            "box",
            "--",
            "/bin/sh",
            "-c",
            "cat input.txt; echo $GREETING; hostname; pwd",
        ],
        b"",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "bound in\nhi\nbox\n/data\n");
}

#[test]
fn writes_the_verdict_as_json() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let path = dir.path().join("verdict.json");
    let (code, _, _) = run_embedded(
        &[
            "--verdict-json",
            path.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "exit 9",
        ],
        b"",
    );
    assert_eq!(code, 9);
    let verdict: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(verdict["exit_code"], 9);
    assert!(verdict["signal"].is_null());
    assert!(verdict["wall_time_ms"].as_f64().unwrap() > 0.0);
    assert!(verdict["max_rss_kib"].as_u64().unwrap() > 0);
}

#[test]
fn forwards_sigterm_to_the_child() {
    require_sandbox!();
    let probe = common::probe_path().to_str().unwrap().to_string();
    let bind = format!("{probe}:/probe");
    let mut cli = Command::new(common::HATCHERY)
        .args([
            "run",
            "--socket",
            NO_DAEMON,
            "--ro-bind",
            &bind,
            "--",
            "/probe",
            "wait-signal",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cli.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got=SIGTERM");
    assert_eq!(cli.wait().unwrap().code(), Some(0));
}

#[test]
fn refuses_a_missing_command() {
    let (code, _, stderr) = hatchery(&["run", "--socket", NO_DAEMON], b"", &[]);
    assert_eq!(
        code, 125,
        "a usage error is hatchery's own failure: {stderr}"
    );
    assert!(stderr.contains("PROGRAM"), "{stderr}");
}

/// Whether `pid` holds `signal` blocked (`SigBlk` in its status): `run` holds the signals
/// it answers from before it connects.
fn holds(pid: u32, signal: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigBlk:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// A daemon that does not answer (here: stopped) cannot hold `run` hostage: SIGINT and
/// SIGTERM end it at once with 130 and 143 and a line that says why, and the daemon, once
/// it runs again, serves on with nothing left of the cancelled request.
#[test]
fn a_signal_before_the_sandbox_starts_ends_run_at_once() {
    require_sandbox!();
    let daemon = Daemon::start();
    let socket = daemon.socket.to_str().unwrap().to_string();
    let daemon_pid = nix::unistd::Pid::from_raw(daemon.pid());
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        nix::sys::signal::kill(daemon_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let mut cli = Command::new(common::HATCHERY)
            .args(["run", "--socket", &socket, "--", "/bin/sleep", "30"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !holds(cli.id(), signal as i32) {
            assert!(
                std::time::Instant::now() < deadline,
                "run never held {signal}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Let it reach its wait for the stopped daemon's answer.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let sent = std::time::Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(cli.id() as i32), signal).unwrap();
        let status = loop {
            if let Some(status) = cli.try_wait().unwrap() {
                break status;
            }
            if sent.elapsed() > std::time::Duration::from_secs(2) {
                let _ = cli.kill();
                let _ = cli.wait();
                nix::sys::signal::kill(daemon_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
                panic!("run did not answer {signal} within 2 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut cli.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(code), "{signal}: {status:?} {stderr}");
        assert!(
            stderr.contains(&format!("{signal} before the sandbox started")),
            "{stderr}"
        );
        nix::sys::signal::kill(daemon_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        // The daemon serves on, and nothing of the cancelled request is left running.
        let (code, stdout, stderr) = hatchery(
            &["run", "--socket", &socket, "--", "/bin/echo", "still"],
            b"",
            &[],
        );
        assert_eq!((code, stdout.as_str()), (0, "still\n"), "{stderr}");
        assert_eq!(
            daemon.wait_childless(std::time::Duration::from_secs(5)),
            Vec::new(),
            "the daemon's sandboxes after the cancelled run"
        );
    }
}

#[test]
fn a_host_uid_range_that_holds_someone_elses_ids_is_refused_at_start() {
    // Ids no sandbox may have, refused as the flag is read.
    for (range, expected) in [("65000:1000", "65534"), ("0:10", "root")] {
        let (code, _, stderr) = hatchery(
            &[
                "serve",
                "--socket",
                "/nonexistent/x.sock",
                "--host-uid-range",
                range,
            ],
            b"",
            &[],
        );
        assert_ne!(code, 0, "{range}: {stderr}");
        assert!(stderr.contains(expected), "{range}: {stderr}");
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(!common::must_run(), "the user check needs a root daemon");
        return;
    }
    // A range holding a user's uid, refused at start-up, naming the user.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let (name, uid) = passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some((fields[0].to_string(), fields.get(2)?.parse::<u32>().ok()?))
        })
        .find(|&(_, uid)| uid > 0 && uid < 65534)
        .expect("a user other than root and nobody");
    let range = format!("{uid}:1");
    let (code, _, stderr) = hatchery(
        &[
            "serve",
            "--socket",
            "/nonexistent/x.sock",
            "--host-uid-range",
            &range,
        ],
        b"",
        &[],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("uid {uid} of the user {name}")),
        "{stderr}"
    );
}
