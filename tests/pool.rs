//! The warm pool's own behaviour: refill, single use, fallback to fresh sandboxes when
//! the pool is empty or the shape differs, per-request steps in a pooled sandbox, clean
//! shutdown, nothing leaked. (Its isolation is tested by tests/isolation.rs, which runs
//! every case through a pool too.)

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::warm::{idle_sandboxes, pooled_daemon, wait_for_idle};
use common::{probe_facts, probe_request, probe_request_in, Daemon};
use hatchery::protocol::{Limits, SandboxConfig};
use hatchery::{SpawnRequest, Stdio};

/// The shape every test pools: the default sandbox with the probe bound in.
fn probe_shape() -> SandboxConfig {
    probe_request(&[]).sandbox
}

#[test]
fn refills_after_each_spawn_and_never_reuses_a_sandbox() {
    require_sandbox!();
    let daemon = pooled_daemon(2, &probe_shape(), &[]);
    let client = daemon.client();
    let mut served = Vec::new();
    for _ in 0..6 {
        let idle = wait_for_idle(daemon.pid(), 2);
        assert_eq!(idle.len(), 2, "the pool holds exactly its size: {idle:?}");
        let facts = {
            let child = client.spawn_child(probe_request(&["pid"])).expect("spawn");
            assert!(idle.contains(&child.pid), "{} not from {idle:?}", child.pid);
            served.push(child.pid);
            common::facts(&common::collect(child).stdout)
        };
        assert_eq!(
            facts["ppid"], "1",
            "the workload runs under the sandbox's init"
        );
    }
    let mut distinct = served.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        served.len(),
        "a sandbox served twice: {served:?}"
    );
    // Used sandboxes are reaped; only the refilled pool is left (the last refill may
    // still be in its setup when the last used sandbox is gone).
    assert_eq!(wait_for_idle(daemon.pid(), 2).len(), 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.children().len() != 2 {
        assert!(Instant::now() < deadline, "left: {:?}", daemon.children());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(idle_sandboxes(daemon.pid()).len(), 2);
}

#[test]
fn spawns_beyond_the_pool_get_fresh_sandboxes() {
    require_sandbox!();
    let daemon = pooled_daemon(1, &probe_shape(), &[]);
    let idle = wait_for_idle(daemon.pid(), 1);
    let client = daemon.client();
    // Five live at once from a pool of one: the rest must come from elsewhere.
    let children: Vec<_> = (0..5)
        .map(|_| {
            client
                .spawn_child(probe_request(&["sleep", "10"]))
                .expect("spawn")
        })
        .collect();
    let pooled = children.iter().filter(|c| idle.contains(&c.pid)).count();
    assert_eq!(pooled, 1, "the one idle sandbox served exactly one");
    for mut child in children {
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}

#[test]
fn a_request_of_another_shape_takes_the_fresh_path() {
    require_sandbox!();
    let daemon = pooled_daemon(1, &probe_shape(), &[]);
    let idle = wait_for_idle(daemon.pid(), 1);
    let sandbox = SandboxConfig {
        hostname: "elsewhere".into(),
        ..SandboxConfig::default()
    };
    let child = daemon
        .client()
        .spawn_child(probe_request_in(&["hostname"], sandbox))
        .expect("spawn");
    assert!(
        !idle.contains(&child.pid),
        "a mismatched request was pooled"
    );
    let facts = common::facts(&common::collect(child).stdout);
    assert_eq!(facts["hostname"], "elsewhere");
    assert_eq!(
        idle_sandboxes(daemon.pid()),
        idle,
        "the idle sandbox is still waiting"
    );
}

#[test]
fn per_request_steps_apply_in_a_pooled_sandbox() {
    require_sandbox!();
    let mut shape = probe_shape();
    // A non-default uid, so the request's ids must come from the shape, not defaults.
    shape.uid = 4321;
    let daemon = pooled_daemon(1, &shape, &[]);
    let idle = wait_for_idle(daemon.pid(), 1);
    let mut sandbox = shape.clone();
    sandbox.limits = Limits {
        open_files: Some(77),
        ..Limits::default()
    };
    let request = SpawnRequest::new("/bin/sh")
        .args([
            "-c",
            "read line; echo \"$line $(id -u) $(ulimit -n) $(pwd) $GREETING\"",
        ])
        .env("GREETING", "hi")
        .env("PATH", "/usr/bin:/bin")
        .cwd("/tmp")
        .stdin(Stdio::Pipe)
        .sandbox(sandbox);
    let mut child = daemon.client().spawn_child(request).expect("spawn");
    assert!(idle.contains(&child.pid), "not served from the pool");
    let mut stdin = child.stdin.take().expect("stdin pipe");
    stdin.write_all(b"line-in\n").expect("write stdin");
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout pipe")
        .read_to_string(&mut out)
        .expect("read stdout");
    assert!(child.wait().expect("wait").status.success());
    assert_eq!(out.trim(), "line-in 4321 77 /tmp hi");
}

#[test]
fn a_failing_exec_in_a_pooled_sandbox_is_reported_as_for_a_fresh_one() {
    require_sandbox!();
    let shape = SandboxConfig {
        hostname: "pooled".into(),
        ..SandboxConfig::default()
    };
    let daemon = pooled_daemon(1, &shape, &[]);
    let idle = wait_for_idle(daemon.pid(), 1);
    let err = daemon
        .client()
        .spawn_child(SpawnRequest::new("/no/such/program").sandbox(shape))
        .expect_err("a missing program");
    assert!(
        matches!(err, hatchery::SpawnError::NotFound { .. }),
        "{err:?}"
    );
    // It was the pooled sandbox that tried, and it is gone; the pool refills.
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::children_of(daemon.pid())
        .iter()
        .any(|&(pid, _)| pid == idle[0])
    {
        assert!(
            Instant::now() < deadline,
            "the failed sandbox was not reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let refilled = wait_for_idle(daemon.pid(), 1);
    assert!(!refilled.contains(&idle[0]));
}

#[test]
fn shutdown_kills_and_reaps_the_idle_sandboxes() {
    require_sandbox!();
    let daemon = pooled_daemon(3, &probe_shape(), &[]);
    let idle = wait_for_idle(daemon.pid(), 3);
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    for pid in idle {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "idle sandbox {pid} outlived the daemon"
        );
    }
}

#[test]
fn idle_sandboxes_die_with_a_killed_daemon() {
    require_sandbox!();
    let daemon = pooled_daemon(2, &probe_shape(), &[]);
    let idle = wait_for_idle(daemon.pid(), 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the daemon");
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in idle {
        // Dead (a zombie until the host's init or our harness reaps it) or gone.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "idle sandbox {pid} survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn pooled_spawns_leak_no_fds_and_no_processes() {
    require_sandbox!();
    let daemon = pooled_daemon(2, &probe_shape(), &[]);
    wait_for_idle(daemon.pid(), 2);
    let client = daemon.client();
    // One round first, so that lazily opened fds are counted in the baseline.
    probe_facts(&client, probe_request(&["pid"]));
    wait_for_idle(daemon.pid(), 2);
    let before = daemon.steady_fd_count();
    for _ in 0..20 {
        probe_facts(&client, probe_request(&["pid"]));
    }
    wait_for_idle(daemon.pid(), 2);
    assert_eq!(daemon.settled_fd_count(before), before, "fds leaked");
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.children().len() != 2 {
        assert!(Instant::now() < deadline, "left: {:?}", daemon.children());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_shape_that_cannot_be_built_leaves_the_daemon_serving() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let mut shape = SandboxConfig::default();
    shape.binds.push(hatchery::Bind::read_only(
        dir.path().join("missing"),
        "/data",
    ));
    let daemon = pooled_daemon(2, &shape, &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        idle_sandboxes(daemon.pid()).is_empty(),
        "a sandbox without its bind source must not be kept warm"
    );
    // Paused, not spinning: a few attempts at most, each reaped.
    let out = common::run(&daemon.client(), probe_request(&["pid"]));
    assert!(out.verdict.status.success(), "{}", out.stderr);
    assert!(daemon.children().len() <= 2, "{:?}", daemon.children());
}

#[test]
fn an_invalid_shape_stops_the_daemon_at_start() {
    let dir = common::open_tempdir();
    let file = dir.path().join("shape.json");
    // A misspelt field, and a shape that would need a cgroup per sandbox.
    for (shape, named) in [
        (r#"{"hostnme": "typo"}"#, "hostnme"),
        (r#"{"limits": {"memory_bytes": 1000000000}}"#, "cgroup"),
    ] {
        std::fs::write(&file, shape).unwrap();
        let out = std::process::Command::new(common::HATCHERY)
            .args(["serve", "--socket"])
            .arg(dir.path().join("s"))
            .args(["--warm-pool", "1", "--warm-pool-shape"])
            .arg(&file)
            .output()
            .expect("run hatchery serve");
        assert_eq!(out.status.code(), Some(1), "{shape}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{shape}: {stderr}");
    }
}

#[test]
fn without_a_pool_no_idle_sandbox_exists() {
    require_sandbox!();
    let daemon = Daemon::start();
    std::thread::sleep(Duration::from_millis(100));
    assert!(daemon.children().is_empty(), "{:?}", daemon.children());
}

/// An idle sandbox waits with every capability dropped and `no_new_privs` set. Under
/// hatchery's own policies its seccomp filter is on already, off the spawn's path, and
/// the workload inherits it rather than install it twice; under another policy the
/// workload installs it, last before `execve`. Either way the policy holds.
#[test]
fn an_idle_sandbox_waits_unprivileged_and_filtered_under_the_own_policies() {
    require_sandbox!();
    let dir = common::open_tempdir();
    let custom = dir.path().join("custom.json");
    std::fs::write(
        &custom,
        r#"{"version": 1, "rules": [{"syscalls": ["mount"], "action": {"errno": "EACCES"}}]}"#,
    )
    .unwrap();
    let custom = custom.display().to_string();
    let mount = format!(
        "mount={}",
        hatchery::seccomp::syscall_number("mount").unwrap()
    );
    for (policy, filtered_while_idle, refusal) in [
        ("default", true, "EPERM"),
        ("strict", true, "EPERM"),
        (custom.as_str(), false, "EACCES"),
    ] {
        let filters = match policy {
            "default" => hatchery::seccomp::SeccompPolicy::default_policy(),
            "strict" => hatchery::seccomp::SeccompPolicy::strict_policy(),
            _ => hatchery::seccomp::SeccompPolicy::from_json(
                &std::fs::read_to_string(policy).unwrap(),
            ),
        }
        .unwrap()
        .compile()
        .unwrap()
        .programs()
        .len();
        let daemon = pooled_daemon(1, &probe_shape(), &["--seccomp-policy", policy]);
        let idle = wait_for_idle(daemon.pid(), 1)[0];
        let status_of = |pid: i32| {
            common::facts(
                &std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap()
                    .replace(":\t", "="),
            )
        };
        // Filters of the daemon's own (a container's, say) stay on in every sandbox.
        let inherited: usize = status_of(daemon.pid())["Seccomp_filters"].parse().unwrap();
        let filters = (inherited + filters).to_string();
        let status = status_of(idle);
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status[set], "0000000000000000", "{policy}: idle {set}");
        }
        assert_eq!(status["NoNewPrivs"], "1", "{policy}");
        let installed = match filtered_while_idle {
            true => filters.clone(),
            false => inherited.to_string(),
        };
        if filtered_while_idle || inherited == 0 {
            let mode = if filtered_while_idle { "2" } else { "0" };
            assert_eq!(status["Seccomp"], mode, "{policy}: idle");
        }
        assert_eq!(status["Seccomp_filters"], installed, "{policy}: idle");

        let facts = probe_facts(&daemon.client(), probe_request(&["status"]));
        assert_eq!(facts["Seccomp"], "2", "{policy}: workload");
        assert_eq!(
            facts["Seccomp_filters"], filters,
            "{policy}: installed once"
        );
        let wait = wait_for_idle(daemon.pid(), 1);
        let child = daemon
            .client()
            .spawn_child(probe_request(&["try-syscall", &mount]))
            .expect("spawn");
        assert!(wait.contains(&child.pid), "served by the pool");
        let facts = common::facts_of_success(common::collect(child));
        assert_eq!(facts["mount"], refusal, "{policy}: the policy holds");
    }
}
