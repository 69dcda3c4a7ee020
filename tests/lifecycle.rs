//! A child's life through the library: stdio, exit codes and signals in the verdict,
//! signal forwarding by the init, reaping of orphans, and killing the whole sandbox.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{probe_facts, probe_request, run, Daemon};
use hatchery::protocol::{Bind, SandboxConfig};
use hatchery::{ExitStatus, SpawnRequest, Stdio};

#[test]
fn stdout_and_stderr_reach_their_own_pipes() {
    require_sandbox!();
    let daemon = Daemon::start();
    let out = run(
        &daemon.client(),
        probe_request(&["echo-both", "to stdout", "to stderr"]),
    );
    assert_eq!(out.stdout, "to stdout\n");
    assert_eq!(out.stderr, "to stderr\n");
    assert_eq!(out.verdict.status, ExitStatus::Exited(0));
}

#[test]
fn stdin_reaches_the_child() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mut child = daemon
        .client()
        .spawn_child(probe_request(&["cat"]))
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello through the sandbox\n")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "hello through the sandbox\n");
    assert!(child.wait().unwrap().status.success());
}

#[test]
fn null_and_passed_fds_work_as_stdio() {
    require_sandbox!();
    let daemon = Daemon::start();
    let dir = common::open_tempdir();
    let path = dir.path().join("out.txt");
    let file = std::fs::File::create(&path).unwrap();
    let request = probe_request(&["echo-both", "into the file", "nowhere"])
        .stdin(Stdio::Null)
        .stdout(Stdio::fd(file.into()))
        .stderr(Stdio::Null);
    let mut child = daemon.client().spawn_child(request).expect("spawn");
    assert!(child.stdout.is_none() && child.stderr.is_none() && child.stdin.is_none());
    assert!(child.wait().unwrap().status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "into the file\n");
}

#[test]
fn exit_codes_arrive_in_the_verdict() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    for code in [0, 1, 42, 255] {
        let out = run(&client, probe_request(&["exit", &code.to_string()]));
        assert_eq!(out.verdict.status, ExitStatus::Exited(code));
    }
}

#[test]
fn signals_arrive_in_the_verdict() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    for signal in [libc::SIGKILL, libc::SIGTERM, libc::SIGSEGV] {
        let out = run(&client, probe_request(&["kill-self", &signal.to_string()]));
        assert_eq!(out.verdict.status, ExitStatus::Signaled(signal));
        assert_eq!(out.verdict.status.code(), 128 + signal);
    }
}

#[test]
fn verdict_reports_times_and_memory() {
    require_sandbox!();
    let daemon = Daemon::start();
    let out = run(&daemon.client(), probe_request(&["sleep", "0.2"]));
    assert!(
        out.verdict.wall_time() >= Duration::from_millis(200),
        "{:?}",
        out.verdict
    );
    assert!(
        out.verdict.wall_time() < Duration::from_secs(5),
        "{:?}",
        out.verdict
    );
    assert!(out.verdict.max_rss_kib > 0, "{:?}", out.verdict);
}

#[test]
fn sigterm_reaches_the_workload_through_init() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mut child = daemon
        .client()
        .spawn_child(probe_request(&["wait-signal"]))
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    child.signal(libc::SIGTERM).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got=SIGTERM");
    assert_eq!(child.wait().unwrap().status, ExitStatus::Exited(0));
}

#[test]
fn orphaned_grandchild_is_reaped_by_init() {
    require_sandbox!();
    let daemon = Daemon::start();
    let facts = probe_facts(&daemon.client(), probe_request(&["orphan", "0.1"]));
    assert_eq!(facts["grandchild_reaped"], "true", "{facts:?}");
}

#[test]
fn kill_ends_the_whole_sandbox() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mut child = daemon
        .client()
        .spawn_child(probe_request(&["spawn-sleepers", "3"]))
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid_ns = std::fs::read_link(format!("/proc/{}/ns/pid", child.pid)).expect("sandbox pid ns");
    assert!(
        common::processes_in(&pid_ns) >= 5,
        "init, the probe and three sleepers"
    );
    child.kill().unwrap();
    assert_eq!(
        child.wait().unwrap().status,
        ExitStatus::Signaled(libc::SIGKILL)
    );
    assert_eq!(
        common::processes_in(&pid_ns),
        0,
        "no process of the sandbox survives"
    );
}

/// `Exited` comes once the workload and everything it started have ended: what it
/// leaves running when it exits is killed and reaped by the init before the init
/// reports the exit (only the init itself may still be on its way out). `dd`, with its
/// 256 MiB buffer, takes a while to die: without the init's kill, the kernel's would
/// leave it visible here.
#[test]
fn what_the_workload_leaves_running_has_ended_when_exited_arrives() {
    require_sandbox!();
    let daemon = Daemon::start();
    let request = SpawnRequest::new("/bin/sh").args([
        "-c",
        "dd if=/dev/zero of=/dev/null bs=256M 2>/dev/null & sleep 1000 & echo started; read line; exit 7",
    ]);
    let mut child = daemon.client().spawn_child(request).expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    let pid_ns = std::fs::read_link(format!("/proc/{}/ns/pid", child.pid)).expect("sandbox pid ns");
    assert!(
        common::processes_in(&pid_ns) >= 4,
        "init, the shell, dd and sleep"
    );
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(child.wait().unwrap().status, ExitStatus::Exited(7));
    let left: Vec<i32> = common::pids_in(&pid_ns)
        .into_iter()
        .filter(|&pid| pid != child.pid)
        .collect();
    assert!(left.is_empty(), "still running after Exited: {left:?}");
    assert_eq!(
        common::settled_processes_in(&pid_ns),
        0,
        "the init ends too"
    );
}

#[test]
fn try_wait_does_not_block_while_the_child_runs() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mut child = daemon
        .client()
        .spawn_child(probe_request(&["sleep", "10"]))
        .expect("spawn");
    assert_eq!(child.try_wait().unwrap(), None);
    child.kill().unwrap();
    let verdict = loop {
        if let Some(verdict) = child.try_wait().unwrap() {
            break verdict;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(verdict.status, ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn one_connection_runs_many_children_at_once() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let mut children: Vec<_> = (0..8)
        .map(|i| {
            client
                .spawn_child(probe_request(&["exit", &i.to_string()]))
                .expect("spawn")
        })
        .collect();
    // Waited in reverse order: each verdict must still reach its own child.
    for (i, child) in children.iter_mut().enumerate().rev() {
        assert_eq!(child.wait().unwrap().status, ExitStatus::Exited(i as i32));
    }
}

#[test]
fn a_client_shared_between_threads_waits_independently() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let slow = client
        .spawn_child(probe_request(&["sleep", "0.5"]))
        .expect("spawn");
    let fast = client
        .spawn_child(probe_request(&["exit", "7"]))
        .expect("spawn");
    let slow_waiter = std::thread::spawn(move || {
        let mut slow = slow;
        slow.wait().unwrap()
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let mut fast = fast;
    assert_eq!(fast.wait().unwrap().status, ExitStatus::Exited(7));
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the fast child waited for the slow one"
    );
    assert!(slow_waiter.join().unwrap().status.success());
}

/// A signal sent while the sandbox is still being set up is held, then delivered to the
/// workload: it is not lost in the window before the workload's exec.
#[test]
fn a_signal_sent_during_setup_reaches_the_workload() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    for _ in 0..5 {
        let mut child = client
            .spawn_child(probe_request(&["sleep", "30"]))
            .expect("spawn");
        child.signal(libc::SIGTERM).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            child.wait().unwrap().status,
            ExitStatus::Signaled(libc::SIGTERM)
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn any_catchable_signal_is_forwarded() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    for signal in [libc::SIGUSR1, libc::SIGALRM, libc::SIGRTMIN() + 2] {
        let mut child = client
            .spawn_child(probe_request(&["sleep", "30"]))
            .expect("spawn");
        child.signal(signal).unwrap();
        assert_eq!(
            child.wait().unwrap().status,
            ExitStatus::Signaled(signal),
            "signal {signal}"
        );
    }
}

#[test]
fn sigstop_is_refused_rather_than_stopping_only_init() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mut child = daemon
        .client()
        .spawn_child(probe_request(&["sleep", "30"]))
        .expect("spawn");
    assert!(matches!(
        child.signal(libc::SIGSTOP),
        Err(hatchery::ClientError::InvalidSignal(_))
    ));
    assert!(matches!(
        child.signal(0),
        Err(hatchery::ClientError::InvalidSignal(0))
    ));
    child.kill().unwrap();
    assert_eq!(
        child.wait().unwrap().status,
        ExitStatus::Signaled(libc::SIGKILL)
    );
}

/// A daemon makes its sandboxes' network namespaces ahead, in its `hatchery-netns`
/// helper: a sandbox runs in one that belongs to the host's user namespace (so it holds
/// no capability over it), the daemon keeps no fd of one it gave out, and the helper ends
/// with the daemon.
#[test]
fn network_and_ipc_namespaces_are_made_ahead_and_the_helper_ends_with_the_daemon() {
    require_sandbox!();
    let daemon = Daemon::start();
    let helper = daemon.netns_helper().expect("a hatchery-netns helper");
    // The helper makes its pairs once the daemon runs: a spawn before they arrive makes
    // its own namespaces, as it should, and would prove nothing here.
    assert_eq!(
        daemon.wait_for_spare_namespaces(),
        common::SPARE_NETNS,
        "the daemon holds its spare network namespaces"
    );
    let mut child = daemon
        .client()
        .spawn_child(SpawnRequest::new("/bin/sleep").arg("30"))
        .expect("spawn");
    let host_user = std::fs::read_link("/proc/self/ns/user").unwrap();
    for kind in ["net", "ipc"] {
        let sandbox_ns = std::fs::read_link(format!("/proc/{}/ns/{kind}", child.pid)).unwrap();
        assert_ne!(
            sandbox_ns,
            std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap(),
            "the sandbox has a {kind} namespace of its own"
        );
        assert_eq!(
            common::namespace_owner(child.pid, kind),
            host_user,
            "its {kind} namespace was made ahead, in the host's user namespace"
        );
        assert!(
            !daemon.fd_targets().contains(&sandbox_ns),
            "the daemon holds the {kind} namespace it gave out"
        );
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(daemon.stop().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while common::is_netns_helper(helper) {
        assert!(
            std::time::Instant::now() < deadline,
            "the helper outlived the daemon"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The daemon's code, where it fills whole 2 MiB huge pages, runs from an anonymous copy
/// in transparent huge pages, which a sandbox's init inherits mapped (no fault per page
/// of code); `HATCHERY_CODE_HUGE_PAGES=0` leaves it file-mapped. Read from the host in
/// the daemon's and a live init's `/proc/PID/smaps`.
#[test]
fn the_daemons_code_runs_from_huge_pages_its_sandboxes_inherit() {
    require_sandbox!();
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if thp.is_empty() || thp.contains("[never]") {
        assert!(
            !common::must_run(),
            "HATCHERY_TESTS_MUST_RUN=1 but transparent huge pages are off: {thp:?}"
        );
        eprintln!("skipped: transparent huge pages are off here");
        return;
    }
    let daemon = Daemon::start();
    let code = huge_code_mappings(daemon.pid());
    assert_eq!(
        code.len(),
        1,
        "one anonymous executable mapping in huge pages in the daemon: {code:?}"
    );
    let mut child = daemon
        .client()
        .spawn_child(SpawnRequest::new("/bin/sleep").arg("30"))
        .expect("spawn");
    assert_eq!(
        huge_code_mappings(child.pid),
        code,
        "the init has the daemon's copy, mapped"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");

    let plain = Daemon::start_with_env(&[("HATCHERY_CODE_HUGE_PAGES", "0")]);
    assert_eq!(huge_code_mappings(plain.pid()), Vec::<String>::new());
}

/// The address ranges of `pid`'s anonymous executable mappings backed by huge pages.
fn huge_code_mappings(pid: i32) -> Vec<String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            // A mapping's first line: range, perms, offset, device, inode[, path].
            let anonymous_code = fields.get(1) == Some(&"r-xp") && fields.get(4) == Some(&"0");
            current = anonymous_code.then(|| fields[0].to_string());
        } else if let (Some(range), ["AnonHugePages:", kib, "kB"]) = (&current, fields.as_slice()) {
            if kib.parse::<u64>().is_ok_and(|kib| kib >= 2048) {
                found.push(range.clone());
            }
        }
    }
    found
}

/// Every sandbox's root and `/dev` are copies of templates the daemon built once: the
/// same tmpfs for every sandbox whose binds need the same mount points at the top of the
/// root (none, or only in its own `/tmp`, share the default one), read-only down to
/// their superblocks (no sandbox can change what the others see), with a `/proc`, `/tmp`
/// and `/dev/shm` of each sandbox's own on them. Read from the host in each sandbox's
/// `/proc/PID/mountinfo`.
#[test]
fn every_sandbox_attaches_a_copy_of_a_read_only_root_template() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let dir = common::open_tempdir();
    let with_binds = |targets: &[&str]| SandboxConfig {
        binds: targets
            .iter()
            .map(|target| Bind::read_only(dir.path(), target))
            .collect(),
        ..SandboxConfig::default()
    };
    let configs = [
        SandboxConfig::default(),
        SandboxConfig::default(),
        with_binds(&["/tmp/in"]),
        with_binds(&["/work"]),
        with_binds(&["/work"]),
        with_binds(&["/work", "/data/in"]),
    ];
    let sleepers: Vec<_> = configs
        .into_iter()
        .map(|sandbox| {
            client
                .spawn_child(SpawnRequest::new("/bin/sleep").arg("30").sandbox(sandbox))
                .expect("spawn")
        })
        .collect();
    // Per sandbox, per mount point: (device, super options).
    let mounts: Vec<HashMap<&str, (String, String)>> = sleepers
        .iter()
        .map(|child| {
            let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", child.pid))
                .expect("the sandbox's mountinfo");
            ["/", "/dev", "/proc", "/tmp", "/dev/shm"]
                .into_iter()
                .map(|point| {
                    let fields: Vec<&str> = mountinfo
                        .lines()
                        .map(|line| line.split(' ').collect::<Vec<_>>())
                        .find(|fields| fields[4] == point)
                        .unwrap_or_else(|| panic!("no {point} in {mountinfo}"));
                    let super_options = fields.last().expect("super options").to_string();
                    (point, (fields[2].to_string(), super_options))
                })
                .collect()
        })
        .collect();
    let device = |sandbox: usize, point: &str| mounts[sandbox][point].0.clone();
    for (sandbox, points) in mounts.iter().enumerate() {
        for point in ["/", "/dev"] {
            assert!(
                points[point].1.split(',').any(|option| option == "ro"),
                "sandbox {sandbox}: the superblock of {point} is read-only: {mounts:?}"
            );
        }
    }
    // The default template: no binds, or binds in the sandbox's own /tmp.
    assert_eq!(device(0, "/"), device(1, "/"), "{mounts:?}");
    assert_eq!(device(0, "/"), device(2, "/"), "{mounts:?}");
    // One template per set of mount points at the top of the root.
    assert_eq!(device(3, "/"), device(4, "/"), "{mounts:?}");
    assert_ne!(device(0, "/"), device(3, "/"), "{mounts:?}");
    assert_ne!(device(3, "/"), device(5, "/"), "{mounts:?}");
    assert_ne!(device(0, "/"), device(5, "/"), "{mounts:?}");
    // The default /dev of each template is a copy of one too.
    assert_eq!(device(0, "/dev"), device(1, "/dev"), "{mounts:?}");
    for point in ["/proc", "/tmp", "/dev/shm"] {
        let devices: std::collections::HashSet<String> = (0..mounts.len())
            .map(|sandbox| device(sandbox, point))
            .collect();
        assert_eq!(
            devices.len(),
            mounts.len(),
            "a {point} of each sandbox's own: {mounts:?}"
        );
    }
    for mut child in sleepers {
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}

/// A shell command that prints the superblock options of the sandbox's root (`ro,…`
/// for a copy of a template, `rw,…` for a root the sandbox assembled).
const ROOT_SUPER_OPTIONS: &str = "grep ' / / ' /proc/self/mountinfo | sed 's/.* //'";

/// The daemon keeps at most 16 templates for binds' mount points (it builds each at the
/// first spawn that needs it); a spawn needing another set assembles its root, and
/// still runs.
#[test]
fn a_seventeenth_set_of_mount_points_gets_a_root_of_its_own() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let dir = common::open_tempdir();
    let root_options = |target: &str| {
        let sandbox = SandboxConfig {
            binds: vec![Bind::read_only(dir.path(), target)],
            ..SandboxConfig::default()
        };
        let out = common::run(
            &client,
            SpawnRequest::new("/bin/sh")
                .args(["-c", ROOT_SUPER_OPTIONS])
                .sandbox(sandbox),
        );
        assert_eq!(out.verdict.status, ExitStatus::Exited(0), "{}", out.stderr);
        out.stdout
    };
    for n in 0..16 {
        let options = root_options(&format!("/set{n}"));
        assert!(options.starts_with("ro,"), "set {n}: {options}");
    }
    let options = root_options("/set16");
    assert!(options.starts_with("rw,"), "the 17th set: {options}");
    // The first sets keep theirs.
    assert!(root_options("/set0").starts_with("ro,"));
}

/// Binds land where their request says, whichever way the root is made: directories at
/// the top of the root on a template's mount points, a file in the sandbox's own `/tmp`,
/// on a copied root (its superblock read-only); a file at the top of the root in a root
/// the sandbox assembles (a tmpfs of its own); a bind whose mount point would have to
/// be made inside a host directory gets the same error as ever.
#[test]
fn binds_land_on_the_mount_points_of_a_template() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let dir = common::open_tempdir();
    let file = dir.path().join("file");
    std::fs::write(&file, "in a file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The root's superblock options, then what the binds show.
    let script = format!("{ROOT_SUPER_OPTIONS}; cat $@");
    let cases = [
        (
            vec![
                Bind::read_only(dir.path(), "/work/deep/dir"),
                Bind::read_only(&file, "/tmp/in/file"),
            ],
            vec!["/work/deep/dir/file", "/tmp/in/file"],
            "ro,",
        ),
        (
            vec![
                Bind::read_only(dir.path(), "/work/deep/dir"),
                Bind::read_only(&file, "/input.txt"),
            ],
            vec!["/work/deep/dir/file", "/input.txt"],
            "rw,",
        ),
    ];
    for (binds, paths, root) in cases {
        let sandbox = SandboxConfig {
            binds,
            ..SandboxConfig::default()
        };
        for _ in 0..2 {
            let out = common::run(
                &client,
                SpawnRequest::new("/bin/sh")
                    .args(["-c", script.as_str(), "sh"])
                    .args(paths.iter().copied())
                    .sandbox(sandbox.clone()),
            );
            assert_eq!(out.verdict.status, ExitStatus::Exited(0), "{}", out.stderr);
            let (options, contents) = out.stdout.split_once('\n').expect("two parts");
            assert!(options.starts_with(root), "{options} for {paths:?}");
            assert_eq!(contents, "in a file\nin a file\n");
        }
    }
    // A bind whose mount point is missing inside a read-only host directory gets one,
    // made in a tmpfs that holds the directory's entries; the rest of it stays as it
    // was, read-only, and nothing is made on the host.
    let inside_usr = SandboxConfig {
        binds: vec![Bind::read_only(dir.path(), "/usr/no-such-dir-here")],
        ..SandboxConfig::default()
    };
    let out = common::run(
        &client,
        SpawnRequest::new("/bin/sh")
            .args([
                "-c",
                "cat /usr/no-such-dir-here/file && test -x /usr/bin/env && \
                 ! touch /usr/new 2>/dev/null && echo ok",
            ])
            .sandbox(inside_usr),
    );
    assert_eq!(out.stdout, "in a file\nok\n", "{}", out.stderr);
    assert!(!std::path::Path::new("/usr/no-such-dir-here").exists());
}

/// `Client::output` reads stdout and stderr at once: a child that fills its stderr pipe
/// (1 MiB, far past a pipe's 64 KiB) before it writes stdout would stall a reader that
/// reads stdout to its end first.
#[test]
fn output_collects_both_streams_at_once() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let request = SpawnRequest::new("/bin/sh").args([
            "-c",
            "head -c 1048576 /dev/zero >&2; printf out; head -c 1048576 /dev/zero; exit 3",
        ]);
        let _ = done.send(client.output(request));
    });
    let output = outcome
        .recv_timeout(Duration::from_secs(30))
        .expect("output() stalled: the pipes are not read at once")
        .expect("output");
    assert_eq!(output.verdict.status, ExitStatus::Exited(3));
    assert_eq!(output.stderr.len(), 1 << 20);
    assert_eq!(output.stdout.len(), 3 + (1 << 20));
    assert!(output.stdout.starts_with(b"out\0"));
}

/// `ChildProcess::output` closes stdin after what the caller wrote, and a stream the
/// caller took itself comes back empty.
#[test]
fn child_output_closes_stdin_and_leaves_taken_streams_out() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mut child = daemon
        .client()
        .spawn_child(SpawnRequest::new("/bin/sh").args(["-c", "tr a-z A-Z; echo done >&2"]))
        .expect("spawn");
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let output = child.output().expect("output");
    assert!(output.verdict.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"SHOUT\n");
    assert_eq!(output.stderr, b"done\n");

    let mut child = daemon
        .client()
        .spawn_child(SpawnRequest::new("/bin/sh").args(["-c", "echo out; echo err >&2"]))
        .expect("spawn");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let output = child.output().expect("output");
    assert_eq!(stdout, "out\n");
    assert!(output.stdout.is_empty());
    assert_eq!(output.stderr, b"err\n");
}
