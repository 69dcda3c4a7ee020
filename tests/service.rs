//! Running hatchery as a service: every `serve` and `run` flag from a `HATCHERY_*`
//! variable (the flag wins), listed in `--help` and in the README's table; the daemon's
//! live status (`Status`, `hatchery status`, `hatchery ps`) and who sees what of it.

mod common;

use std::collections::BTreeSet;

use common::{hatchery, Daemon};

/// The `(flag, variable)` pairs that `hatchery COMMAND --help` shows.
fn flags_and_variables(command: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let (code, help, stderr) = hatchery(&[command, "--help"], b"", &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut flags = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed
            .strip_prefix("--")
            .filter(|_| line.starts_with("  "))
        {
            let flag = format!("--{}", rest.split([' ', ',', '=']).next().unwrap());
            flags.insert(flag.clone());
            current = Some(flag);
        } else if trimmed.starts_with('-') && trimmed.contains(", --") {
            let flag = trimmed
                .split(", ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            flags.insert(flag.to_string());
            current = Some(flag.to_string());
        }
        if let Some(at) = line.find("[env: ") {
            let variable = line[at + 6..].split('=').next().unwrap().to_string();
            let flag = current.clone().expect("a variable after its flag");
            pairs.insert((flag, variable));
        }
    }
    (flags, pairs)
}

/// Flags that have no variable, each for a reason the README's table states.
const NO_VARIABLE: [&str; 7] = [
    "--help",
    "--version",
    // Named by HATCHERY_SOCKET, which `run` and clients read as they always did.
    "--socket",
    // Two values each: a profile file holds them (`symlink = [[SRC, DST]]`).
    "--symlink",
    "--file",
    "--file-from",
    // A terminal is asked for at the command line only: a variable left set would make
    // every script's `run` refuse a stdin that is not a terminal.
    "--tty",
];

#[test]
fn every_serve_and_run_flag_has_a_variable_and_the_readme_lists_them() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: BTreeSet<(String, String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let variable = cells.get(1)?.strip_prefix("`HATCHERY_")?;
            let variable = format!("HATCHERY_{}", variable.strip_suffix('`')?);
            let command = cells.get(2)?.trim_matches('`').to_string();
            let flag = cells.get(3)?.trim_matches('`').to_string();
            Some((command, flag, variable))
        })
        .collect();
    let mut shown = BTreeSet::new();
    for command in ["serve", "run"] {
        let (flags, pairs) = flags_and_variables(command);
        let with_variable: BTreeSet<&String> = pairs.iter().map(|(flag, _)| flag).collect();
        for flag in &flags {
            assert!(
                with_variable.contains(flag) || NO_VARIABLE.contains(&flag.as_str()),
                "`hatchery {command} {flag}` has no HATCHERY_* variable in --help"
            );
        }
        for (flag, variable) in pairs {
            let expected = match command {
                "run" => format!("HATCHERY_RUN_{}", &flag[2..]),
                _ => format!("HATCHERY_{}", &flag[2..]),
            }
            .to_uppercase()
            .replace('-', "_");
            assert_eq!(variable, expected, "{command} {flag}");
            shown.insert((command.to_string(), flag, variable));
        }
    }
    assert!(shown.len() > 60, "only {} variables shown", shown.len());
    let missing: Vec<_> = shown.difference(&table).collect();
    let stale: Vec<_> = table.difference(&shown).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README's variable table: missing {missing:?}, not in --help {stale:?}"
    );
}

/// A variable's bad value is refused in the words of its flag, which shows the variable is
/// read (these need no daemon).
#[test]
fn a_variables_bad_value_is_named_with_its_flag() {
    for (args, variable, value, flag) in [
        (
            &["run", "--embedded", "--", "true"][..],
            "HATCHERY_RUN_MEMORY",
            "12x",
            "--memory",
        ),
        (
            &["run", "--embedded", "--", "true"],
            "HATCHERY_RUN_UID",
            "abc",
            "--uid",
        ),
        (
            &["run", "--embedded", "--", "true"],
            "HATCHERY_RUN_QUIET",
            "maybe",
            "--quiet",
        ),
        (
            &["serve", "--socket", "/nonexistent/s"],
            "HATCHERY_MAX_CHILDREN",
            "many",
            "--max-children",
        ),
        (
            &["serve", "--socket", "/nonexistent/s"],
            "HATCHERY_DEFAULT_WALL_TIME",
            "-1",
            "--default-wall-time",
        ),
        (
            &["serve", "--socket", "/nonexistent/s"],
            "HATCHERY_LOG_FORMAT",
            "xml",
            "--log-format",
        ),
    ] {
        let (code, _, stderr) = hatchery(args, b"", &[(variable, value)]);
        assert_eq!(code, 125, "{variable}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}")),
            "{variable}={value}: {stderr}"
        );
    }
    // The same value typed as the flag wins over the variable's bad one.
    let (code, _, stderr) = hatchery(
        &[
            "serve",
            "--socket",
            "/nonexistent/s",
            "--log-format",
            "text",
            "--max-children",
            "0",
        ],
        b"",
        &[
            ("HATCHERY_LOG_FORMAT", "xml"),
            ("HATCHERY_MAX_CHILDREN", "many"),
        ],
    );
    assert!(
        !stderr.contains("invalid value"),
        "flags did not win ({code}): {stderr}"
    );
}

/// `run`'s variables reach the sandbox, and a flag wins over its variable.
#[test]
fn run_honours_its_variables_and_flags_win() {
    require_sandbox!();
    let env = [
        ("HATCHERY_RUN_HOSTNAME", "from-variable"),
        ("HATCHERY_RUN_QUIET", "1"),
    ];
    let (code, stdout, stderr) = hatchery(&["run", "--embedded", "--", "/bin/hostname"], b"", &env);
    assert_eq!((code, stdout.as_str()), (0, "from-variable\n"), "{stderr}");
    let (code, stdout, stderr) = hatchery(
        &[
            "run",
            "--embedded",
            "--hostname",
            "from-flag",
            "--",
            "/bin/hostname",
        ],
        b"",
        &env,
    );
    assert_eq!((code, stdout.as_str()), (0, "from-flag\n"), "{stderr}");
    // HATCHERY_RUN_EMBEDDED gives way to a typed --socket (which then must be used).
    let (code, _, stderr) = hatchery(
        &[
            "run",
            "--socket",
            "/nonexistent/hatchery.sock",
            "--",
            "/bin/true",
        ],
        b"",
        &[("HATCHERY_RUN_EMBEDDED", "1")],
    );
    assert_eq!(code, 69, "{stderr}");
    // Both typed are still a usage error.
    let (code, _, stderr) = hatchery(
        &[
            "run",
            "--embedded",
            "--socket",
            "/nonexistent/hatchery.sock",
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

/// The pids limit a job of this daemon gets, from `run --verdict-json -`.
fn default_pids_of(daemon: &Daemon) -> u64 {
    let socket = daemon.socket.to_str().unwrap();
    let (code, stdout, stderr) = hatchery(
        &[
            "run",
            "--socket",
            socket,
            "--verdict-json",
            "-",
            "--",
            "/bin/true",
        ],
        b"",
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let verdict: serde_json::Value = serde_json::from_str(&stdout).expect("the verdict");
    verdict["limits"]["pids"].as_u64().expect("a pids limit")
}

/// `serve`'s variables set the daemon's policy, and a flag wins over its variable.
#[test]
fn serve_honours_its_variables_and_flags_win() {
    require_sandbox!();
    let daemon = Daemon::start_with_env(&[("HATCHERY_DEFAULT_PIDS", "77")]);
    assert_eq!(default_pids_of(&daemon), 77);
    drop(daemon);
    let daemon = Daemon::start_with_args_and_env(
        &["--default-pids", "88"],
        &[("HATCHERY_DEFAULT_PIDS", "77")],
    );
    assert_eq!(default_pids_of(&daemon), 88);
}

/// Waits until `status` (asked again and again) satisfies `done`; returns that status.
fn status_when(
    client: &hatchery::Client,
    what: &str,
    done: impl Fn(&hatchery::protocol::DaemonStatus) -> bool,
) -> hatchery::protocol::DaemonStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = client.status().expect("status");
        if done(&status) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {what}: {status:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `Status` tells the daemon's version and uptime, its live sandboxes (owner, program,
/// age, memory, phase), its warm pool's hits and misses and its counters, which move as
/// spawns are served, fail and end; `hatchery status` and `ps` print the same.
#[test]
fn status_reports_the_daemon_its_sandboxes_and_counters_that_move() {
    use hatchery::protocol::DaemonStatus;
    require_sandbox!();
    let daemon = Daemon::start_with(&["--warm-pool", "1"]);
    common::warm::wait_for_idle(daemon.pid(), 1);
    let client = daemon.client();
    let before = client.status().expect("status");
    assert_eq!(
        before.version,
        format!("hatchery {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(before.pid, daemon.pid() as u32);
    assert!(before.all_owners, "root sees every sandbox");
    assert_eq!((before.live, before.sandboxes.len()), (0, 0));
    assert_eq!(
        (before.warm_pool.size_per_shape, before.warm_pool.shapes),
        (1, 1)
    );
    assert_eq!(before.warm_pool.idle, 1);
    assert_eq!((before.warm_pool.hits, before.warm_pool.misses), (0, 0));
    assert!(
        before.served.is_empty() && before.failed.is_empty(),
        "{before:?}"
    );
    assert!(!before.veth.enabled);

    // Served warm (the pool's idle sandbox), then fresh (the pool is empty).
    let mut first = client
        .spawn_child(hatchery::SpawnRequest::new("/bin/sleep").arg("30"))
        .expect("spawn");
    let mut second = client
        .spawn_child(hatchery::SpawnRequest::new("/bin/sleep").arg("31"))
        .expect("spawn");
    let failed = client.spawn_child(hatchery::SpawnRequest::new("/nonexistent/program"));
    assert!(failed.is_err());
    std::thread::sleep(std::time::Duration::from_millis(50));
    let status = client.status().expect("status");
    assert!(
        status.uptime_ms >= 50 && status.uptime_ms > before.uptime_ms,
        "{status:?}"
    );
    // The first is the idle sandbox's; the pool may have refilled for the others.
    let warm = DaemonStatus::count(&status.served, "warm");
    let fresh = DaemonStatus::count(&status.served, "fresh");
    assert!(warm >= 1 && warm + fresh == 2, "{status:?}");
    assert_eq!(
        DaemonStatus::count(&status.failed, "not_found"),
        1,
        "{status:?}"
    );
    let pool = status.warm_pool;
    assert!(pool.hits >= 1 && pool.hits + pool.misses == 3, "{status:?}");
    let ours: Vec<_> = status
        .sandboxes
        .iter()
        .filter(|s| s.phase == "running")
        .collect();
    assert_eq!(ours.len(), 2, "{status:#?}");
    for (sandbox, child) in ours.iter().zip([&first, &second]) {
        assert_eq!(sandbox.pid, child.pid);
        assert_eq!(sandbox.owner_uid, Some(0));
        assert_eq!(sandbox.program, "/bin/sleep");
        assert!(sandbox.age_ms >= 50, "{sandbox:?}");
        assert!(sandbox.memory_bytes.is_some_and(|m| m > 0), "{sandbox:?}");
        assert!(sandbox.client_connected);
    }
    assert!(ours[0].sandbox < ours[1].sandbox, "oldest first");

    // The CLI prints the same report.
    let socket = daemon.socket.to_str().unwrap();
    let (code, json, stderr) = hatchery(&["status", "--socket", socket, "--json"], b"", &[]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("status --json");
    assert_eq!(json["warm_pool"]["hits"], pool.hits);
    assert_eq!(
        json["warm_pool"]["hit_rate"].as_f64().map(|r| r > 0.0),
        Some(true)
    );
    assert_eq!(
        json["sandboxes"].as_array().map(Vec::len),
        Some(2),
        "{json}"
    );
    let (code, table, stderr) = hatchery(&["status", "--socket", socket], b"", &[]);
    assert_eq!(code, 0, "{stderr}");
    let served = match fresh {
        0 => "served:     warm 2".to_string(),
        _ => format!("served:     fresh {fresh}, warm {warm}"),
    };
    assert!(table.contains(&served), "{table}");
    assert!(table.contains("failed:     not_found 1"), "{table}");
    let (code, ps, stderr) = hatchery(&["ps", "--socket", socket], b"", &[]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("SANDBOX  ID  PID"), "{ps}");
    assert_eq!(lines.len(), 3, "{ps}");
    assert!(
        lines[1].contains(&first.pid.to_string()) && lines[1].ends_with("/bin/sleep"),
        "{ps}"
    );

    // Ended, by reason; gone from the list.
    first.kill().expect("kill");
    first.wait().expect("wait");
    second.kill().expect("kill");
    second.wait().expect("wait");
    let after = status_when(&client, "both reaped", |s| s.live == 0);
    assert!(after.sandboxes.is_empty(), "{after:?}");
    assert_eq!(
        DaemonStatus::count(&after.ended, "killed_by_client"),
        2,
        "{after:?}"
    );
}

/// A client that is not root (nor the daemon's uid) sees only its own sandboxes, in
/// `Status` and in `hatchery ps`; root sees every one.
#[test]
fn a_non_root_client_sees_only_its_own_sandboxes() {
    use std::os::unix::process::CommandExt;
    require_sandbox!();
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !common::must_run(),
            "HATCHERY_TESTS_MUST_RUN=1 but not root"
        );
        eprintln!("skipped: switching to uid 65534 needs root");
        return;
    }
    let daemon = Daemon::start_with(&["--allow-uid", "65534"]);
    let client = daemon.client();
    let mut roots = client
        .spawn_child(hatchery::SpawnRequest::new("/bin/sleep").arg("30"))
        .expect("spawn");
    let as_nobody = |args: &[&str]| {
        let mut command = std::process::Command::new(common::hatchery_for_others());
        command.args(args).uid(65534).gid(65534);
        command
    };
    let socket = daemon.socket.to_str().unwrap();
    let mut nobodys = as_nobody(&["run", "--socket", socket, "--", "/bin/sleep", "29"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("run as nobody");
    let all = status_when(&client, "nobody's sandbox running", |s| {
        s.sandboxes.iter().filter(|s| s.phase == "running").count() == 2
    });
    let owners: BTreeSet<Option<u32>> = all.sandboxes.iter().map(|s| s.owner_uid).collect();
    assert_eq!(owners, BTreeSet::from([Some(0), Some(65534)]), "{all:#?}");
    for command in ["ps", "status"] {
        let out = as_nobody(&[command, "--socket", socket, "--json"])
            .output()
            .expect("ps as nobody");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let sandboxes = if command == "ps" {
            &json
        } else {
            &json["sandboxes"]
        };
        let owners: Vec<&serde_json::Value> = sandboxes
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| &s["owner_uid"])
            .collect();
        assert_eq!(owners, [&serde_json::json!(65534)], "{command}: {json}");
        if command == "status" {
            assert_eq!(json["all_owners"], false, "{json}");
        }
    }
    roots.kill().expect("kill");
    roots.wait().expect("wait");
    let _ = nobodys.kill();
    let _ = nobodys.wait();
}

// ---- socket activation, readiness, graceful stop, reload ----

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A listening `SOCK_SEQPACKET` socket at `path`, as a `.socket` unit makes it.
fn listening_socket(path: &Path) -> OwnedFd {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &UnixAddr::new(path).unwrap(),
    )
    .expect("bind");
    socket::listen(&fd, Backlog::new(16).unwrap()).expect("listen");
    fd
}

/// Starts `hatchery serve ARGS` as a service manager would with socket activation: the
/// socket as fd 3, `LISTEN_FDS=1`, `LISTEN_PID` its own pid (a shell that `exec`s keeps
/// its pid), plus `env`. The `--socket` it is given names nothing that exists.
fn activated_daemon(socket: &OwnedFd, args: &[&str], env: &[(&str, &str)]) -> Activated {
    let stdin = socket.try_clone().expect("dup the socket");
    let child = Command::new("sh")
        .args([
            "-c",
            r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ exec "$0" serve --socket /nonexistent/hatchery.sock "$@""#,
            common::HATCHERY,
        ])
        .args(args)
        .env("LISTEN_FDS", "1")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::null())
        .spawn()
        .expect("start the daemon");
    Activated(child)
}

/// An activated daemon, killed if a failing test leaves it running.
struct Activated(Child);

impl std::ops::Deref for Activated {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Activated {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A datagram socket for `NOTIFY_SOCKET`, with a receive timeout.
fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (socket, path)
}

fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
}

/// The daemon serves the socket a test made and passed (`LISTEN_FDS`/`LISTEN_PID`),
/// says `READY=1` on `NOTIFY_SOCKET` once it accepts and `STOPPING=1` when it stops,
/// leaves the socket in place, and no sandbox sees any of these variables.
#[test]
fn a_passed_socket_is_served_and_readiness_is_notified() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let path = dir.path().join("activated.sock");
    let socket = listening_socket(&path);
    let (notify, notify_path) = notify_socket(dir.path());
    let mut daemon = activated_daemon(
        &socket,
        &[],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let ready = next_notification(&notify);
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=serving on {}", path.display())
    );
    let (code, stdout, stderr) = hatchery(
        &[
            "run",
            "--socket",
            path.to_str().unwrap(),
            "--",
            "/usr/bin/env",
        ],
        b"",
        &[],
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, ""),
        "a sandbox's environment: {stderr}"
    );
    let client = hatchery::Client::connect(&path).expect("connect");
    let out = client
        .output(
            hatchery::SpawnRequest::new("/bin/cat")
                .arg("/proc/self/environ")
                .env("KEPT", "1"),
        )
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "KEPT=1\0");
    drop(client);
    sigterm(&daemon);
    assert!(next_notification(&notify).starts_with("STOPPING=1\n"));
    assert!(daemon.wait().expect("wait").success());
    assert!(path.exists(), "a passed socket stays for the next daemon");
}

/// `LISTEN_PID` naming another process: its sockets are not ours, the daemon binds its
/// own `--socket`; more than one socket passed: refused, in the unit's words.
#[test]
fn activation_variables_are_checked() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let daemon = Daemon::start_with_args_and_env(&[], &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")]);
    assert!(daemon.socket.exists());
    drop(daemon);
    let socket = listening_socket(&dir.path().join("two.sock"));
    let status = activated_daemon(&socket, &[], &[("LISTEN_FDS", "2")])
        .wait()
        .expect("wait");
    assert_eq!(status.code(), Some(1));
}

/// A restart under socket activation loses no work: after SIGTERM the running job
/// finishes within `--shutdown-grace` (exit 0, not `daemon_shutdown`), and a client
/// that connects meanwhile waits on the socket and is served by the next daemon.
#[test]
fn a_restart_lets_the_job_finish_and_a_client_that_connects_meanwhile_is_served_after_it() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let path = dir.path().join("restart.sock");
    let socket = listening_socket(&path);
    let (notify, notify_path) = notify_socket(dir.path());
    let env = [("NOTIFY_SOCKET", notify_path.to_str().unwrap())];
    let mut first = activated_daemon(&socket, &["--shutdown-grace", "20s"], &env);
    assert!(next_notification(&notify).starts_with("READY=1"));
    let client = hatchery::Client::connect(&path).expect("connect");
    let mut job = client
        .spawn_child(
            hatchery::SpawnRequest::new("/bin/sh")
                .args(["-c", "read line; echo finished $line"])
                .stdin(hatchery::Stdio::Pipe)
                .stdout(hatchery::Stdio::Pipe),
        )
        .expect("spawn");
    sigterm(&first);
    assert!(next_notification(&notify).starts_with("STOPPING=1"));
    // Connects while the first daemon drains: queued on the socket, not refused.
    let queued = std::thread::spawn({
        let path = path.clone();
        move || {
            let began = Instant::now();
            let client = hatchery::Client::connect(&path).expect("a queued connect");
            let waited = began.elapsed();
            let out = client
                .output(hatchery::SpawnRequest::new("/bin/echo").arg("second"))
                .expect("served by the next daemon");
            (waited, out)
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first daemon waits for its job"
    );
    use std::io::{Read, Write};
    job.stdin.take().unwrap().write_all(b"well\n").unwrap();
    let mut out = String::new();
    job.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let verdict = job.wait().expect("the job's verdict");
    assert_eq!(out, "finished well\n");
    assert_eq!(
        verdict.reason,
        hatchery::protocol::EndReason::Exited,
        "{verdict:?}"
    );
    drop(client);
    assert!(first.wait().unwrap().success());
    let mut second = activated_daemon(&socket, &[], &env);
    let (waited, out) = queued.join().expect("the queued client");
    assert!(
        waited >= Duration::from_millis(300),
        "served only after the restart: {waited:?}"
    );
    assert_eq!(out.stdout, b"second\n");
    sigterm(&second);
    assert!(second.wait().unwrap().success());
}

/// Past the grace, running sandboxes are killed with the verdict `daemon_shutdown`.
#[test]
fn past_the_shutdown_grace_sandboxes_are_killed() {
    require_sandbox!();
    let daemon = Daemon::start_with(&["--shutdown-grace", "300ms"]);
    let client = daemon.client();
    let mut child = client
        .spawn_child(hatchery::SpawnRequest::new("/bin/sleep").arg("30"))
        .expect("spawn");
    let began = Instant::now();
    assert!(daemon.stop().success());
    let verdict = child.wait().expect("verdict");
    assert_eq!(
        verdict.reason,
        hatchery::protocol::EndReason::DaemonShutdown
    );
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "{:?}",
        began.elapsed()
    );
}

/// SIGHUP reads `--limits-file` again: the next sandbox gets the new default, the one
/// running keeps going untouched.
#[test]
fn sighup_applies_a_new_default_to_the_next_sandbox_and_keeps_the_running_one() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let file = dir.path().join("limits.toml");
    std::fs::write(&file, "default-pids = 77\n").unwrap();
    let daemon = Daemon::start_with(&["--limits-file", file.to_str().unwrap()]);
    assert_eq!(default_pids_of(&daemon), 77);
    let client = daemon.client();
    let mut running = client
        .spawn_child(
            hatchery::SpawnRequest::new("/bin/sh")
                .args(["-c", "read line; echo still here"])
                .stdin(hatchery::Stdio::Pipe)
                .stdout(hatchery::Stdio::Pipe),
        )
        .expect("spawn");
    std::fs::write(&file, "default-pids = 66\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while default_pids_of(&daemon) != 66 {
        assert!(Instant::now() < deadline, "the reload never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::io::{Read, Write};
    running.stdin.take().unwrap().write_all(b"\n").unwrap();
    let mut out = String::new();
    running
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let verdict = running.wait().expect("verdict");
    assert_eq!(out, "still here\n");
    assert_eq!(verdict.reason, hatchery::protocol::EndReason::Exited);
    assert_eq!(
        verdict.limits.pids,
        Some(77),
        "the running sandbox kept its limits"
    );
    // A file that no longer parses changes nothing.
    std::fs::write(&file, "default-pids = \"many\"\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(default_pids_of(&daemon), 66);
}

// ---- hatchery service install|status|remove ----

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                files.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    files
}

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd");

/// `install --root` writes exactly the shipped units (the service's `ExecStart=` with
/// this binary and the flags given), `status` sees them, `remove` leaves no file; the
/// same with `--user` under a home directory.
#[test]
fn install_status_and_remove_against_a_temporary_root() {
    for (user, expected) in [
        (
            false,
            [
                "etc/systemd/system/hatchery.service",
                "etc/systemd/system/hatchery.socket",
                "etc/sysusers.d/hatchery.conf",
            ]
            .as_slice(),
        ),
        (
            true,
            [
                ".config/systemd/user/hatchery.service",
                ".config/systemd/user/hatchery.socket",
            ]
            .as_slice(),
        ),
    ] {
        let root = tempfile::tempdir().unwrap();
        let root_arg = root.path().to_str().unwrap();
        let mut install = vec!["service", "install", "--root", root_arg];
        let mut status = vec!["service", "status", "--root", root_arg];
        let mut remove = vec!["service", "remove", "--root", root_arg];
        if user {
            for args in [&mut install, &mut status, &mut remove] {
                args.push("--user");
            }
        }
        let (code, _, stderr) = hatchery(&status, b"", &[]);
        assert_eq!(code, 3, "not installed yet: {stderr}");
        install.extend([
            "--",
            "--warm-pool",
            "2",
            "--veth-pool",
            "10.9.0.0/24",
            "--env-free=x",
        ]);
        let (code, _, stderr) = hatchery(&install, b"", &[]);
        assert_eq!(code, 1, "a bad serve flag is refused");
        assert!(stderr.contains("--env-free"), "{stderr}");
        install.pop();
        let (code, stdout, stderr) = hatchery(&install, b"", &[]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let written = files_under(root.path());
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(written, expected);
        let shipped = if user {
            format!("{SHIPPED}/user")
        } else {
            SHIPPED.to_string()
        };
        for file in &expected {
            let text = std::fs::read_to_string(root.path().join(file)).unwrap();
            let name = Path::new(file).file_name().unwrap().to_str().unwrap();
            let name = if name == "hatchery.conf" {
                "hatchery.sysusers"
            } else {
                name
            };
            let template = std::fs::read_to_string(format!("{shipped}/{name}")).unwrap();
            let exec_start = format!(
                "ExecStart={} serve --shutdown-grace 30s --warm-pool 2 --veth-pool 10.9.0.0/24",
                common::HATCHERY
            );
            let template = template.replace(
                "ExecStart=/usr/local/bin/hatchery serve --shutdown-grace 30s",
                &exec_start,
            );
            assert_eq!(text, template, "{file}");
        }
        let (code, stdout, stderr) = hatchery(&status, b"", &[]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            stdout.matches("installed ").count(),
            expected.len(),
            "{stdout}"
        );
        let (code, _, stderr) = hatchery(&remove, b"", &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            files_under(root.path()).is_empty(),
            "left: {:?}",
            files_under(root.path())
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "directories left"
        );
    }
}

/// `--dry-run` prints the units and writes nothing; where systemd is not running, the
/// commands that would act on it say so and do nothing.
#[test]
fn dry_run_prints_and_no_systemd_is_said_plainly() {
    let (code, stdout, stderr) = hatchery(&["service", "install", "--dry-run"], b"", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("# /etc/systemd/system/hatchery.socket\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ListenSequentialPacket=/run/hatchery/hatchery.sock"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!(
        "ExecStart={} serve --shutdown-grace 30s\n",
        common::HATCHERY
    )));
    assert!(
        !Path::new("/etc/systemd/system/hatchery.socket").exists()
            || Path::new("/run/systemd/system").exists()
    );
    if Path::new("/run/systemd/system").exists() {
        eprintln!("skipped the no-systemd half: systemd runs this machine");
        return;
    }
    for action in ["install", "remove"] {
        let (code, _, stderr) = hatchery(&["service", action], b"", &[]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("systemd is not running on this machine"),
            "{stderr}"
        );
    }
    let (_, stdout, _) = hatchery(&["service", "status"], b"", &[]);
    assert!(
        stdout.contains("systemd:   not running on this machine"),
        "{stdout}"
    );
}

/// `systemd-analyze verify` finds nothing to say about the units `install` writes (the
/// system's and a user's), with this binary on their `ExecStart=` line.
#[test]
fn the_written_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !common::must_run(),
            "HATCHERY_TESTS_MUST_RUN=1 but no systemd-analyze (apt-get install systemd)"
        );
        eprintln!("skipped: no systemd-analyze");
        return;
    }
    for user in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let mut install = vec![
            "service",
            "install",
            "--root",
            root.path().to_str().unwrap(),
        ];
        let dir = match user {
            false => root.path().join("etc/systemd/system"),
            true => {
                install.push("--user");
                root.path().join(".config/systemd/user")
            }
        };
        install.extend(["--", "--group", "0", "--warm-pool", "1"]);
        let (code, _, stderr) = hatchery(&install, b"", &[]);
        assert_eq!(code, 0, "{stderr}");
        let runtime = tempfile::tempdir().unwrap();
        let mut verify = Command::new("systemd-analyze");
        if user {
            verify.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
        }
        let out = verify
            .arg("verify")
            .arg(dir.join("hatchery.socket"))
            .arg(dir.join("hatchery.service"))
            .output()
            .expect("systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "user {user}: {stderr}"
        );
    }
}

// ---- serve --metrics ----

/// Scrapes `GET path` over HTTP/1.0; returns the status line and the body.
fn scrape(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "{head}");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Prometheus text as `name{labels}` → value, every line checked to be a comment or a
/// sample.
fn samples(body: &str) -> std::collections::BTreeMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("NAME VALUE");
            (name.to_string(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// `serve --metrics` serves Prometheus text on the loopback; the counters move as
/// spawns are served, fail and end, and the latency histogram counts each spawn.
#[test]
fn metrics_are_scraped_and_move_with_the_spawns() {
    require_sandbox!();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = Daemon::start_with(&["--metrics", &addr]);
    let (status, body) = scrape(port, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(
        body.contains("# TYPE hatchery_spawn_latency_seconds histogram\n"),
        "{body}"
    );
    let before = samples(&body);
    assert_eq!(before["hatchery_spawn_latency_seconds_count"], 0.0);
    assert_eq!(before["hatchery_sandboxes_live"], 0.0);
    assert!(
        before["hatchery_daemon_resident_memory_bytes"] > 1e6,
        "{body}"
    );
    let client = daemon.client();
    for _ in 0..3 {
        let out = client
            .output(hatchery::SpawnRequest::new("/bin/true"))
            .expect("run");
        assert!(out.verdict.status.success());
    }
    assert!(client
        .spawn_child(hatchery::SpawnRequest::new("/nonexistent/program"))
        .is_err());
    let sleeping = client
        .spawn_child(hatchery::SpawnRequest::new("/bin/sleep").arg("30"))
        .expect("spawn");
    let after = samples(&scrape(port, "/metrics").1);
    assert_eq!(after["hatchery_spawns_total{path=\"fresh\"}"], 4.0);
    assert_eq!(
        after["hatchery_spawn_failures_total{kind=\"not_found\"}"],
        1.0
    );
    assert_eq!(
        after["hatchery_sandboxes_ended_total{reason=\"exited\"}"],
        3.0
    );
    assert_eq!(after["hatchery_spawn_latency_seconds_count"], 4.0);
    assert_eq!(
        after["hatchery_spawn_latency_seconds_bucket{le=\"+Inf\"}"],
        4.0
    );
    assert!(after["hatchery_spawn_latency_seconds_sum"] > 0.0);
    assert_eq!(after["hatchery_sandboxes_live"], 1.0);
    assert!(after["hatchery_uptime_seconds"] > before["hatchery_uptime_seconds"]);
    let (status, _) = scrape(port, "/other");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    let mut sleeping = sleeping;
    sleeping.kill().unwrap();
    sleeping.wait().unwrap();
}

/// What `ProtectKernelLogs=yes` does to a service (a mount over `/proc/kmsg`), done by
/// the test around a daemon that believes systemd runs it (`INVOCATION_ID`): every spawn
/// fails at the sandbox's `/proc`, and the hint names the unit's options, not Docker's.
#[test]
fn a_masked_proc_under_systemd_is_named_in_systemds_words() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let socket = dir.path().join("masked.sock");
    let mut daemon = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind /dev/null /proc/kmsg && exec "$0" serve --socket "$1""#)
        .arg(common::HATCHERY)
        .arg(&socket)
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hatchery::client::probe_socket(&socket) {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let client = hatchery::Client::connect(&socket).expect("connect");
    let failed = client.spawn_child(hatchery::SpawnRequest::new("/bin/true"));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    match failed {
        Err(hatchery::SpawnError::Setup {
            hint: Some(hint), ..
        }) => {
            assert!(hint.contains("ProtectKernelLogs="), "{hint}");
            assert!(!hint.contains("systempaths"), "{hint}");
        }
        other => panic!("expected a setup failure with a hint: {other:?}"),
    }
}

// ---- deploy/kubernetes ----

/// The venv `test.sh` makes with kubernetes-validate, if it is there.
fn kubernetes_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/k8s-venv/bin/python");
    let usable = Command::new(&python)
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|out| out.status.success());
    usable.then_some(python)
}

/// `deploy/kubernetes/check.py` on `manifest`: (exit code, output).
fn check_manifest(python: &Path, manifest: &Path) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(manifest)
        .output()
        .expect("run check.py");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The DaemonSet validates against the schemas of Kubernetes 1.30 to 1.37 (strict), and
/// the checks a schema cannot make catch each mistake: `procMount: Unmasked` without
/// `hostUsers: false`, a namespace below the privileged Pod Security level, a field the
/// schema does not know.
#[test]
fn the_kubernetes_manifest_validates_and_the_checker_catches_each_mistake() {
    let Some(python) = kubernetes_python() else {
        assert!(
            !common::must_run(),
            "HATCHERY_TESTS_MUST_RUN=1 but no target/k8s-venv with kubernetes-validate (test.sh makes it)"
        );
        eprintln!("skipped: no target/k8s-venv with kubernetes-validate (test.sh makes it)");
        return;
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/hatchery.yaml");
    let (code, out) = check_manifest(&python, &shipped);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("valid for Kubernetes 1.30.0 to 1.37.0").count(),
        3,
        "{out}"
    );
    let text = std::fs::read_to_string(&shipped).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, expected) in [
        ("      hostUsers: false\n", "", "needs hostUsers: false"),
        (
            "pod-security.kubernetes.io/enforce: privileged",
            "pod-security.kubernetes.io/enforce: baseline",
            "only at the privileged Pod Security level",
        ),
        (
            "            procMount: Unmasked",
            "            procMnt: Unmasked",
            "procMnt",
        ),
        (
            "          livenessProbe:",
            "          livenesProbe:",
            "livenesProbe",
        ),
    ] {
        assert!(text.contains(from), "{from:?} is in the manifest");
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let (code, out) = check_manifest(&python, &broken);
        assert_eq!(code, 1, "{from:?} → {to:?} passed: {out}");
        assert!(out.contains(expected), "{from:?} → {to:?}: {out}");
    }
}

/// What `ProtectSystem=strict`, `ProtectHome=read-only`, `PrivateTmp=no`,
/// `ReadWritePaths=/sys/fs/cgroup` and `RuntimeDirectory=hatchery` of the shipped unit do
/// to the daemon's mounts, done by the test (no systemd is booted here): every mount
/// read-only but `/dev`, `/proc`, `/sys` and the writable paths. Spawns, a read-only bind
/// from `/tmp` and a memory limit (a cgroup) still work. The unit's seccomp options
/// (`SystemCallFilter=` and the like) are not reproduced.
#[test]
fn the_units_file_system_protection_leaves_spawns_binds_and_limits_working() {
    require_sandbox!();
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !common::must_run(),
            "HATCHERY_TESTS_MUST_RUN=1 but not root"
        );
        eprintln!("skipped: remounting needs root");
        return;
    }
    const PROTECT_SYSTEM_STRICT: &str = r#"
        set -e
        rw="$1"; shift
        awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r m; do
            case "$m" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
            mount -o remount,bind,ro "$m" 2>/dev/null ||
                { mount --bind "$m" "$m" && mount -o remount,bind,ro "$m"; }
        done
        for d in "$rw" /run/hatchery; do mount --bind "$d" "$d"; mount -o remount,bind,rw "$d"; done
        exec "$@"
    "#;
    std::fs::create_dir_all("/run/hatchery").unwrap();
    let dir = common::open_tempdir();
    let socket = dir.path().join("strict.sock");
    let data = common::open_tempdir();
    std::fs::write(data.path().join("input"), "from /tmp\n").unwrap();
    std::fs::set_permissions(
        data.path().join("input"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let mut daemon = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            PROTECT_SYSTEM_STRICT,
            "sh",
        ])
        .arg(dir.path())
        .args([common::HATCHERY, "serve", "--socket"])
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hatchery::client::probe_socket(&socket) {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = daemon.id();
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root_options = mountinfo
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/"))
        .and_then(|line| line.split(' ').nth(5))
        .unwrap_or_default()
        .to_string();
    let socket_arg = socket.to_str().unwrap();
    let bind = format!("{}:/data", data.path().display());
    let runs = [
        (vec!["--", "/bin/echo", "ok"], "ok\n"),
        (
            vec!["--ro-bind", &bind, "--", "/bin/cat", "/data/input"],
            "from /tmp\n",
        ),
    ];
    let mut outputs = Vec::new();
    for (args, _) in &runs {
        let mut all = vec!["run", "--socket", socket_arg];
        all.extend(args.iter().copied());
        outputs.push(hatchery(&all, b"", &[]));
    }
    let limited = hatchery(
        &[
            "run",
            "--socket",
            socket_arg,
            "--memory",
            "64M",
            "--allow-unenforced-limits",
            "--verdict-json",
            "-",
            "--",
            "/bin/true",
        ],
        b"",
        &[],
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    assert!(
        root_options.starts_with("ro"),
        "the daemon's / is {root_options:?}"
    );
    for ((code, stdout, stderr), (_, expected)) in outputs.into_iter().zip(&runs) {
        assert_eq!((code, stdout.as_str()), (0, *expected), "{stderr}");
    }
    let (code, verdict, stderr) = limited;
    assert_eq!(code, 0, "{stderr}");
    let verdict: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    if verdict["skipped_limits"]
        .as_array()
        .is_some_and(|s| s.is_empty())
    {
        assert_eq!(verdict["limits"]["memory_bytes"], 64 * 1024 * 1024);
    } else {
        assert!(
            !common::must_run(),
            "no memory cgroup under the protection: {verdict}"
        );
    }
}
