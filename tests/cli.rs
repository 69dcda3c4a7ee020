//! `hatchery run`: exit-code mapping, stdio pass-through, signal forwarding, the verdict
//! file, the embedded zygote when no daemon runs (and never in place of a named socket),
//! the reasons printed for a limit's kill, profiles, and messages in the flags' words.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{hatchery, Daemon};

/// A socket path where no daemon listens: `run` must refuse it, not fall back.
const NO_DAEMON: &str = "/nonexistent/hatchery.sock";

/// `run` fails this way when a named socket cannot be used.
const EXIT_NO_DAEMON: i32 = 69;

fn run_embedded(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut full = vec!["run", "--embedded"];
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
        &["run", "--embedded", "--", "/bin/true"],
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

/// Without a socket named and nothing at the default path, `run` starts an embedded
/// zygote and says so once; `--quiet` silences that, and `--embedded` (which asks for
/// it) needs no notice.
#[test]
fn runs_a_command_without_a_daemon_and_says_so() {
    require_sandbox!();
    let default = hatchery::client::default_socket_path();
    // As root the default is the system socket: a daemon of this machine's there would
    // be used, which this test cannot tell from the embedded zygote.
    assert!(
        !default.exists(),
        "this test needs nothing at the default socket {}",
        default.display()
    );
    let unset = [("HATCHERY_SOCKET", "")];
    let (code, stdout, stderr) = hatchery(&["run", "--", "/bin/echo", "hello"], b"", &unset);
    assert_eq!((code, stdout.as_str()), (0, "hello\n"), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "hatchery: no daemon at {}; running in an embedded zygote, under no daemon's \
             policy (--embedded asks for this, --quiet silences this line)\n",
            default.display()
        )
    );
    let (code, stdout, stderr) =
        hatchery(&["run", "--quiet", "--", "/bin/echo", "hi"], b"", &unset);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "hi\n", ""));
    let (code, stdout, stderr) =
        hatchery(&["run", "--embedded", "--", "/bin/echo", "hi"], b"", &unset);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "hi\n", ""));
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
            "--embedded",
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
    // The probe runs; let the daemon's `Spawned` reach `run`: a signal before that
    // cancels the start instead (a_signal_before_the_sandbox_starts_ends_run_at_once).
    std::thread::sleep(std::time::Duration::from_millis(300));
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
    let (code, _, stderr) = hatchery(&["run", "--embedded"], b"", &[]);
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

/// Runs `hatchery` in `dir` (the current directory of relative paths).
fn hatchery_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::HATCHERY)
        .args(args)
        .current_dir(dir)
        .env("HATCHERY_SOCKET", "")
        .stdin(Stdio::null())
        .output()
        .expect("run hatchery");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Asserts that `run` refused the socket named as `named` with `EXIT_NO_DAEMON`, one line
/// that names it and says what is there, and ran nothing.
fn assert_refused(out: (i32, String, String), named: &str, what: &str) {
    let (code, stdout, stderr) = out;
    assert_eq!(code, EXIT_NO_DAEMON, "{named}: {stderr}");
    assert_eq!(stdout, "", "nothing ran");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("hatchery: {named}: {what}")),
        "{named}: {stderr}"
    );
    assert!(stderr.contains("nothing ran"), "{stderr}");
}

/// A socket named by `--socket` or `HATCHERY_SOCKET` is used or nothing runs: no
/// embedded zygote takes over from a path that is missing, a regular file, a directory
/// or a stale socket.
#[test]
fn a_named_socket_that_cannot_be_used_is_refused() {
    let dir = common::open_tempdir();
    let file = dir.path().join("file");
    std::fs::write(&file, "not a socket").unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists(), "a closed listener leaves its socket file");
    let dir_path = dir.path().to_str().unwrap();
    for (path, what) in [
        (NO_DAEMON, "no such file: no daemon listens there"),
        (
            file.to_str().unwrap(),
            "is a regular file, not a daemon's socket",
        ),
        (dir_path, "is a directory, not a daemon's socket"),
        (
            stale.to_str().unwrap(),
            "no daemon is listening on this socket (a stale one",
        ),
    ] {
        let command = ["run", "--socket", path, "--", "/bin/echo", "ran"];
        assert_refused(
            hatchery(&command, b"", &[]),
            &format!("--socket {path}"),
            what,
        );
        assert_refused(
            hatchery(
                &["run", "--", "/bin/echo", "ran"],
                b"",
                &[("HATCHERY_SOCKET", path)],
            ),
            &format!("HATCHERY_SOCKET={path}"),
            what,
        );
    }
    // --embedded asks for the embedded zygote, which a named socket rules out.
    let (code, _, stderr) = hatchery(
        &[
            "run",
            "--embedded",
            "--socket",
            NO_DAEMON,
            "--",
            "/bin/true",
        ],
        b"",
        &[],
    );
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("'--embedded' cannot be used with '--socket"),
        "{stderr}"
    );
}

/// A root daemon's 0600 socket refuses uid 65534 at the file: `run` says so and runs
/// nothing (before, it ran the command in an embedded zygote, outside the daemon's
/// policy).
#[test]
fn a_socket_the_user_may_not_open_is_refused() {
    require_sandbox!();
    if !common::root("switching to uid 65534") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let daemon = Daemon::start();
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = Command::new(common::hatchery_for_others())
        .args(["run", "--socket"])
        .arg(&daemon.socket)
        .args(["--", "/bin/echo", "ran"])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert_refused(
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        ),
        &format!("--socket {}", daemon.socket.display()),
        "permission denied: uid 65534 may not open it",
    );
}

/// Runs `args` in the embedded zygote and returns (code, stderr); skips (returns `None`)
/// when this host cannot enforce the limit, unless `HATCHERY_TESTS_MUST_RUN=1`.
fn limited(args: &[&str]) -> Option<(i32, String)> {
    let (code, _, stderr) = run_embedded(args, b"");
    if stderr.contains("cannot enforce") {
        assert!(!common::must_run(), "{stderr}");
        eprintln!("skipped: {stderr}");
        return None;
    }
    Some((code, stderr))
}

/// A job a limit ended says which, in the units a user types, and keeps its 137.
#[test]
fn a_limit_that_ends_the_job_is_named_on_stderr() {
    require_sandbox!();
    let (code, _, stderr) = run_embedded(&["--wall-time", "1s", "--", "/bin/sleep", "5"], b"");
    assert_eq!(
        (code, stderr.as_str()),
        (137, "hatchery: killed: wall-time limit 1s reached\n")
    );
    let memory = [
        "--memory",
        "32M",
        "--",
        "/bin/sh",
        "-c",
        "exec tail /dev/zero",
    ];
    if let Some((code, stderr)) = limited(&memory) {
        assert_eq!(
            (code, stderr.as_str()),
            (137, "hatchery: killed: memory limit 32 MiB reached\n")
        );
    }
    let busy = [
        "--cpu-time",
        "300ms",
        "--",
        "/bin/sh",
        "-c",
        "while :; do :; done",
    ];
    if let Some((code, stderr)) = limited(&busy) {
        assert_eq!(
            (code, stderr.as_str()),
            (137, "hatchery: killed: cpu-time limit 300ms reached\n")
        );
    }
    // --quiet keeps the code and drops the line; a job that kills itself gets none.
    let (code, _, stderr) = run_embedded(
        &["--quiet", "--wall-time", "1s", "--", "/bin/sleep", "5"],
        b"",
    );
    assert_eq!((code, stderr.as_str()), (137, ""));
    let (code, _, stderr) = run_embedded(&["--", "/bin/sh", "-c", "kill -9 $$"], b"");
    assert_eq!((code, stderr.as_str()), (137, ""));
}

/// `run` of a job that prints `started` and sleeps, through `daemon`, once the job runs
/// and `run` has its `Spawned` (a sandbox killed before that is a spawn that failed, not
/// a job that was ended).
fn running_job(daemon: &Daemon) -> std::process::Child {
    let mut cli = Command::new(common::HATCHERY)
        .args(["run", "--socket"])
        .arg(&daemon.socket)
        .args(["--", "/bin/sh", "-c", "echo started; exec sleep 30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(cli.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    cli
}

/// A daemon that shuts down under a job: `run` says that is what ended it.
#[test]
fn the_daemons_shutdown_is_named_on_stderr() {
    require_sandbox!();
    let daemon = Daemon::start();
    let cli = running_job(&daemon);
    assert!(daemon.stop().success());
    let out = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), stderr.as_ref()),
        (Some(137), "hatchery: killed: the daemon shut down\n")
    );
}

/// A daemon that dies under a job (its sandboxes die with it): `run` says the daemon went
/// away, and fails as hatchery (125), since no verdict came.
#[test]
fn a_lost_daemon_is_named_on_stderr() {
    require_sandbox!();
    let daemon = Daemon::start();
    let cli = running_job(&daemon);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.starts_with("hatchery: killed: the daemon went away while the job ran"),
        "{stderr}"
    );
}

/// The profiles shipped in docs/profiles/ run (network-client needs a veth pool: the
/// bin's unit tests parse it), and a flag overrides a profile's value.
#[test]
fn the_shipped_profiles_run_and_flags_override_them() {
    require_sandbox!();
    let profiles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/profiles");
    let shell = profiles.join("shell.toml");
    let shell = shell.to_str().unwrap();
    let (code, stdout, stderr) = run_embedded(
        &[
            "--profile",
            shell,
            "--",
            "/bin/sh",
            "-c",
            "echo $HOME; hostname",
        ],
        b"",
    );
    assert_eq!((code, stdout.as_str()), (0, "/tmp\nshell\n"), "{stderr}");
    // The flag's wall time wins over the profile's, and the flag's HOME over its HOME.
    let (code, stdout, stderr) = run_embedded(
        &[
            "--profile",
            shell,
            "--wall-time",
            "1s",
            "--env",
            "HOME=/",
            "--",
            "/bin/sh",
            "-c",
            "echo $HOME; sleep 5",
        ],
        b"",
    );
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (137, "/\n", "hatchery: killed: wall-time limit 1s reached\n")
    );
    if common::python_runs() {
        // docs/profiles/README.md's example, as written there.
        let dir = common::open_tempdir();
        std::fs::create_dir(dir.path().join("submission")).unwrap();
        std::fs::write(dir.path().join("submission/main.py"), "print(6 * 7)\n").unwrap();
        let judge = profiles.join("python-judge.toml");
        let (code, stdout, stderr) = hatchery_in(
            dir.path(),
            &[
                "run",
                "--embedded",
                "--profile",
                judge.to_str().unwrap(),
                "--ro-bind",
                "./submission:/job",
                "--",
                "python3",
                "/job/main.py",
            ],
        );
        assert_eq!((code, stdout.as_str()), (0, "42\n"), "{stderr}");
    }
}

/// A profile's unknown key is an error naming the key and the file, in TOML and JSON.
#[test]
fn a_profile_with_an_unknown_key_is_refused() {
    let dir = common::open_tempdir();
    std::fs::write(
        dir.path().join("p.toml"),
        "memory = \"64M\"\nmemroy = \"1G\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        r#"{"wall-time": "1s", "walltime": 2}"#,
    )
    .unwrap();
    for (file, key) in [("p.toml", "memroy"), ("p.json", "walltime")] {
        let (code, _, stderr) = hatchery_in(
            dir.path(),
            &["run", "--embedded", "--profile", file, "--", "/bin/true"],
        );
        assert_eq!(code, 125, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "hatchery: --profile {file}: unknown field `{key}`"
            )),
            "{stderr}"
        );
    }
}

/// Values a user mistypes get a message naming the flag and the value as typed.
#[test]
fn mistyped_values_are_named_with_their_flag() {
    for (args, expected) in [
        (
            &["--memory", "64"][..],
            "invalid value '64' for '--memory <VALUE>': invalid size \"64\": a size without a \
             unit is in bytes, and 64 bytes is too small; did you mean 64M?",
        ),
        (
            &["--wall-time", "-1"][..],
            "invalid value '-1' for '--wall-time <VALUE>': invalid duration \"-1\": a \
             duration cannot be negative",
        ),
        (
            &["--uid", "-1"][..],
            "invalid value '-1' for '--uid <N>': expected a whole number from 1 to",
        ),
        (
            &["--cwd", "job"][..],
            "hatchery: --cwd: job is a path inside the sandbox and must be absolute, without \
             \"..\" (e.g. /job)",
        ),
        (
            &["--bind", "/tmp:out"][..],
            "hatchery: --bind /tmp:out: out is a path inside the sandbox and must be \
             absolute",
        ),
    ] {
        let mut full = vec!["run", "--embedded"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--", "/bin/true"]);
        let (code, _, stderr) = hatchery(&full, b"", &[]);
        assert_eq!(code, 125, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("-- -1"),
            "no tip to write `-- -1`: {stderr}"
        );
    }
}

/// Relative host paths are from the current directory: `--ro-bind .:/job`, a relative
/// `--chroot` (named as typed when it is missing), a relative `--verdict-json`.
#[test]
fn relative_paths_are_from_the_current_directory() {
    require_sandbox!();
    let dir = common::open_tempdir();
    std::fs::write(dir.path().join("input.txt"), "from the current directory\n").unwrap();
    let (code, stdout, stderr) = hatchery_in(
        dir.path(),
        &[
            "run",
            "--embedded",
            "--ro-bind",
            ".:/job",
            "--cwd",
            "/job",
            "--verdict-json",
            "verdict.json",
            "--",
            "/bin/cat",
            "input.txt",
        ],
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, "from the current directory\n"),
        "{stderr}"
    );
    assert!(dir.path().join("verdict.json").exists());
    let (code, _, stderr) = hatchery_in(
        dir.path(),
        &["run", "--embedded", "--chroot", "root", "--", "/bin/true"],
    );
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "hatchery: --chroot: root (from {}): No such file or directory",
            dir.path().display()
        )),
        "{stderr}"
    );
}

/// A program not found says which, and that the sandbox does not see the current
/// directory, when that is the likely cause.
#[test]
fn a_program_not_found_is_named_with_a_hint() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let script = dir.path().join("job.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let (code, _, stderr) = hatchery_in(dir.path(), &["run", "--embedded", "--", "./job.sh"]);
    assert_eq!(code, 127, "{stderr}");
    assert_eq!(
        stderr,
        "hatchery: ./job.sh: not found in the sandbox; the sandbox does not see the current \
         directory; bind it with `--bind .:/job --cwd /job`\n"
    );
}

/// `--verdict-json` is opened before the job runs (a bad path costs nothing and loses no
/// exit status), and `-` is stdout.
#[test]
fn the_verdict_file_is_checked_first_and_dash_is_stdout() {
    require_sandbox!();
    use std::os::unix::fs::PermissionsExt;
    let dir = common::open_tempdir();
    // Writable by the sandbox's host uid, so that a job that ran would leave its mark.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = dir.path().join("ran");
    let bind = format!("{}:/out", dir.path().display());
    let (code, _, stderr) = run_embedded(
        &[
            "--verdict-json",
            "/nonexistent/dir/v.json",
            "--bind",
            &bind,
            "--",
            "/bin/touch",
            "/out/ran",
        ],
        b"",
    );
    assert_eq!(code, 125, "{stderr}");
    assert_eq!(
        stderr,
        "hatchery: --verdict-json /nonexistent/dir/v.json: cannot create it: No such file or \
         directory\n"
    );
    assert!(
        !marker.exists(),
        "the job ran though its verdict could not be written"
    );
    // The control: with a verdict file that can be written, the job leaves its mark.
    let (code, _, stderr) = run_embedded(&["--bind", &bind, "--", "/bin/touch", "/out/ran"], b"");
    assert_eq!(code, 0, "{stderr}");
    assert!(marker.exists(), "the control job left no mark");
    let (code, stdout, stderr) = run_embedded(
        &["--verdict-json", "-", "--", "/bin/sh", "-c", "exit 3"],
        b"",
    );
    assert_eq!(code, 3, "{stderr}");
    let verdict: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verdict["exit_code"], 3);
    assert!(!std::path::Path::new("-").exists());
}

/// `hatchery` alone prints its help to stdout and exits 2; `hatchery help` exits 0.
#[test]
fn hatchery_alone_prints_help_to_stdout() {
    let (code, stdout, stderr) = hatchery(&[], b"", &[]);
    assert_eq!((code, stderr.as_str()), (2, ""));
    assert!(stdout.contains("Usage: hatchery <COMMAND>"), "{stdout}");
    let (code, stdout, _) = hatchery(&["help"], b"", &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: hatchery <COMMAND>"), "{stdout}");
    let (code, stdout, _) = hatchery(&["run", "--help"], b"", &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("69 the socket named by --socket"),
        "{stdout}"
    );
}

/// A limit the daemon cannot enforce is named by its flag, with the flag that allows
/// running without it (not the wire's `allow_unenforced_limits`).
#[test]
fn an_unenforceable_limit_is_named_by_its_flag() {
    require_sandbox!();
    if !common::root("a daemon without cgroups, made with unshare") {
        return;
    }
    let dir = common::open_tempdir();
    let daemon = common::start_without_cgroups(dir.path());
    let socket = daemon.socket.to_str().unwrap();
    let (code, _, stderr) = hatchery(
        &[
            "run",
            "--socket",
            socket,
            "--memory",
            "64M",
            "--",
            "/bin/true",
        ],
        b"",
        &[],
    );
    assert_eq!(
        (code, stderr.as_str()),
        (
            125,
            "hatchery: this host cannot enforce --memory (no cgroup controller for it); leave \
             it out, or add --allow-unenforced-limits to run without it\n"
        )
    );
    let (code, _, stderr) = hatchery(
        &[
            "run",
            "--socket",
            socket,
            "--memory",
            "64M",
            "--allow-unenforced-limits",
            "--",
            "/bin/true",
        ],
        b"",
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
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
    if !common::root("the user check of a root daemon") {
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

#[test]
fn a_fork_loop_at_the_pids_limit_is_named_when_the_host_can_tell() {
    require_sandbox!();
    // A memory limit gives the sandbox a cgroup, whose pids controller counts refusals.
    let script = "$| = 1; my $n = 0; for (1..100) { my $pid = fork; last unless defined $pid; \
                  if ($pid == 0) { sleep 5; exit } $n++ } print \"started=$n\\n\"; kill 9, -$$";
    let (_, stdout, stderr) = run_embedded(
        &[
            "--pids",
            "16",
            "--memory",
            "256M",
            "--",
            "/usr/bin/perl",
            "-e",
            script,
        ],
        b"",
    );
    assert!(stdout.contains("started="), "{stdout} {stderr}");
    if common::must_run() || stderr.contains("forks were refused") {
        assert!(
            stderr.contains("hatchery: pids limit 16 reached: forks were refused"),
            "{stderr}"
        );
    }
    // Below the limit, nothing is said.
    let (code, _, stderr) = run_embedded(
        &["--pids", "16", "--memory", "256M", "--", "/bin/true"],
        b"",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("pids limit"), "{stderr}");
}

/// `run -t` drives the command's terminal from its own stdin: a pipe is refused, with
/// why and what to do, before any sandbox is made; without `-t` the same job runs.
#[test]
fn run_t_refuses_a_stdin_that_is_not_a_terminal() {
    let (code, stdout, stderr) = run_embedded(&["-t", "--", "/bin/echo", "ran"], b"");
    assert_eq!(code, 125, "{stdout}{stderr}");
    assert!(stderr.contains("-t: stdin is not a terminal"), "{stderr}");
    assert!(stderr.contains("leave out -t"), "{stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
}

/// `shell` takes run's flags and a program in place of the shell.
#[test]
fn shell_help_lists_runs_options() {
    let (code, stdout, _) = hatchery(&["shell", "--help"], b"", &[]);
    assert_eq!(code, 0);
    for flag in [
        "--ro-bind",
        "--chroot",
        "--cwd",
        "--net",
        "--seccomp-policy",
        "--profile",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("--tty"), "{stdout}");
}
