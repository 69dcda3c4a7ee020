//! Persistent sandboxes (issue 21): a sandbox that outlives its commands, each command
//! forked by its init with its own limits and verdict, idle timeout and lifetime,
//! ownership by uid, and a destroy that leaves nothing behind.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use hatchery::protocol::{SandboxEndReason, SandboxOptions};
use hatchery::{
    Client, EndReason, ExecRequest, ExitStatus, Limits, SandboxConfig, SpawnError, Stdio,
};

use common::Daemon;

fn sh(script: &str) -> ExecRequest {
    ExecRequest::new("/bin/sh").args(["-c", script])
}

fn create(client: &Client, options: SandboxOptions) -> hatchery::Sandbox {
    client
        .create_sandbox(SandboxConfig::default(), options)
        .expect("create a sandbox")
}

fn named(name: &str) -> SandboxOptions {
    SandboxOptions {
        name: Some(name.into()),
        ..SandboxOptions::default()
    }
}

fn stdout_of(sandbox: &hatchery::Sandbox, script: &str) -> String {
    let output = sandbox.output(sh(script)).expect("run a command");
    assert!(
        output.verdict.status.success(),
        "{script}: {:?}, stderr {}",
        output.verdict,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn two_commands_share_files_processes_and_a_fifo() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let sandbox = create(&client, SandboxOptions::default());
    assert!(sandbox.name().starts_with("sandbox-"), "{}", sandbox.name());

    // Files: one command writes, the next reads.
    stdout_of(&sandbox, "echo shared > /tmp/note");
    assert_eq!(stdout_of(&sandbox, "cat /tmp/note"), "shared\n");

    // Processes: a long-running one is seen by another command, in the same pid
    // namespace (the init is pid 1 of both).
    let mut sleeper = sandbox
        .spawn(sh("echo $$ > /tmp/sleeper; exec sleep 30").stdout(Stdio::Null))
        .expect("spawn the sleeper");
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        let pid = stdout_of(&sandbox, "cat /tmp/sleeper 2>/dev/null || true");
        if !pid.trim().is_empty() {
            break pid.trim().to_string();
        }
        assert!(Instant::now() < deadline, "the sleeper never wrote its pid");
        std::thread::sleep(Duration::from_millis(10));
    };
    let comm = stdout_of(&sandbox, &format!("cat /proc/{pid}/comm"));
    assert_eq!(comm, "sleep\n");
    assert_eq!(stdout_of(&sandbox, "cat /proc/1/comm").trim(), "hatchery");

    // A FIFO in /tmp: a reader command and a writer command.
    stdout_of(&sandbox, "mkfifo /tmp/pipe");
    let reader = sandbox
        .spawn(sh("cat /tmp/pipe").stdin(Stdio::Null))
        .expect("spawn the reader");
    let writer = sandbox
        .output(sh("echo through-the-fifo > /tmp/pipe"))
        .expect("run the writer");
    assert!(writer.verdict.status.success());
    let read = reader.output().expect("the reader's output");
    assert_eq!(read.stdout, b"through-the-fifo\n");

    assert!(sleeper.try_wait().expect("try_wait").is_none(), "it sleeps");
    sleeper.kill().expect("kill the sleeper");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeper.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "try_wait never saw the end");
        std::thread::sleep(Duration::from_millis(5));
    }
    let verdict = sleeper.wait().expect("the sleeper's verdict");
    assert_eq!(verdict.reason, EndReason::KilledByClient);
    assert_eq!(verdict.status, ExitStatus::Signaled(libc::SIGKILL));

    let verdict = sandbox.destroy().expect("destroy");
    assert_eq!(verdict.reason, SandboxEndReason::Destroyed);
    // note, cat, sleeper, its pid (polled), comm, comm, mkfifo, reader, writer.
    assert!(verdict.commands_run >= 9, "{verdict:?}");
}

#[test]
fn each_command_has_its_own_verdict_and_wall_limit() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let sandbox = create(&client, SandboxOptions::default());

    let exited = sandbox.output(sh("exit 3")).expect("exit 3");
    assert_eq!(exited.verdict.status, ExitStatus::Exited(3));
    assert_eq!(exited.verdict.reason, EndReason::Exited);

    // A wall limit kills that command only: a sibling started before it lives on.
    let mut sibling = sandbox
        .spawn(sh("read line; echo got $line").stdout(Stdio::Pipe))
        .expect("spawn a sibling");
    let started = Instant::now();
    let slow = sandbox
        .output(sh("sleep 30").wall_time_ms(300))
        .expect("a slow command");
    assert_eq!(slow.verdict.reason, EndReason::WallTimeout);
    assert_eq!(slow.verdict.status, ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(slow.verdict.limits.wall_time_ms, Some(300));
    assert!(started.elapsed() < Duration::from_secs(10));
    sibling
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"still-here\n")
        .expect("write");
    let mut out = String::new();
    sibling
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert_eq!(out, "got still-here\n");
    assert!(sibling.wait().expect("verdict").status.success());

    // A CPU limit, as RLIMIT_CPU of the command.
    let spin = sandbox
        .output(
            sh("while :; do :; done")
                .cpu_time_ms(1000)
                .wall_time_ms(20_000),
        )
        .expect("a spinning command");
    assert_eq!(
        spin.verdict.reason,
        EndReason::CpuTimeout,
        "{:?}",
        spin.verdict
    );

    // A command that is not there: the spawn's own errors.
    match sandbox.spawn(ExecRequest::new("/nonexistent")) {
        Err(SpawnError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    match sandbox.spawn(ExecRequest::new("/bin/true").cwd("/nonexistent")) {
        Err(SpawnError::Setup { step, .. }) => {
            assert_eq!(step, hatchery::protocol::SetupStep::WorkingDirectory)
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    // The sandbox is still fine after those.
    assert_eq!(stdout_of(&sandbox, "echo ok"), "ok\n");
    let verdict = sandbox.destroy().expect("destroy");
    assert_eq!(verdict.reason, SandboxEndReason::Destroyed);
}

#[test]
fn the_sandbox_memory_limit_covers_all_its_commands() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let config = SandboxConfig {
        limits: Limits {
            memory_bytes: Some(64 << 20),
            // /tmp large enough: the memory limit, not its size, is what must stop them.
            tmp_size_bytes: Some(256 << 20),
            ..Limits::default()
        },
        ..SandboxConfig::default()
    };
    let sandbox = match client.create_sandbox(config, SandboxOptions::default()) {
        Ok(sandbox) => sandbox,
        Err(SpawnError::UnenforceableLimits { .. }) if !common::must_run() => {
            eprintln!("skipped: no memory cgroup here");
            return;
        }
        Err(e) => panic!("create: {e}"),
    };
    // Two commands of 40 MB each in /tmp (a tmpfs, charged to the sandbox's cgroup):
    // each fits alone, not both together.
    let write = |file: &str| {
        sandbox
            .output(sh(&format!(
                "head -c 40000000 /dev/zero > /tmp/{file} && echo ok"
            )))
            .map(|output| output.verdict)
    };
    let first = write("a").expect("the first command");
    assert!(first.status.success(), "{first:?}");
    let second = write("b");
    match &second {
        Ok(verdict) => assert_eq!(verdict.reason, EndReason::OomKilled, "{verdict:?}"),
        // The whole sandbox went with it before the command's end was reported.
        Err(e) => panic!("the second command: {e}"),
    }
    let verdict = sandbox.destroy().expect("its verdict");
    assert_eq!(verdict.reason, SandboxEndReason::OomKilled, "{verdict:?}");
    let peak = verdict.memory_peak_bytes.expect("a peak from the cgroup");
    assert!(peak > 60 << 20 && peak <= 64 << 20, "{verdict:?}");
}

#[test]
fn idle_timeout_and_lifetime_end_a_sandbox() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();

    let idle = create(
        &client,
        SandboxOptions {
            idle_timeout_ms: Some(300),
            ..named("idle")
        },
    );
    // A command running keeps it alive past its idle timeout.
    let busy = idle.output(sh("sleep 0.6")).expect("a busy command");
    assert!(busy.verdict.status.success());
    std::thread::sleep(Duration::from_millis(800));
    match idle.spawn(ExecRequest::new("/bin/true")) {
        Err(SpawnError::UnknownSandbox { name, .. }) => assert_eq!(name, "idle"),
        other => panic!("expected the idle sandbox gone, got {other:?}"),
    }
    let verdict = idle.destroy().expect("its verdict");
    assert_eq!(verdict.reason, SandboxEndReason::IdleTimeout);
    assert_eq!(verdict.commands_run, 1);

    let short = create(
        &client,
        SandboxOptions {
            lifetime_ms: Some(400),
            ..named("short")
        },
    );
    let started = Instant::now();
    let long = short.output(sh("sleep 30")).expect("a long command");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(long.verdict.reason, EndReason::WallTimeout);
    let verdict = short.destroy().expect("its verdict");
    assert_eq!(verdict.reason, SandboxEndReason::Lifetime);
}

#[test]
fn a_creators_disconnect_ends_it_unless_asked_not_to() {
    require_sandbox!();
    let daemon = Daemon::start();
    let creator = daemon.client();
    create(&creator, named("ephemeral")).leave();
    create(
        &creator,
        SandboxOptions {
            survive_creator: true,
            ..named("kept")
        },
    )
    .leave();
    drop(creator);

    let other = daemon.client();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match other
            .open_sandbox("ephemeral")
            .spawn(ExecRequest::new("/bin/true"))
        {
            Err(SpawnError::UnknownSandbox { .. }) => break,
            Ok(mut child) => {
                child.wait().expect("verdict");
            }
            Err(e) => panic!("unexpected: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the ephemeral sandbox outlived its creator"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = other.list_sandboxes().expect("list");
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["kept"], "{listed:?}");
    let kept = other.open_sandbox("kept");
    let mut running = kept.spawn(sh("sleep 30")).expect("a running command");
    let listed = other.list_sandboxes().expect("list");
    assert_eq!(listed[0].commands_running, 1, "{listed:?}");
    running.kill().expect("kill");
    running.wait().expect("wait");
    assert_eq!(stdout_of(&kept, "echo alive"), "alive\n");
    let verdict = kept.destroy().expect("destroy the kept one");
    assert_eq!(verdict.reason, SandboxEndReason::Destroyed);
    assert_eq!(verdict.name, "kept");
}

#[test]
fn names_are_unique_and_checked() {
    require_sandbox!();
    let daemon = Daemon::start_with(&["--max-sandboxes", "2"]);
    let client = daemon.client();
    let first = create(&client, named("one"));
    match client.create_sandbox(SandboxConfig::default(), named("one")) {
        Err(SpawnError::InvalidRequest(message)) => {
            assert!(message.contains("exists"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match client.create_sandbox(SandboxConfig::default(), named("../etc")) {
        Err(SpawnError::InvalidRequest(_)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let _second = create(&client, named("two"));
    match client.create_sandbox(SandboxConfig::default(), named("three")) {
        Err(SpawnError::Busy(message)) => {
            assert!(message.contains("--max-sandboxes"), "{message}")
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    first.destroy().expect("destroy");
    let _third = create(&client, named("three"));
}

/// Every process of the daemon's sandboxes: the daemon's children but its helper.
fn sandbox_inits(daemon: &Daemon) -> Vec<i32> {
    daemon
        .children()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|&pid| !common::is_netns_helper(pid))
        .collect()
}

#[test]
fn destroy_and_drop_leave_nothing() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let settled = daemon.steady_fd_count();

    let sandbox = create(&client, SandboxOptions::default());
    let init = sandbox.pid().expect("its pid");
    let pidns = std::fs::read_link(format!("/proc/{init}/ns/pid")).expect("its pid namespace");
    let mut background = sandbox
        .spawn(sh("sleep 60 & sleep 60 & echo started; wait").stdin(Stdio::Null))
        .expect("background processes");
    let mut line = [0u8; 8];
    background
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut line)
        .expect("started");
    assert!(common::processes_in(&pidns) >= 4, "init, sh and two sleeps");
    let verdict = sandbox.destroy().expect("destroy");
    assert_eq!(verdict.reason, SandboxEndReason::Destroyed);
    // The command's own verdict: ended with its sandbox.
    let command = background.wait().expect("the command's verdict");
    assert_eq!(command.reason, EndReason::KilledByClient);
    assert_eq!(
        common::settled_processes_in(&pidns),
        0,
        "a process outlived destroy"
    );
    assert!(
        sandbox_inits(&daemon).is_empty(),
        "an init outlived destroy"
    );
    assert_eq!(
        daemon.settled_fd_count(settled),
        settled,
        "the daemon leaked fds"
    );

    // Drop destroys too.
    let dropped = create(&client, named("dropped"));
    let init = dropped.pid().expect("its pid");
    drop(dropped);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{init}")).exists() {
        assert!(Instant::now() < deadline, "a dropped sandbox lived on");
        std::thread::sleep(Duration::from_millis(10));
    }
    let again = create(&client, named("dropped"));
    again.destroy().expect("the name is free again");
    assert_eq!(
        daemon.settled_fd_count(settled),
        settled,
        "the daemon leaked fds"
    );
}

#[test]
fn commands_run_hardened_by_an_undumpable_init() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let sandbox = create(&client, SandboxOptions::default());
    // Every hardening step of a fresh workload: no capability, no_new_privs, the filter,
    // a session of its own, no fd beyond 0-2.
    let status = stdout_of(
        &sandbox,
        "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; ls /proc/self/fd",
    );
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let fds: Vec<&str> = status.lines().skip(5).collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "ls's own fds: 0-2 and the directory"
    );
    // CVE-2016-9962: the init cannot be read or written through /proc, nor its fds
    // reached (its channel to the daemon is fd 3 of its).
    let probe = stdout_of(
        &sandbox,
        "head -c1 /proc/1/mem 2>&1 >/dev/null | grep -q . && echo mem-refused; \
         ls /proc/1/fd 2>&1 >/dev/null | grep -q . && echo fds-refused; \
         readlink /proc/1/exe >/dev/null 2>&1 || echo exe-refused; \
         grep -q '^Seccomp:.0' /proc/1/status && echo init-unfiltered; true",
    );
    assert!(probe.contains("mem-refused"), "{probe}");
    assert!(probe.contains("fds-refused"), "{probe}");
    assert!(probe.contains("exe-refused"), "{probe}");
    sandbox.destroy().expect("destroy");
}

#[test]
fn put_and_fetch_stay_inside_and_are_bounded() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let sandbox = create(&client, SandboxOptions::default());

    // A round trip, with the mode asked for, owned by the sandbox's user.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    sandbox.put("/tmp/data", &data, 0o640).expect("put");
    assert_eq!(sandbox.fetch("/tmp/data", 2_000_000).expect("fetch"), data);
    assert_eq!(
        stdout_of(&sandbox, "stat -c '%a %u' /tmp/data"),
        "640 1000\n"
    );

    // A symlink planted inside that points at a host path: the write lands in the
    // sandbox's own tree (the root is read-only there, so it fails), never on the host.
    let host = common::open_tempdir();
    let target = host.path().join("victim");
    std::fs::write(&target, b"host's").expect("a host file");
    stdout_of(
        &sandbox,
        &format!(
            "ln -s {} /tmp/link; ln -s /etc/hostname /tmp/etc-link",
            target.display()
        ),
    );
    match sandbox.put("/tmp/link", b"planted", 0o644) {
        // The link's target does not exist in the sandbox: the shell makes it inside
        // (in /tmp, writable) or fails (elsewhere, read-only); either way not the host's.
        Ok(()) | Err(hatchery::client::TransferError::Refused { .. }) => {}
        Err(e) => panic!("put through the link: {e}"),
    }
    assert_eq!(std::fs::read(&target).expect("the host file"), b"host's");
    match sandbox.put("/tmp/etc-link", b"planted", 0o644) {
        Err(hatchery::client::TransferError::Refused { message, .. }) => {
            assert!(
                message.contains("Read-only") || message.contains("ermission"),
                "{message}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_ne!(
        std::fs::read("/etc/hostname").unwrap_or_default(),
        b"planted"
    );

    // A FIFO and /dev/zero are refused; a file over the bound too, promptly.
    stdout_of(&sandbox, "mkfifo /tmp/fifo");
    let started = Instant::now();
    for path in ["/tmp/fifo", "/dev/zero", "/tmp"] {
        match sandbox.fetch(path, 1024) {
            Err(hatchery::client::TransferError::Refused { message, .. }) => {
                assert!(message.contains("not a regular file"), "{path}: {message}")
            }
            other => panic!("{path}: expected a refusal, got {other:?}"),
        }
    }
    match sandbox.fetch("/tmp/data", 1000) {
        Err(hatchery::client::TransferError::TooLarge { limit, .. }) => assert_eq!(limit, 1000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    match sandbox.fetch("relative", 10) {
        Err(hatchery::client::TransferError::RelativePath { .. }) => {}
        other => panic!("expected RelativePath, got {other:?}"),
    }
    sandbox.destroy().expect("destroy");
}

/// Runs `hatchery ARGS` against `daemon`, as `uid` if given; its exit code, stdout and
/// stderr.
fn cli(daemon: &Daemon, uid: Option<u32>, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(common::hatchery_for_others());
    command
        .args(args)
        .env("HATCHERY_SOCKET", &daemon.socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let mut child = command.spawn().expect("run hatchery");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_creates_execs_copies_and_removes_and_refuses_another_uid() {
    require_sandbox!();
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !common::must_run(),
            "HATCHERY_TESTS_MUST_RUN=1 but not root"
        );
        eprintln!("skipped: another uid needs root");
        return;
    }
    // --allow-uid makes the socket reachable by uid 4242.
    let daemon = Daemon::start_with(&["--allow-uid", "4242"]);
    let (code, name, err) = cli(
        &daemon,
        None,
        &["sandbox", "create", "--name", "work", "--memory", "128M"],
        b"",
    );
    assert_eq!((code, name.as_str()), (0, "work\n"), "{err}");

    // exec: this command's stdio, the command's exit code.
    let (code, out, err) = cli(
        &daemon,
        None,
        &[
            "exec",
            "work",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z > /tmp/up; cat /tmp/up; exit 7",
        ],
        b"shout\n",
    );
    assert_eq!((code, out.as_str()), (7, "SHOUT\n"), "{err}");
    let (code, _, err) = cli(&daemon, None, &["exec", "work", "--", "/nonexistent"], b"");
    assert_eq!(code, 127, "{err}");

    // cp in and out, through the sandbox's own commands.
    let host = common::open_tempdir();
    let local = host.path().join("in.txt");
    std::fs::write(&local, b"copied in\n").expect("a local file");
    let local = local.to_str().expect("utf-8");
    let (code, _, err) = cli(&daemon, None, &["cp", local, "work:/tmp/in.txt"], b"");
    assert_eq!(code, 0, "{err}");
    let back = host.path().join("back.txt");
    let back = back.to_str().expect("utf-8");
    let (code, _, err) = cli(&daemon, None, &["cp", "work:/tmp/in.txt", back], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(back).expect("copied back"), b"copied in\n");
    let (code, _, err) = cli(
        &daemon,
        None,
        &["cp", "--max-size", "4B", "work:/tmp/in.txt", back],
        b"",
    );
    assert_eq!(code, 125);
    assert!(err.contains("larger than 4 bytes"), "{err}");

    // Another admitted uid: refused to exec, to copy, to remove.
    let (code, out, err) = cli(
        &daemon,
        Some(4242),
        &["exec", "work", "--", "cat", "/tmp/up"],
        b"",
    );
    assert_eq!(code, 125, "{out}");
    assert!(err.contains("belongs to another uid"), "{err}");
    let (code, _, err) = cli(&daemon, Some(4242), &["sandbox", "rm", "work"], b"");
    assert_eq!(code, 125);
    assert!(err.contains("belongs to another uid"), "{err}");
    // Its own sandbox it may use; root may use any.
    let (code, name, err) = cli(&daemon, Some(4242), &["sandbox", "create"], b"");
    assert_eq!(code, 0, "{err}");
    let theirs = name.trim().to_string();
    let (code, out, err) = cli(
        &daemon,
        None,
        &["exec", &theirs, "--", "echo", "root may"],
        b"",
    );
    assert_eq!((code, out.as_str()), (0, "root may\n"), "{err}");
    let (code, _, err) = cli(&daemon, Some(4242), &["sandbox", "rm", &theirs], b"");
    assert_eq!(code, 0, "{err}");

    // ls: one's own (root: all).
    let (code, out, err) = cli(&daemon, None, &["sandbox", "ls"], b"");
    assert_eq!(code, 0, "{err}");
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["work"], "{out}");
    let (code, out, err) = cli(&daemon, Some(4242), &["sandbox", "ls"], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().count(),
        1,
        "uid 4242 sees none of root's: {out}"
    );

    // rm, then nothing is left of it.
    let (code, out, err) = cli(&daemon, None, &["sandbox", "rm", "work"], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("work: "), "{out}");
    let (code, _, err) = cli(&daemon, None, &["exec", "work", "--", "true"], b"");
    assert_eq!(code, 125);
    assert!(err.contains("no live sandbox is named \"work\""), "{err}");
    assert!(sandbox_inits(&daemon).is_empty());

    // No daemon: 69, naming the socket.
    let missing = host.path().join("none.sock");
    let (code, _, err) = cli(
        &daemon,
        None,
        &[
            "exec",
            "--socket",
            missing.to_str().expect("utf-8"),
            "work",
            "--",
            "true",
        ],
        b"",
    );
    assert_eq!(code, 69);
    assert!(err.contains("none.sock"), "{err}");
}

/// Reads the pty master until `needle` appears in what was read since `from`, for up to
/// 10 s; returns everything read so far.
fn read_until(master: &std::fs::File, seen: &mut String, needle: &str) {
    use std::os::fd::AsFd;
    let start = seen.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen[start..].contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{needle:?} never came; the terminal showed {seen:?}"
        );
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let wait = nix::poll::PollTimeout::try_from(left.as_millis().min(1000) as u32).unwrap();
        if nix::poll::poll(&mut fds, wait).unwrap_or(0) == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match (&*master).read(&mut buf) {
            Ok(0) => panic!("the terminal closed before {needle:?}: {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            // EIO: every slave end is closed.
            Err(e) => panic!("the terminal failed before {needle:?} ({e}): {seen:?}"),
        }
    }
}

#[test]
fn a_command_gets_a_terminal_of_the_sandboxes_own() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let sandbox = create(&client, SandboxOptions::default());

    // tty names a pty of the sandbox's own devpts; the size is the one asked for; the
    // shell leads its session with the terminal as its controlling one.
    let mut child = sandbox
        .spawn(sh("tty; stty size; ps -o tty=,stat= -p $$; echo done").pty(24, 80))
        .expect("a command with a terminal");
    let master = child.pty.take().expect("the pty's master");
    let mut seen = String::new();
    read_until(&master, &mut seen, "done");
    assert!(seen.starts_with("/dev/pts/0\r\n24 80\r\n"), "{seen:?}");
    // ps: its terminal, and in its state `s` (a session leader) and `+` (in the
    // terminal's foreground process group).
    let ps = seen.lines().nth(2).unwrap_or_default();
    let (tty, stat) = ps.split_once(' ').unwrap_or_default();
    assert_eq!(tty, "pts/0", "{seen:?}");
    assert!(stat.contains('s') && stat.contains('+'), "{seen:?}");
    assert!(child.wait().expect("verdict").status.success());
    // Its own devpts instance: only this pty was ever in it, gone with its master.
    drop(master);
    let listed = stdout_of(&sandbox, "ls /dev/pts");
    assert_eq!(
        listed, "ptmx\n",
        "no pty left once its command ended: {listed}"
    );

    // An interactive shell: its prompt, a resize, job control, Ctrl-C to the
    // foreground job only, its exit code.
    let mut shell = sandbox
        .spawn(
            ExecRequest::new("/bin/bash")
                .args(["--norc", "--noprofile", "-i"])
                .env("PS1", "prompt$ ")
                .env("PATH", "/usr/bin:/bin")
                .pty(24, 80),
        )
        .expect("an interactive shell");
    let mut master = shell.pty.take().expect("the pty's master");
    let mut seen = String::new();
    read_until(&master, &mut seen, "prompt$ ");
    assert!(
        !seen.contains("cannot set terminal process group"),
        "{seen:?}"
    );
    assert!(!seen.contains("no job control"), "{seen:?}");
    master.write_all(b"stty size\n").expect("type");
    read_until(&master, &mut seen, "24 80");
    // The library's resize is on the child; the master is the client's to set too.
    shell.pty = Some(master.try_clone().expect("dup the master"));
    assert!(shell.resize(30, 100).expect("resize"));
    master.write_all(b"stty size\n").expect("type");
    read_until(&master, &mut seen, "30 100");
    master.write_all(b"sleep 100 &\n").expect("type");
    read_until(&master, &mut seen, "prompt$ ");
    master.write_all(b"jobs\n").expect("type");
    read_until(&master, &mut seen, "Running");
    master.write_all(b"fg\n").expect("type");
    read_until(&master, &mut seen, "sleep 100");
    std::thread::sleep(Duration::from_millis(200));
    let interrupted = Instant::now();
    master.write_all(b"\x03").expect("Ctrl-C");
    read_until(&master, &mut seen, "prompt$ ");
    assert!(interrupted.elapsed() < Duration::from_secs(5));
    master.write_all(b"echo still-here\n").expect("type");
    read_until(&master, &mut seen, "still-here\r\nprompt$ ");
    master.write_all(b"exit 3\n").expect("type");
    let verdict = shell.wait().expect("the shell's verdict");
    assert_eq!(verdict.status, ExitStatus::Exited(3), "{seen:?}");
    sandbox.destroy().expect("destroy");
}

#[test]
fn tiocsti_and_tioclinux_are_refused_on_the_sandboxes_own_terminal() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let sandbox = create(&client, SandboxOptions::default());
    let script = "import fcntl, termios\n\
                  for name, request in (('TIOCSTI', termios.TIOCSTI), ('TIOCLINUX', 0x541C)):\n    \
                      try:\n        \
                          fcntl.ioctl(0, request, b'x')\n        \
                          print(name, 'allowed')\n    \
                      except OSError as e:\n        \
                          print(name, 'refused', e.errno)\n\
                  print('done')\n";
    let mut child = sandbox
        .spawn(
            ExecRequest::new("/usr/bin/python3")
                .args(["-c", script])
                .pty(24, 80),
        )
        .expect("python on a terminal");
    let master = child.pty.take().expect("the pty's master");
    let mut seen = String::new();
    read_until(&master, &mut seen, "done");
    assert!(
        seen.contains(&format!("TIOCSTI refused {}", libc::EPERM)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("TIOCLINUX refused {}", libc::EPERM)),
        "{seen:?}"
    );
    assert!(child.wait().expect("verdict").status.success());
    sandbox.destroy().expect("destroy");
}

/// Drives `hatchery ARGS` on a real terminal (Python's `pty`), as a person would: the
/// script types `keys` (pairs of what to wait for and what to type then, with `RESIZE
/// rows cols` to resize), and prints what it saw, the exit status and whether the
/// terminal's mode was restored.
fn on_a_terminal(daemon: &Daemon, args: &[&str], keys: &[(&str, &str)]) -> String {
    let script = r#"
import fcntl, os, pty, select, struct, sys, termios, time
hatchery, socket, args, keys = sys.argv[1], sys.argv[2], sys.argv[3].split("\x1f"), sys.argv[4:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    before = termios.tcgetattr(0)
    r = os.spawnve(os.P_WAIT, hatchery, [hatchery] + args, dict(os.environ, HATCHERY_SOCKET=socket, TERM="xterm"))
    after = termios.tcgetattr(0)
    print("\r\nstatus=%d restored=%s\r" % (r, before == after), flush=True)
    time.sleep(0.5)
    os._exit(0)
seen = b""
cursor = 0
def wait_for(text, timeout=10):
    # From the end of what the last wait found: each wait consumes its text.
    global seen, cursor
    deadline = time.time() + timeout
    while text.encode() not in seen[cursor:]:
        if time.time() > deadline:
            print("TIMEOUT waiting for %r; saw %r" % (text, seen))
            sys.exit(1)
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    if text.encode() in seen[cursor:]:
        cursor = seen.index(text.encode(), cursor) + len(text.encode())
for i in range(0, len(keys), 2):
    wait_for(keys[i])
    typed = keys[i + 1]
    if typed.startswith("RESIZE "):
        _, rows, cols = typed.split()
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))
        time.sleep(0.2)
    elif typed:
        time.sleep(0.05)
        os.write(fd, typed.encode())
wait_for("status=")
wait_for("\n")
os.waitpid(pid, 0)
print(seen.decode(errors="replace"))
"#;
    let mut argv: Vec<String> = vec![
        "-c".into(),
        script.into(),
        common::HATCHERY.into(),
        daemon.socket.to_str().expect("utf-8").into(),
        args.join("\x1f"),
    ];
    for (wait, typed) in keys {
        argv.push(wait.to_string());
        argv.push(typed.to_string());
    }
    let out = std::process::Command::new("python3")
        .args(&argv)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn hatchery_shell_on_a_real_terminal() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start();
    let seen = on_a_terminal(
        &daemon,
        &["shell"],
        &[
            ("$ ", "tty\r"),
            ("/dev/pts/", ""),
            ("$ ", "stty size\r"),
            ("24 80", ""),
            ("$ ", "RESIZE 30 100"),
            ("", "stty size\r"),
            ("30 100", ""),
            ("$ ", "sleep 100 &\r"),
            ("$ ", "jobs\r"),
            ("Running", ""),
            ("$ ", "fg\r"),
            ("sleep 100", "\x03"),
            ("$ ", "echo still-$((20+22))\r"),
            ("still-42", ""),
            ("$ ", "exit 3\r"),
        ],
    );
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    assert!(
        !seen.contains("cannot set terminal process group"),
        "{seen}"
    );
    assert!(!seen.contains("no job control"), "{seen}");
    assert!(seen.contains("status=3 restored=True"), "{seen}");
    // The shell's sandbox is gone with it.
    assert!(sandbox_inits(&daemon).is_empty());
}

#[test]
fn hatchery_exec_t_on_a_real_terminal() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start();
    let client = daemon.client();
    let sandbox = create(&client, named("term"));
    let seen = on_a_terminal(
        &daemon,
        &[
            "exec",
            "-t",
            "term",
            "--",
            "/bin/sh",
            "-c",
            "tty; stty size; read line; echo got-$line; exit 4",
        ],
        &[("24 80", "hello\r"), ("got-hello", "")],
    );
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    assert!(seen.contains("status=4 restored=True"), "{seen}");
    sandbox.destroy().expect("destroy");
}

#[test]
fn hatchery_run_t_on_a_real_terminal() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start();
    let seen = on_a_terminal(
        &daemon,
        &["run", "-t", "--", "/bin/sh", "-c", "tty; stty size; exit 3"],
        &[],
    );
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    assert!(seen.contains("24 80"), "{seen}");
    assert!(seen.contains("status=3 restored=True"), "{seen}");
    // Its sandbox is gone with it.
    assert!(sandbox_inits(&daemon).is_empty());
    // A limit's kill is named as `run` names it, with `run`'s exit code.
    let seen = on_a_terminal(
        &daemon,
        &["run", "-t", "--wall-time", "1s", "--", "/bin/sleep", "30"],
        &[],
    );
    assert!(
        seen.contains("hatchery: killed: wall-time limit 1s reached"),
        "{seen}"
    );
    assert!(seen.contains("status=137 restored=True"), "{seen}");
    assert!(sandbox_inits(&daemon).is_empty());
    // So is the kill of the sandbox's own limit, its memory.
    let seen = on_a_terminal(
        &daemon,
        &[
            "run",
            "-t",
            "--memory",
            "32M",
            "--",
            "/usr/bin/python3",
            "-c",
            "a = bytearray(200 << 20); a[::4096] = b'x' * len(a[::4096])",
        ],
        &[],
    );
    if seen.contains("cannot enforce") && !common::must_run() {
        eprintln!("skipped the memory case: no memory cgroup here");
        return;
    }
    assert!(
        seen.contains("hatchery: killed: memory limit 32 MiB reached"),
        "{seen}"
    );
    assert!(seen.contains("status=137 restored=True"), "{seen}");
    assert!(sandbox_inits(&daemon).is_empty());
}

#[test]
fn hatchery_shell_takes_runs_options() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start();
    let dir = common::open_tempdir();
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "bound-from-the-host\n").expect("write the marker");
    std::fs::set_permissions(&marker, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod the marker");
    let bind = format!("{}:/x", dir.path().display());
    let seen = on_a_terminal(
        &daemon,
        &[
            "shell",
            "--ro-bind",
            &bind,
            "--env",
            "GREETING=hi",
            "--cwd",
            "/x",
        ],
        &[
            ("$ ", "cat marker; echo $GREETING-$HOME\r"),
            ("bound-from-the-host", ""),
            ("hi-/tmp", ""),
            ("$ ", "touch /x/new || echo read-only\r"),
            ("read-only", ""),
            ("$ ", "exit 5\r"),
        ],
    );
    assert!(seen.contains("status=5 restored=True"), "{seen}");
    assert!(sandbox_inits(&daemon).is_empty());
}
