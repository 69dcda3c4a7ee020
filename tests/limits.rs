//! Resource limits hold for the whole process tree, and the verdict says why a sandbox
//! ended: fork bombs, memory hogs, busy loops, sleepers, disk fillers and big files.

mod common;

use std::time::Duration;

use common::{run, Daemon};
use hatchery::protocol::{EndReason, Limits, SandboxConfig};
use hatchery::{ExitStatus, SpawnRequest, Verdict};

/// Held by the tests that burn CPU or measure time. On two cores, CPU hogs of parallel
/// tests would starve each other's daemons and turn a limit test into a measure of the
/// test machine's oversubscription.
fn cpu_heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Host uid for the sandboxes of tests that do not count host processes.
const SHARED_UID: u32 = 47010;

fn limited_daemon() -> Daemon {
    daemon_as(SHARED_UID)
}

/// A daemon whose sandboxes run as `uid` on the host: a uid of its own lets a test count
/// its sandboxes' processes on the host while other tests run.
fn daemon_as(uid: u32) -> Daemon {
    let uid = uid.to_string();
    Daemon::start_with(&["--host-uid", &uid, "--host-gid", &uid])
}

/// `sh -c script` with `limits`.
fn sh(script: &str, limits: Limits) -> SpawnRequest {
    SpawnRequest::new("/bin/sh")
        .args(["-c", script])
        .sandbox(SandboxConfig {
            limits,
            ..SandboxConfig::default()
        })
}

/// Processes on the host that run as `uid`.
fn host_processes_of(uid: u32) -> usize {
    let uid = uid.to_string();
    common::all_processes()
        .filter_map(|dir| std::fs::read_to_string(dir.join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| l.split_whitespace().nth(1) == Some(uid.as_str()))
        })
        .count()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Not below `limit`, and within 10% + 100 ms above it. The floor allows 20 ms: the
/// watchdog acts on the cgroup's total CPU time, while the verdict shows its user and
/// system parts, whose sum the kernel keeps a little apart from the total.
fn assert_near(what: &str, used: Duration, limit: Duration, verdict: &Verdict) {
    let floor = limit - Duration::from_millis(20);
    let ceiling = limit + limit / 10 + Duration::from_millis(100);
    assert!(
        used >= floor && used <= ceiling,
        "{what}: {} ms for a {} ms limit: {verdict:?}",
        ms(used),
        ms(limit)
    );
}

#[test]
fn the_pids_limit_holds() {
    require_sandbox!();
    let daemon = limited_daemon();
    let limits = Limits {
        pids: Some(16),
        wall_time_ms: Some(20_000),
        ..Limits::default()
    };
    // Forks 100 sleepers, stopping at the first fork that fails, and counts them. (perl,
    // because dash exits at its first failed fork.)
    let script = "my $n = 0; for (1..100) { my $pid = fork; last unless defined $pid; \
                  if ($pid == 0) { sleep 5; exit } $n++ } print \"started=$n\\n\"";
    let request = SpawnRequest::new("/usr/bin/perl")
        .args(["-e", script])
        .sandbox(SandboxConfig {
            limits,
            ..SandboxConfig::default()
        });
    let out = run(&daemon.client(), request);
    let started: usize = common::facts(&out.stdout)["started"].parse().unwrap();
    assert!(
        (1..16).contains(&started),
        "{started} processes started under a limit of 16: {}",
        out.stderr
    );
}

#[test]
fn a_fork_bomb_stops_and_leaves_nothing_on_the_host() {
    require_sandbox!();
    let _serial = cpu_heavy();
    const UID: u32 = 47011;
    let daemon = daemon_as(UID);
    let limits = Limits {
        pids: Some(32),
        wall_time_ms: Some(1500),
        ..Limits::default()
    };
    // Every process forks without end; past the pids limit forks fail and they go on.
    let bomb = SpawnRequest::new("/usr/bin/perl")
        .args(["-e", "while (1) { fork }"])
        .sandbox(SandboxConfig {
            limits,
            ..SandboxConfig::default()
        });
    let out = run(&daemon.client(), bomb);
    assert_eq!(
        out.verdict.reason,
        EndReason::WallTimeout,
        "{:?}",
        out.verdict
    );
    let after = daemon.wait_childless(Duration::from_secs(10));
    assert!(after.is_empty());
    assert_eq!(
        host_processes_of(UID),
        0,
        "processes of the sandbox survive on the host"
    );
    let still = run(
        &daemon.client(),
        SpawnRequest::new("/bin/echo").arg("alive"),
    );
    assert_eq!(still.stdout, "alive\n");
}

#[test]
fn a_memory_hog_is_oom_killed() {
    require_sandbox!();
    let _serial = cpu_heavy();
    let daemon = limited_daemon();
    let limits = Limits {
        memory_bytes: Some(32 << 20),
        wall_time_ms: Some(20_000),
        ..Limits::default()
    };
    // tail buffers its "last line" of /dev/zero, which never ends: memory without bound.
    let out = run(&daemon.client(), sh("exec tail /dev/zero", limits));
    assert_eq!(
        out.verdict.reason,
        EndReason::OomKilled,
        "{:?}",
        out.verdict
    );
    assert_eq!(out.verdict.status, ExitStatus::Signaled(libc::SIGKILL));
    let peak = out
        .verdict
        .memory_peak_bytes
        .expect("peak memory of a sandbox with a cgroup");
    assert!(peak <= 33 << 20, "peak {peak} above the 32 MiB limit");
    let still = run(
        &daemon.client(),
        SpawnRequest::new("/bin/echo").arg("alive"),
    );
    assert_eq!(still.stdout, "alive\n", "the daemon is untouched");
}

#[test]
fn a_busy_loop_ends_at_its_cpu_time() {
    require_sandbox!();
    let _serial = cpu_heavy();
    let daemon = limited_daemon();
    let limit = Duration::from_millis(700);
    let limits = Limits {
        cpu_time_ms: Some(700),
        wall_time_ms: Some(20_000),
        ..Limits::default()
    };
    let out = run(&daemon.client(), sh("while :; do :; done", limits));
    let verdict = &out.verdict;
    assert_eq!(verdict.reason, EndReason::CpuTimeout, "{verdict:?}");
    assert_near(
        "cpu time",
        verdict.user_cpu() + verdict.system_cpu(),
        limit,
        verdict,
    );
}

#[test]
fn cpu_time_counts_every_process_of_the_tree() {
    require_sandbox!();
    let _serial = cpu_heavy();
    let daemon = limited_daemon();
    let limit = Duration::from_millis(800);
    let limits = Limits {
        cpu_time_ms: Some(800),
        wall_time_ms: Some(20_000),
        ..Limits::default()
    };
    // Two workers burning CPU in parallel, then the shell waits: on two CPUs the limit is
    // reached in about half the wall time, and the CPU time is the sum of both.
    let script = "(while :; do :; done) & (while :; do :; done) & wait";
    let out = run(&daemon.client(), sh(script, limits));
    let verdict = &out.verdict;
    assert_eq!(verdict.reason, EndReason::CpuTimeout, "{verdict:?}");
    assert_near(
        "cpu time of the tree",
        verdict.user_cpu() + verdict.system_cpu(),
        limit,
        verdict,
    );
}

#[test]
fn a_sleeper_ends_at_its_wall_time() {
    require_sandbox!();
    let _serial = cpu_heavy();
    let daemon = limited_daemon();
    let limit = Duration::from_millis(600);
    let limits = Limits {
        wall_time_ms: Some(600),
        ..Limits::default()
    };
    let out = run(&daemon.client(), sh("sleep 30", limits));
    let verdict = &out.verdict;
    assert_eq!(verdict.reason, EndReason::WallTimeout, "{verdict:?}");
    assert_eq!(verdict.status, ExitStatus::Signaled(libc::SIGKILL));
    assert_near("wall time", verdict.wall_time(), limit, verdict);
}

#[test]
fn a_huge_write_to_tmp_stops_at_its_size() {
    require_sandbox!();
    let daemon = limited_daemon();
    let limits = Limits {
        tmp_size_bytes: Some(16 << 20),
        wall_time_ms: Some(20_000),
        ..Limits::default()
    };
    // 10 GiB asked for; the tmpfs holds 16 MiB.
    let script = "dd if=/dev/zero of=/tmp/fill bs=1M count=10240 2>/dev/null; \
                  echo status=$?; echo size=$(stat -c %s /tmp/fill)";
    let out = run(&daemon.client(), sh(script, limits));
    let facts = common::facts(&out.stdout);
    assert_ne!(facts["status"], "0", "dd must fail: {}", out.stdout);
    let size: u64 = facts["size"].parse().unwrap();
    assert!(size <= 16 << 20, "{size} bytes written to a 16 MiB /tmp");
}

#[test]
fn a_file_size_limit_gives_sigxfsz() {
    require_sandbox!();
    let daemon = limited_daemon();
    let limits = Limits {
        file_size_bytes: Some(1 << 20),
        ..Limits::default()
    };
    let out = run(
        &daemon.client(),
        sh("exec dd if=/dev/zero of=/tmp/big bs=1M count=4", limits),
    );
    assert_eq!(
        out.verdict.status,
        ExitStatus::Signaled(libc::SIGXFSZ),
        "{:?}",
        out.verdict
    );
    assert_eq!(out.verdict.reason, EndReason::Signaled);
}

#[test]
fn open_files_and_core_dumps_are_limited() {
    require_sandbox!();
    let daemon = limited_daemon();
    let limits = Limits {
        open_files: Some(32),
        ..Limits::default()
    };
    let out = run(
        &daemon.client(),
        sh("echo nofile=$(ulimit -n); echo core=$(ulimit -c)", limits),
    );
    let facts = common::facts(&out.stdout);
    assert_eq!(facts["nofile"], "32");
    assert_eq!(facts["core"], "0", "core dumps are always off");
}

#[test]
fn a_setsid_double_fork_dies_with_the_sandbox() {
    require_sandbox!();
    const UID: u32 = 47012;
    let daemon = daemon_as(UID);
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        wall_time_ms: Some(1000),
        ..Limits::default()
    };
    // Escapes its session and parent twice, then outlives the shell.
    let script = "setsid sh -c 'sleep 30 & sleep 30' & sleep 30";
    let out = run(&daemon.client(), sh(script, limits));
    assert_eq!(out.verdict.reason, EndReason::WallTimeout);
    assert!(daemon.wait_childless(Duration::from_secs(10)).is_empty());
    assert_eq!(
        host_processes_of(UID),
        0,
        "a process of the sandbox survived"
    );
}

#[test]
fn the_verdict_reports_limits_tasks_and_memory() {
    require_sandbox!();
    let daemon = limited_daemon();
    let limits = Limits {
        memory_bytes: Some(128 << 20),
        pids: Some(50),
        ..Limits::default()
    };
    let out = run(&daemon.client(), sh("true; /bin/true; /bin/true", limits));
    let verdict = &out.verdict;
    assert_eq!(verdict.reason, EndReason::Exited);
    assert_eq!(verdict.limits.memory_bytes, Some(128 << 20));
    assert_eq!(verdict.limits.pids, Some(50));
    assert!(verdict.skipped_limits.is_empty());
    // The init, the shell and its two children.
    assert_eq!(verdict.tasks_started, Some(4), "{verdict:?}");
    assert!(
        verdict.memory_peak_bytes.is_some_and(|peak| peak > 0),
        "{verdict:?}"
    );
}

#[test]
fn daemon_defaults_apply_and_ceilings_refuse() {
    require_sandbox!();
    let daemon = Daemon::start_with(&["--default-wall-time", "400ms", "--max-memory", "64M"]);
    let out = run(&daemon.client(), sh("sleep 30", Limits::default()));
    assert_eq!(out.verdict.reason, EndReason::WallTimeout);
    assert_eq!(out.verdict.limits.wall_time_ms, Some(400));
    assert_eq!(
        out.verdict.limits.memory_bytes,
        Some(64 << 20),
        "the ceiling applies when none is asked"
    );
    let greedy = Limits {
        memory_bytes: Some(1 << 30),
        ..Limits::default()
    };
    match daemon.client().spawn_child(sh("true", greedy)) {
        Err(hatchery::SpawnError::InvalidRequest(message)) => {
            assert!(
                message.contains("memory") && message.contains("ceiling"),
                "{message}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn killed_by_the_client_says_so() {
    require_sandbox!();
    let daemon = limited_daemon();
    let mut child = daemon
        .client()
        .spawn_child(sh("sleep 30", Limits::default()))
        .expect("spawn");
    child.kill().unwrap();
    let verdict = child.wait().unwrap();
    assert_eq!(verdict.reason, EndReason::KilledByClient);
}

#[test]
fn a_sandbox_may_outlive_its_client_when_asked() {
    require_sandbox!();
    let daemon = limited_daemon();
    let dir = common::open_tempdir();
    let marker = dir.path().join("done");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let sandbox = SandboxConfig {
        kill_on_disconnect: false,
        binds: vec![hatchery::Bind::writable(dir.path(), "/out")],
        ..SandboxConfig::default()
    };
    let request = SpawnRequest::new("/bin/sh")
        .args(["-c", "sleep 0.3; echo > /out/done"])
        .sandbox(sandbox);
    let client = daemon.client();
    drop(client.spawn_child(request).expect("spawn"));
    drop(client);
    assert!(daemon.wait_childless(Duration::from_secs(10)).is_empty());
    assert!(marker.exists(), "the sandbox was killed with its client");
}

#[test]
fn limits_this_host_cannot_enforce_are_refused_or_skipped() {
    require_sandbox!();
    let daemon = limited_daemon();
    // Every limit the host has a controller for is enforced; the test learns which
    // from a spawn that allows skipping, and checks the strict spawn agrees.
    let all = Limits {
        memory_bytes: Some(64 << 20),
        pids: Some(64),
        cpu_millicores: Some(500),
        cpu_time_ms: Some(10_000),
        ..Limits::default()
    };
    let lenient = SandboxConfig {
        limits: all,
        allow_unenforced_limits: true,
        ..SandboxConfig::default()
    };
    let out = run(
        &daemon.client(),
        SpawnRequest::new("/bin/true").sandbox(lenient),
    );
    let skipped = out.verdict.skipped_limits.clone();
    let strict = SpawnRequest::new("/bin/true").sandbox(SandboxConfig {
        limits: all,
        ..SandboxConfig::default()
    });
    match daemon.client().spawn_child(strict) {
        Ok(mut child) => {
            assert!(
                skipped.is_empty(),
                "strict spawn ran though {skipped:?} were skipped"
            );
            assert!(child.wait().unwrap().status.success());
        }
        Err(hatchery::SpawnError::UnenforceableLimits { limits, .. }) => {
            assert_eq!(limits, skipped)
        }
        Err(other) => panic!("{other:?}"),
    }
    if common::must_run() {
        assert!(
            skipped.is_empty(),
            "the test machines have memory, pids and cpu controllers: {skipped:?}"
        );
    }
}

fn host_mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_thousand_limited_sandboxes_leave_nothing_behind() {
    require_sandbox!();
    let _serial = cpu_heavy();
    const UID: u32 = 47013;
    let daemon = daemon_as(UID);
    let client = daemon.client();
    let fds_before = daemon.steady_fd_count();
    let mounts_before = host_mount_count();
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        pids: Some(32),
        cpu_time_ms: Some(5000),
        wall_time_ms: Some(10_000),
        tmp_size_bytes: Some(1 << 20),
        ..Limits::default()
    };
    let quiet = |script: &str| {
        sh(script, limits)
            .stdin(hatchery::Stdio::Null)
            .stdout(hatchery::Stdio::Null)
            .stderr(hatchery::Stdio::Null)
    };
    // Two at a time; every tenth pair is killed instead of left to exit.
    for round in 0..500 {
        let mut a = client.spawn_child(quiet("exit 0")).expect("spawn");
        let mut b = client.spawn_child(quiet("sleep 5")).expect("spawn");
        if round % 10 == 0 {
            b.kill().unwrap();
        } else {
            b.signal(libc::SIGTERM).unwrap();
        }
        assert!(a.wait().unwrap().status.success());
        b.wait().unwrap();
    }
    assert!(daemon.wait_childless(Duration::from_secs(10)).is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !common::sandbox_cgroups_of(&daemon).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        common::sandbox_cgroups_of(&daemon),
        Vec::<std::path::PathBuf>::new(),
        "cgroups left behind"
    );
    assert_eq!(host_processes_of(UID), 0, "processes left behind");
    assert_eq!(
        host_mount_count(),
        mounts_before,
        "mounts left behind on the host"
    );
    assert_eq!(
        daemon.settled_fd_count(fds_before),
        fds_before,
        "fds left open in the daemon"
    );
}

/// Forks up to `wanted` sleepers, stopping at the first fork that fails, and prints how
/// many it started. (perl, because dash exits at its first failed fork.)
fn fork_loop(wanted: u32, limits: Limits) -> SpawnRequest {
    let script = format!(
        "$| = 1; my $n = 0; for (1..{wanted}) {{ my $pid = fork; last unless defined $pid; \
         if ($pid == 0) {{ sleep 5; exit }} $n++ }} print \"started=$n\\n\"; kill 9, -$$"
    );
    SpawnRequest::new("/usr/bin/perl")
        .args(["-e", &script])
        .sandbox(SandboxConfig {
            limits,
            ..SandboxConfig::default()
        })
}

fn started(out: &common::Output) -> u64 {
    common::facts(&out.stdout)["started"].parse().unwrap()
}

#[test]
fn a_fork_loop_stops_at_the_default_pids_limit() {
    require_sandbox!();
    let daemon = limited_daemon();
    let default = hatchery::limits::SAFE_DEFAULTS.pids.unwrap();
    // No limit asked for: the daemon's default holds, without a cgroup.
    let out = run(&daemon.client(), fork_loop(1000, Limits::default()));
    assert_eq!(out.verdict.limits.pids, Some(default), "{:?}", out.verdict);
    let n = started(&out);
    // The init and perl count: at most default - 2 sleepers.
    assert!(
        n + 2 <= default && n + 10 >= default,
        "{n} sleepers under a default of {default}"
    );
    // With a cgroup (a memory limit makes one), the verdict also says the limit was hit.
    let with_cgroup = Limits {
        memory_bytes: Some(512 << 20),
        ..Limits::default()
    };
    let out = run(&daemon.client(), fork_loop(1000, with_cgroup));
    assert!(started(&out) + 2 <= default, "{}", out.stdout);
    if common::must_run() || out.verdict.memory_peak_bytes.is_some() {
        assert!(
            out.verdict
                .limits_reached
                .contains(hatchery::protocol::Limit::Pids),
            "{:?}",
            out.verdict
        );
    }
    // A loop that stays below it reaches nothing.
    let out = run(&daemon.client(), fork_loop(5, with_cgroup));
    assert_eq!(started(&out), 5);
    assert!(out.verdict.limits_reached.is_empty(), "{:?}", out.verdict);
}

#[test]
fn tmp_and_shm_are_full_at_their_default_size() {
    require_sandbox!();
    let daemon = limited_daemon();
    let default = hatchery::limits::SAFE_DEFAULTS.tmp_size_bytes.unwrap();
    for dir in ["/tmp", "/dev/shm"] {
        let script = format!(
            "dd if=/dev/zero of={dir}/fill bs=1M count=1024 2>/dev/null; \
             echo status=$?; echo size=$(stat -c %s {dir}/fill)"
        );
        let out = run(&daemon.client(), sh(&script, Limits::default()));
        let facts = common::facts(&out.stdout);
        assert_ne!(
            facts["status"], "0",
            "dd must fail in {dir}: {}",
            out.stdout
        );
        let size: u64 = facts["size"].parse().unwrap();
        assert!(
            size <= default && size >= default / 2,
            "{size} bytes written to {dir} of {default}"
        );
    }
    // The inode count is bounded too.
    let inodes = hatchery::limits::SAFE_DEFAULTS.tmp_inodes.unwrap();
    let out = run(
        &daemon.client(),
        sh(
            "df -i /tmp | tail -1 | awk '{print \"inodes=\" $2}'",
            Limits::default(),
        ),
    );
    assert_eq!(common::facts(&out.stdout)["inodes"], inodes.to_string());
}

#[test]
fn a_default_is_lifted_only_when_asked_and_allowed() {
    require_sandbox!();
    let no_pids_limit = Limits {
        unlimited: [hatchery::protocol::Limit::Pids].into_iter().collect(),
        ..Limits::default()
    };
    // Not allowed by this daemon's operator: refused, naming the flag that would.
    let strict = limited_daemon();
    match strict.client().spawn_child(fork_loop(300, no_pids_limit)) {
        Err(hatchery::SpawnError::InvalidRequest(message)) => {
            assert!(message.contains("--allow-unlimited pids"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Allowed: the request runs without the default, and the verdict says so.
    let uid = SHARED_UID.to_string();
    let lenient = Daemon::start_with(&[
        "--host-uid",
        &uid,
        "--host-gid",
        &uid,
        "--allow-unlimited",
        "pids",
    ]);
    let out = run(&lenient.client(), fork_loop(300, no_pids_limit));
    assert_eq!(started(&out), 300, "{}", out.stdout);
    assert_eq!(out.verdict.limits.pids, None);
    assert!(out
        .verdict
        .limits
        .unlimited
        .contains(hatchery::protocol::Limit::Pids));
    // Allowed is not imposed: a request that says nothing keeps the default.
    let out = run(&lenient.client(), fork_loop(300, Limits::default()));
    assert!(started(&out) < 256, "{}", out.stdout);
    // An operator may remove a default for everyone.
    let none = Daemon::start_with(&[
        "--host-uid",
        &uid,
        "--host-gid",
        &uid,
        "--default-pids",
        "unlimited",
    ]);
    let out = run(&none.client(), fork_loop(300, Limits::default()));
    assert_eq!(started(&out), 300, "{}", out.stdout);
    assert_eq!(out.verdict.limits.pids, None);
}
