//! What a workload sees from inside a default sandbox, one fact per test, reported by
//! the probe program running in it. Each test runs twice: in fresh sandboxes, and in
//! sandboxes from a warm pool of the test's shape, which must be exactly as isolated.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::warm::Spawns;
use common::{probe_request, probe_request_in};
use hatchery::protocol::{Bind, SandboxConfig};
use hatchery::seccomp::SeccompPolicy;
use hatchery::SpawnRequest;

fn runs_in_its_own_pid_namespace_under_init(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["pid"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    let pid: i32 = facts["pid"].parse().unwrap();
    assert_ne!(pid, 1, "the workload is not PID 1: the init is");
    assert_eq!(
        facts["ppid"], "1",
        "the workload's parent is the sandbox init"
    );
    let mut visible: Vec<i32> = facts["visible_pids"]
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    visible.sort();
    assert_eq!(
        visible,
        vec![1, pid],
        "only the init and the probe itself are visible"
    );
}

fn runs_as_the_configured_unprivileged_ids(spawns: Spawns) {
    require_sandbox!();
    let sandbox = SandboxConfig {
        uid: 1234,
        gid: 2345,
        ..SandboxConfig::default()
    };
    let request = probe_request_in(&["ids"], sandbox);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["uid"], "1234");
    assert_eq!(facts["euid"], "1234");
    assert_eq!(facts["gid"], "2345");
    assert_eq!(facts["egid"], "2345");
    assert_eq!(
        facts["groups"], "",
        "supplementary groups inherited from the daemon are dropped"
    );
}

fn holds_no_capabilities_in_any_set(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["status"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(facts[set], "0000000000000000", "{set}");
    }
}

/// The daemon ignores SIGPIPE and blocks the signals its loop reads from a signalfd, and
/// the init holds the signals it forwards until the workload runs: none of it may reach
/// the workload, where an ignored or blocked signal would survive `execve`. The workload
/// is `cat`, which changes no disposition of its own (the probe, a Rust program, ignores
/// SIGPIPE itself).
fn starts_with_no_signal_ignored_or_blocked(spawns: Spawns) {
    require_sandbox!();
    let request = SpawnRequest::new("/bin/cat").arg("/proc/self/status");
    let daemon = spawns.daemon(&request.sandbox);
    let out = spawns.run(&daemon, request);
    assert!(out.verdict.status.success(), "{}", out.stderr);
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
            .to_string()
    };
    assert_eq!(field("SigIgn"), "0000000000000000", "ignored signals");
    assert_eq!(field("SigBlk"), "0000000000000000", "blocked signals");
}

fn has_no_new_privs(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["status"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["NoNewPrivs"], "1");
}

fn runs_under_a_seccomp_filter(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["status"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["Seccomp"], "2", "mode 2 is a BPF filter");
}

fn sees_only_loopback_and_no_route(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["net"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["interfaces"], "lo");
    assert_eq!(facts["lo_up"], "true");
    assert_eq!(facts["ipv4_routes"], "0", "no IPv4 route in the main table");
    assert_eq!(
        facts["ipv6_non_loopback_routes"], "0",
        "IPv6 routes only for lo's own addresses"
    );
}

fn has_its_own_hostname(spawns: Spawns) {
    require_sandbox!();
    let sandbox = SandboxConfig {
        hostname: "judge-7".into(),
        ..SandboxConfig::default()
    };
    let request = probe_request_in(&["hostname"], sandbox);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["hostname"], "judge-7");
}

fn root_and_usr_are_read_only_and_tmp_is_writable(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["writable", "/", "/usr", "/etc", "/tmp", "/dev/shm"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["/"], "EROFS");
    assert_eq!(facts["/usr"], "EROFS");
    assert_eq!(facts["/etc"], "EROFS");
    assert_eq!(facts["/tmp"], "ok");
    assert_eq!(facts["/dev/shm"], "ok");
}

fn tmp_starts_empty(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["ls", "/tmp"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["entries"], "");
}

fn root_holds_only_the_system_directories(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["ls", "/"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    for entry in facts["entries"].split(',') {
        assert!(
            ["bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "probe", "proc", "sbin", "tmp", "usr"]
                .contains(&entry),
            "unexpected {entry:?} in the sandbox root: the host's /home, /root, /var, /run must not be there"
        );
    }
    let facts = spawns.probe_facts(&daemon, probe_request(&["ls", "/dev"]));
    assert_eq!(
        facts["entries"],
        "fd,full,null,pts,random,shm,stderr,stdin,stdout,tty,urandom,zero"
    );
}

fn inherits_no_fd_beyond_stdio(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["fds"]);
    let daemon = spawns.daemon(&request.sandbox);
    // A second client with a child of its own: its fds live in the same daemon (and,
    // with a pool of one, in the daemon when it clones the sandbox that serves next).
    let other = daemon.client();
    let _busy = other
        .spawn_child(probe_request(&["sleep", "5"]))
        .expect("spawn");
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["fds"], "0,1,2");
}

fn environment_is_exactly_the_requested_one(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["env"])
        .env("ALPHA", "1")
        .env("BETA", "two words");
    let daemon = spawns.daemon(&request.sandbox);
    let out = spawns.run(&daemon, request);
    assert!(out.verdict.status.success(), "{}", out.stderr);
    let env: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("env:"))
        .collect();
    assert_eq!(env, vec!["ALPHA=1", "BETA=two words"]);
}

fn starts_in_the_requested_directory(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["cwd"]).cwd("/usr/bin");
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["cwd"], "/usr/bin");
}

/// Every syscall the probe tries that the policy blocks unconditionally must fail with
/// the policy's errno: the comparison is against `seccomp/default.json` itself.
fn blocked_syscalls_fail_with_the_policys_errno(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["syscalls"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    let policy = SeccompPolicy::default_policy().expect("default policy");
    let mut compared = 0;
    for (name, errno) in policy.blocked_syscalls() {
        if let Some(seen) = facts.get(&name) {
            let expected = format!("{:?}", nix::errno::Errno::from_raw(errno));
            assert_eq!(seen, &expected, "{name} with bad arguments");
            compared += 1;
        }
    }
    assert!(
        compared >= 25,
        "the probe exercised only {compared} blocked syscalls"
    );
    // The ones the issue names, whatever the policy's wording of them.
    for name in [
        "mount",
        "ptrace",
        "keyctl",
        "bpf",
        "io_uring_setup",
        "userfaultfd",
        "perf_event_open",
    ] {
        assert_eq!(facts[name], "EPERM", "{name}");
    }
    assert_eq!(facts["unshare_user"], "EPERM", "unshare(CLONE_NEWUSER)");
    assert_eq!(facts["clone_newuser"], "EPERM", "clone(CLONE_NEWUSER)");
    assert_eq!(
        facts["clone3"], "ENOSYS",
        "clone3 is ENOSYS so libc falls back to clone"
    );
    assert_eq!(facts["ioctl_tiocsti"], "EPERM", "ioctl(TIOCSTI)");
    assert_eq!(facts["ioctl_tioclinux"], "EPERM", "ioctl(TIOCLINUX)");
}

fn foreign_syscall_abis_are_refused(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["syscalls"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_ne!(
        facts["x32_getpid"], "ok",
        "an x32 syscall must not get through"
    );
    assert_ne!(
        facts["i386_getpid"], "ok",
        "an i386 syscall must not get through"
    );
}

fn setuid_root_binary_bound_in_does_not_raise_privileges(spawns: Spawns) {
    require_sandbox!();
    let dir = common::open_tempdir();
    let suid = dir.path().join("suid-probe");
    std::fs::copy(common::probe_path(), &suid).unwrap();
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let sandbox = SandboxConfig {
        binds: vec![Bind::read_only(dir.path(), "/suid")],
        ..SandboxConfig::default()
    };
    let request = hatchery::SpawnRequest::new("/suid/suid-probe")
        .arg("whoami-setuid")
        .sandbox(sandbox);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["euid"], "1000", "the setuid bit must not apply");
    assert_eq!(facts["uid"], "1000");
}

fn cannot_rewrite_its_uid_map(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["uid-map"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_ne!(facts["uid_map_write"], "ok");
}

fn runs_threads_and_subprocesses(spawns: Spawns) {
    require_sandbox!();
    let request = probe_request(&["threads"]);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(
        facts["threads"], "ok",
        "threads (glibc falls back from clone3 to clone)"
    );
    assert_eq!(
        facts["subprocess"], "ok",
        "fork/exec of /bin/sh and a pipeline"
    );
}

fn writable_bind_is_writable_and_read_only_bind_is_not(spawns: Spawns) {
    require_sandbox!();
    let dir = common::open_tempdir();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sandbox = SandboxConfig {
        binds: vec![
            Bind::writable(&shared, "/work"),
            Bind::read_only(&shared, "/data"),
        ],
        ..SandboxConfig::default()
    };
    let request = probe_request_in(&["writable", "/work", "/data"], sandbox);
    let daemon = spawns.daemon(&request.sandbox);
    let facts = spawns.probe_facts(&daemon, request);
    assert_eq!(facts["/work"], "ok");
    assert_eq!(facts["/data"], "EROFS");
}

fresh_and_pooled!(
    runs_in_its_own_pid_namespace_under_init,
    runs_as_the_configured_unprivileged_ids,
    holds_no_capabilities_in_any_set,
    has_no_new_privs,
    starts_with_no_signal_ignored_or_blocked,
    runs_under_a_seccomp_filter,
    sees_only_loopback_and_no_route,
    has_its_own_hostname,
    root_and_usr_are_read_only_and_tmp_is_writable,
    tmp_starts_empty,
    root_holds_only_the_system_directories,
    inherits_no_fd_beyond_stdio,
    environment_is_exactly_the_requested_one,
    starts_in_the_requested_directory,
    blocked_syscalls_fail_with_the_policys_errno,
    foreign_syscall_abis_are_refused,
    setuid_root_binary_bound_in_does_not_raise_privileges,
    cannot_rewrite_its_uid_map,
    runs_threads_and_subprocesses,
    writable_bind_is_writable_and_read_only_bind_is_not,
);

// ---- Host ids: a uid of its own per sandbox ----------------------------------------

/// The real host uid and gid of process `pid`.
fn host_ids_of(pid: i32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let id = |key: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (id("Uid:"), id("Gid:"))
}

fn sleeper() -> SpawnRequest {
    SpawnRequest::new("/bin/sleep").arg("30")
}

#[test]
fn each_sandbox_runs_as_a_host_uid_of_its_own() {
    require_sandbox!();
    if !common::root("a host uid per sandbox (a root daemon)") {
        return;
    }
    let range = hatchery::zygote::DEFAULT_RANGE;
    let in_range = |id: u32| (range.start..range.start + range.count).contains(&id);
    for args in [&[][..], &["--warm-pool", "2"][..]] {
        let daemon = common::Daemon::start_with(args);
        let client = daemon.client();
        let mut a = client.spawn_child(sleeper()).expect("spawn");
        let mut b = client.spawn_child(sleeper()).expect("spawn");
        let (ua, ga) = host_ids_of(a.pid);
        let (ub, gb) = host_ids_of(b.pid);
        assert_ne!(ua, ub, "two live sandboxes share host uid {ua} ({args:?})");
        assert_eq!((ua, ub), (ga, gb), "each gid is its uid's number");
        assert!(in_range(ua) && in_range(ub), "{ua}, {ub} outside {range}");
        for child in [&mut a, &mut b] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

#[test]
fn a_host_process_running_as_nobody_cannot_signal_a_sandbox() {
    require_sandbox!();
    if !common::root("a host uid per sandbox (a root daemon)") {
        return;
    }
    use std::os::unix::process::CommandExt;
    // `kill -0 PID` as uid and gid 65534: whether it may signal the sandbox.
    let nobody_may_signal = |pid: i32| {
        // The shell's own `kill`: a minimal image has no /bin/kill.
        std::process::Command::new("/bin/sh")
            .args(["-c", &format!("kill -0 {pid}")])
            .uid(65534)
            .gid(65534)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let daemon = common::Daemon::start();
    let mut child = daemon.client().spawn_child(sleeper()).expect("spawn");
    assert!(!nobody_may_signal(child.pid), "nobody signalled a sandbox");
    child.kill().unwrap();
    child.wait().unwrap();
    // The probe can tell: with every sandbox on nobody's uid (the old default, now
    // `--host-uid 65534`), nobody may.
    let shared = common::Daemon::start_with(&["--host-uid", "65534", "--host-gid", "65534"]);
    let mut child = shared.client().spawn_child(sleeper()).expect("spawn");
    assert!(nobody_may_signal(child.pid));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_host_uid_comes_back_only_when_its_sandbox_is_gone() {
    require_sandbox!();
    if !common::root("a host uid per sandbox (a root daemon)") {
        return;
    }
    // Two ids: two sandboxes at once, and a third must wait for one to be reaped.
    let start = 0x7100_0000_u32;
    let range = format!("{start}:2");
    let daemon = common::Daemon::start_with(&["--host-uid-range", &range]);
    let client = daemon.client();
    let mut a = client.spawn_child(sleeper()).expect("spawn");
    let mut b = client.spawn_child(sleeper()).expect("spawn");
    let held = [host_ids_of(a.pid).0, host_ids_of(b.pid).0];
    assert!(
        held.contains(&start) && held.contains(&(start + 1)),
        "{held:?}"
    );
    match client.spawn_child(sleeper()) {
        Err(hatchery::SpawnError::Busy(message)) => {
            assert!(message.contains("host uid"), "{message}")
        }
        other => panic!("a third sandbox got an id held by a live one: {other:?}"),
    }
    let a_uid = host_ids_of(a.pid).0;
    a.kill().unwrap();
    a.wait().unwrap();
    let mut c = client
        .spawn_child(sleeper())
        .expect("spawn once an id is free");
    assert_eq!(host_ids_of(c.pid).0, a_uid);
    for child in [&mut b, &mut c] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
