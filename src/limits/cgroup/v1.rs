//! What is particular to cgroup v1: one hierarchy per controller (or co-mounted group of
//! them), a sandboxes' parent in each at the zygote's start; per sandbox, a directory in
//! each hierarchy it needs, whose control files are `memory.limit_in_bytes`,
//! `cpu.cfs_quota_us`, `cpuacct.usage` and `memory.oom_control`. Runs in the zygote only.

use std::path::Path;

use super::discover::{Discovery, Found};
use super::files::{ensure_dir, read_keyed, read_u64, write_value, DirOps};
use super::{
    CgroupError, CgroupVersion, Cgroups, Controller, Controllers, Place, Supported, Usage,
    CPU_PERIOD_US,
};
use crate::sys::SysError;

/// Sets up the v1 hierarchies for sandboxes: the sandboxes' parent under the daemon's own
/// cgroup in each hierarchy found. The daemon stays where it is (v1 has no rule against
/// processes in a cgroup with children).
pub(super) fn setup(
    discovery: &Discovery,
    found: Vec<Found>,
    ops: DirOps,
) -> Result<Cgroups, CgroupError> {
    let mut parents = Vec::new();
    let mut all = Controllers::default();
    for own in found {
        let parent = own.child(&discovery.sandboxes_dir);
        ensure_dir(ops, &parent.path)?;
        for c in own.controllers.iter() {
            all.add(c);
        }
        parents.push(parent);
    }
    Ok(Cgroups {
        version: CgroupVersion::V1,
        parents,
        supported: Supported {
            memory: all.has(Controller::Memory),
            pids: all.has(Controller::Pids),
            cpu: all.has(Controller::Cpu),
            cpu_usage: all.has(Controller::Cpuacct),
        },
        ops,
    })
}

/// Writes the memory limit, where one is given, and keeps the sandbox from swapping
/// beyond it.
pub(super) fn write_memory(dir: &Path, bytes: Option<u64>) -> Result<(), SysError> {
    let file = |name: &str| dir.join(name);
    let Some(bytes) = bytes else { return Ok(()) };
    write_value(&file("memory.limit_in_bytes"), &bytes.to_string())?;
    // memory+swap at the same value leaves no room for swap; without swap
    // accounting, swappiness 0 keeps the group's pages out of swap.
    let memsw = file("memory.memsw.limit_in_bytes");
    let swappiness = file("memory.swappiness");
    if memsw.exists() {
        write_value(&memsw, &bytes.to_string())?;
    } else if swappiness.exists() {
        write_value(&swappiness, "0")?;
    }
    Ok(())
}

/// Writes a CPU quota of `quota_us` per [`CPU_PERIOD_US`].
pub(super) fn write_cpu(dir: &Path, quota_us: u64) -> Result<(), SysError> {
    write_value(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
    write_value(&dir.join("cpu.cfs_quota_us"), &quota_us.to_string())
}

/// Reads what `dir` accounts into `usage`: CPU time where it is in the cpuacct
/// hierarchy, peak memory and OOM kills where it is in the memory hierarchy.
pub(super) fn read_usage(dir: &Place, usage: &mut Usage) {
    let c = dir.controllers;
    let file = |name: &str| dir.path.join(name);
    if c.has(Controller::Cpuacct) {
        usage.cpu_ns = read_u64(&file("cpuacct.usage"));
        usage.cpu_user_ns = read_u64(&file("cpuacct.usage_user"));
        usage.cpu_system_ns = read_u64(&file("cpuacct.usage_sys"));
    }
    if c.has(Controller::Memory) {
        usage.memory_peak_bytes = read_u64(&file("memory.max_usage_in_bytes"));
        usage.oom_kills = read_keyed(&file("memory.oom_control"), "oom_kill").unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::fake::{fake_rmdir, read, ALL_LIMITS};
    use super::super::{CgroupError, CgroupLimits, DAEMON_LEAF, SANDBOXES_DIR};
    use super::*;

    // ---- A fake v1 tree -----------------------------------------------------------------

    /// `mkdir` on a fake v1 tree: the same files as the parent, with no processes.
    fn fake_v1_mkdir(path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)?;
        for entry in std::fs::read_dir(path.parent().unwrap())? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let name = entry.file_name();
                let content = match name.to_str() {
                    Some("cgroup.procs" | "tasks") => Vec::new(),
                    _ => std::fs::read(entry.path())?,
                };
                std::fs::write(path.join(name), content)?;
            }
        }
        Ok(())
    }

    const FAKE_V1: DirOps = DirOps {
        mkdir: fake_v1_mkdir,
        rmdir: fake_rmdir,
    };

    /// A fake v1 host: memory and pids on their own, cpu and cpuacct as given, and a
    /// cgroup2 mount without controllers (as on the test machines).
    struct FakeV1 {
        dir: tempfile::TempDir,
        discovery: Discovery,
    }

    impl FakeV1 {
        fn new(comounted_cpu: bool, memsw: bool) -> FakeV1 {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let cpu_mounts: &[(&str, &[&str])] = if comounted_cpu {
                &[(
                    "cpu,cpuacct",
                    &["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpuacct.usage"],
                )]
            } else {
                &[
                    ("cpu", &["cpu.cfs_period_us", "cpu.cfs_quota_us"]),
                    ("cpuacct", &["cpuacct.usage"]),
                ]
            };
            let mut memory_files = vec![
                "memory.limit_in_bytes",
                "memory.max_usage_in_bytes",
                "memory.oom_control",
                "memory.swappiness",
            ];
            if memsw {
                memory_files.push("memory.memsw.limit_in_bytes");
            }
            let mut mounts: Vec<(&str, &[&str])> = vec![
                ("memory", &memory_files),
                ("pids", &["pids.max", "pids.peak"]),
            ];
            mounts.extend_from_slice(cpu_mounts);
            let mut mountinfo = String::new();
            let mut proc_cgroup = String::new();
            for (i, (controllers, files)) in mounts.iter().enumerate() {
                // The daemon's cgroup is /daemon in memory, the root elsewhere.
                let own = if *controllers == "memory" {
                    "/daemon"
                } else {
                    "/"
                };
                let dir = root.join("sys/fs/cgroup").join(controllers).join(&own[1..]);
                std::fs::create_dir_all(&dir).unwrap();
                for file in ["cgroup.procs", "tasks"].iter().chain(files.iter()) {
                    std::fs::write(dir.join(file), "").unwrap();
                }
                mountinfo += &format!(
                    "{} 31 0:{} / /sys/fs/cgroup/{controllers} rw,relatime - cgroup cgroup rw,{controllers}\n",
                    40 + i,
                    40 + i
                );
                proc_cgroup += &format!("{}:{controllers}:{own}\n", i + 1);
            }
            std::fs::create_dir_all(root.join("sys/fs/cgroup/unified")).unwrap();
            std::fs::write(root.join("sys/fs/cgroup/unified/cgroup.controllers"), "\n").unwrap();
            mountinfo += "50 31 0:50 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
            mountinfo +=
                "51 31 0:51 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n";
            proc_cgroup += "9:name=systemd:/\n0::/\n";
            let discovery = Discovery {
                proc_self_cgroup: proc_cgroup,
                mountinfo,
                root: root.to_owned(),
                sandboxes_dir: SANDBOXES_DIR.to_owned(),
                pid: 4242,
            };
            FakeV1 { dir, discovery }
        }

        fn discover(&self) -> Cgroups {
            Cgroups::discover_with_ops(&self.discovery, FAKE_V1).unwrap()
        }

        fn hierarchy(&self, name: &str) -> PathBuf {
            self.dir.path().join("sys/fs/cgroup").join(name)
        }
    }

    #[test]
    fn v1_is_chosen_when_cgroup2_has_no_controllers() {
        let fake = FakeV1::new(false, true);
        let cgroups = fake.discover();
        assert_eq!(cgroups.version(), CgroupVersion::V1);
        assert_eq!(
            cgroups.supports(),
            Supported {
                memory: true,
                pids: true,
                cpu: true,
                cpu_usage: true
            }
        );
        let parents = cgroups.sandboxes_dirs();
        assert_eq!(
            parents,
            vec![
                fake.hierarchy("memory/daemon").join(SANDBOXES_DIR),
                fake.hierarchy("pids").join(SANDBOXES_DIR),
                fake.hierarchy("cpu").join(SANDBOXES_DIR),
                fake.hierarchy("cpuacct").join(SANDBOXES_DIR),
            ]
        );
        assert!(parents.iter().all(|p| p.is_dir()));
        // Nothing was written to the cgroup2 tree, and the daemon did not move.
        assert!(!fake.hierarchy("unified").join(DAEMON_LEAF).exists());
        // A second start reuses the directories.
        assert_eq!(fake.discover().sandboxes_dirs(), parents);
    }

    #[test]
    fn v1_create_writes_limits_in_their_hierarchies() {
        let fake = FakeV1::new(false, true);
        let cgroups = fake.discover();
        let cgroup = cgroups.create("sandbox-1", &ALL_LIMITS).unwrap();
        let dir = |h: &str| fake.hierarchy(h).join(SANDBOXES_DIR).join("sandbox-1");
        assert_eq!(cgroup.paths().len(), 4);
        assert_eq!(
            read(
                &fake
                    .hierarchy("memory/daemon")
                    .join(SANDBOXES_DIR)
                    .join("sandbox-1/memory.limit_in_bytes")
            ),
            "33554432"
        );
        let memory = fake
            .hierarchy("memory/daemon")
            .join(SANDBOXES_DIR)
            .join("sandbox-1");
        assert_eq!(
            read(&memory.join("memory.memsw.limit_in_bytes")),
            "33554432"
        );
        assert_eq!(read(&memory.join("memory.swappiness")), "");
        assert_eq!(read(&dir("pids").join("pids.max")), "64");
        assert_eq!(read(&dir("cpu").join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&dir("cpu").join("cpu.cfs_quota_us")), "150000");
        assert!(dir("cpuacct").is_dir());
        assert!(cgroup.clone_into_fd().is_none());
        cgroup.add(31337).unwrap();
        for path in cgroup.paths() {
            assert_eq!(read(&path.join("cgroup.procs")), "31337");
        }
    }

    #[test]
    fn v1_without_memsw_sets_swappiness_and_without_cpu_limit_skips_cpu() {
        let fake = FakeV1::new(false, false);
        let limits = CgroupLimits {
            memory_bytes: Some(1 << 30),
            ..CgroupLimits::default()
        };
        let cgroup = fake.discover().create("sandbox-1", &limits).unwrap();
        let memory = fake
            .hierarchy("memory/daemon")
            .join(SANDBOXES_DIR)
            .join("sandbox-1");
        assert_eq!(read(&memory.join("memory.limit_in_bytes")), "1073741824");
        assert_eq!(read(&memory.join("memory.swappiness")), "0");
        // memory, pids and cpuacct always (usage is measured); cpu only for a limit.
        assert_eq!(
            cgroup.paths(),
            vec![
                memory,
                fake.hierarchy("pids").join(SANDBOXES_DIR).join("sandbox-1"),
                fake.hierarchy("cpuacct")
                    .join(SANDBOXES_DIR)
                    .join("sandbox-1"),
            ]
        );
        assert!(!fake
            .hierarchy("cpu")
            .join(SANDBOXES_DIR)
            .join("sandbox-1")
            .exists());
        assert!(fake
            .hierarchy("pids")
            .join(SANDBOXES_DIR)
            .join("sandbox-1/pids.max")
            .exists());
        assert_eq!(
            read(
                &fake
                    .hierarchy("pids")
                    .join(SANDBOXES_DIR)
                    .join("sandbox-1/pids.max")
            ),
            ""
        );
    }

    #[test]
    fn v1_comounted_cpu_and_cpuacct_share_one_directory() {
        let fake = FakeV1::new(true, true);
        let cgroups = fake.discover();
        assert_eq!(cgroups.sandboxes_dirs().len(), 3);
        assert!(cgroups.supports().cpu && cgroups.supports().cpu_usage);
        let cgroup = cgroups.create("sandbox-1", &ALL_LIMITS).unwrap();
        let cpu = fake
            .hierarchy("cpu,cpuacct")
            .join(SANDBOXES_DIR)
            .join("sandbox-1");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "150000");
        std::fs::write(cpu.join("cpuacct.usage"), "987654321\n").unwrap();
        std::fs::write(cpu.join("cpuacct.usage_user"), "900000000\n").unwrap();
        std::fs::write(cpu.join("cpuacct.usage_sys"), "87654321\n").unwrap();
        let memory = fake
            .hierarchy("memory/daemon")
            .join(SANDBOXES_DIR)
            .join("sandbox-1");
        std::fs::write(
            memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        std::fs::write(memory.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        let pids = fake.hierarchy("pids").join(SANDBOXES_DIR).join("sandbox-1");
        std::fs::write(pids.join("pids.peak"), "5\n").unwrap();
        std::fs::write(pids.join("pids.events"), "max 2\n").unwrap();
        assert_eq!(
            cgroup.usage(),
            Usage {
                cpu_ns: Some(987_654_321),
                cpu_user_ns: Some(900_000_000),
                cpu_system_ns: Some(87_654_321),
                memory_peak_bytes: Some(4096),
                oom_kills: 3,
                pids_peak: Some(5),
                pids_refused: 2,
            }
        );
        // Without a cpu limit the co-mounted directory is still made, for cpuacct.
        let plain = cgroups
            .create("sandbox-2", &CgroupLimits::default())
            .unwrap();
        assert_eq!(plain.paths().len(), 3);
    }

    #[test]
    fn no_hierarchy_at_all_is_not_an_error_until_a_limit_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let discovery = Discovery {
            proc_self_cgroup: "0::/\n".into(),
            mountinfo: "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n".into(),
            root: dir.path().to_owned(),
            sandboxes_dir: SANDBOXES_DIR.into(),
            pid: 1,
        };
        let cgroups = Cgroups::discover_with_ops(&discovery, FAKE_V1).unwrap();
        assert_eq!(cgroups.supports(), Supported::default());
        let limits = CgroupLimits {
            pids: Some(10),
            ..CgroupLimits::default()
        };
        assert!(matches!(
            cgroups.create("sandbox-1", &limits),
            Err(CgroupError::NoHierarchy(Controller::Pids))
        ));
        let none = cgroups
            .create("sandbox-1", &CgroupLimits::default())
            .unwrap();
        assert!(none.paths().is_empty());
        assert_eq!(none.usage(), Usage::default());
    }

    // ---- The v1 path, for real (root on a host with v1 hierarchies) --------------------

    mod real {
        use super::super::super::discover::{parse_mountinfo, parse_proc_cgroup, plan, Plan};
        use super::super::super::fake::read;
        use super::super::super::files::{keyed_value, remove_tree, CGROUPFS};
        use super::super::super::{CgroupError, CgroupLimits, SandboxCgroup};
        use super::super::*;
        use std::io::Write;
        use std::os::unix::process::ExitStatusExt;
        use std::path::PathBuf;
        use std::process::{Child, Command, Stdio};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};

        /// This host's real hierarchies, with a sandboxes' parent of this test's own
        /// (so no daemon's and no other test's cgroups are touched). When it goes, even
        /// after a failed assertion, the processes the test started are killed and every
        /// cgroup under that parent, and the parent, are removed.
        struct Host {
            discovery: Discovery,
            cgroups: Cgroups,
            children: Vec<Child>,
        }

        /// `None` (skip) without root or v1 hierarchies; a failure instead of a skip when
        /// `HATCHERY_TESTS_MUST_RUN=1`.
        fn host(test: &str) -> Option<Host> {
            let must_run = std::env::var("HATCHERY_TESTS_MUST_RUN").as_deref() == Ok("1");
            let skip = |why: &str| {
                assert!(
                    !must_run,
                    "{test} cannot run: {why} (HATCHERY_TESTS_MUST_RUN=1)"
                );
                eprintln!("skipping {test}: {why}");
                None
            };
            if !nix::unistd::geteuid().is_root() {
                return skip("not root");
            }
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let mut discovery = Discovery::host().unwrap();
            discovery.sandboxes_dir = format!(
                "hatchery-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            // Decided before anything is created: on a v2 host discovery would move this
            // test process into a leaf.
            let Plan::V1(found) = plan(&discovery) else {
                return skip("this host uses cgroup v2");
            };
            let has = |c| found.iter().any(|f| f.controllers.has(c));
            if !Controller::ALL.into_iter().all(has) {
                return skip("no v1 hierarchy for each of memory, pids, cpu and cpuacct");
            }
            let cgroups = Cgroups::discover_with(&discovery).unwrap();
            Some(Host {
                discovery,
                cgroups,
                children: Vec::new(),
            })
        }

        impl Host {
            /// Starts `sh -c script` (stdin piped, output discarded) and moves it into
            /// `cgroup`; the script should `read _` before its work, which
            /// [`Host::release`] then starts.
            fn start_in(&mut self, cgroup: &SandboxCgroup, script: &str) -> i32 {
                let child = Command::new("sh")
                    .args(["-c", script])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let pid = child.id() as i32;
                self.children.push(child);
                cgroup.add(pid).unwrap();
                pid
            }

            fn release(&mut self, pid: i32) {
                let child = self.child(pid);
                child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
            }

            fn child(&mut self, pid: i32) -> &mut Child {
                self.children
                    .iter_mut()
                    .find(|c| c.id() as i32 == pid)
                    .unwrap()
            }

            /// Waits for `pid` to end, up to `timeout`.
            fn wait(&mut self, pid: i32, timeout: Duration) -> std::process::ExitStatus {
                let start = Instant::now();
                loop {
                    if let Some(status) = self.child(pid).try_wait().unwrap() {
                        return status;
                    }
                    assert!(
                        start.elapsed() < timeout,
                        "pid {pid} still runs after {timeout:?}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }

        impl Drop for Host {
            fn drop(&mut self) {
                for child in &mut self.children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                if let Err(e) = self.cgroups.remove_stale(|_| true) {
                    eprintln!("cleanup: {}", crate::error_chain(&e));
                }
                for dir in self.cgroups.sandboxes_dirs() {
                    if let Err(e) = remove_tree(CGROUPFS, &dir) {
                        eprintln!("cleanup: {e}");
                    }
                }
            }
        }

        /// The lines of `/proc/PID/cgroup`, by path.
        fn proc_cgroup_paths(pid: i32) -> Vec<String> {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            parse_proc_cgroup(&text)
                .into_iter()
                .map(|l| l.path)
                .collect()
        }

        fn read_trimmed(path: &Path) -> String {
            read(path).trim().to_owned()
        }

        fn dir_of(cgroup: &SandboxCgroup, file: &str) -> PathBuf {
            cgroup
                .paths()
                .into_iter()
                .find(|p| p.join(file).exists())
                .unwrap_or_else(|| panic!("no directory of {:?} has {file}", cgroup.paths()))
        }

        #[test]
        fn real_v1_discovery_finds_each_hierarchy_through_mountinfo() {
            let Some(host) = host("real_v1_discovery_finds_each_hierarchy_through_mountinfo")
            else {
                return;
            };
            let cgroups = &host.cgroups;
            assert_eq!(cgroups.version(), CgroupVersion::V1);
            assert_eq!(
                cgroups.supports(),
                Supported {
                    memory: true,
                    pids: true,
                    cpu: true,
                    cpu_usage: true
                }
            );
            let mounts = parse_mountinfo(&host.discovery.mountinfo);
            let own = parse_proc_cgroup(&host.discovery.proc_self_cgroup);
            for (controller, file) in [
                (Controller::Memory, "memory.limit_in_bytes"),
                (Controller::Pids, "pids.max"),
                (Controller::Cpu, "cpu.cfs_quota_us"),
                (Controller::Cpuacct, "cpuacct.usage"),
            ] {
                let dir = cgroups
                    .sandboxes_dirs()
                    .into_iter()
                    .find(|d| d.join(file).exists())
                    .unwrap_or_else(|| panic!("no sandboxes' parent for {controller}"));
                // <mount point of the controller>/<own path of the controller>/<parent>
                let mount = mounts
                    .iter()
                    .find(|m| {
                        m.fstype == "cgroup"
                            && m.super_options.iter().any(|o| o == controller.name())
                    })
                    .unwrap();
                let own_path = &own
                    .iter()
                    .find(|l| l.controllers.iter().any(|n| n == controller.name()))
                    .unwrap()
                    .path;
                let expected = mount
                    .point
                    .join(own_path.trim_start_matches('/'))
                    .join(&host.discovery.sandboxes_dir);
                assert_eq!(dir, expected, "{controller}");
                eprintln!("{controller}: {}", dir.display());
            }
        }

        #[test]
        fn real_v1_add_kill_remove() {
            let Some(mut host) = host("real_v1_add_kill_remove") else {
                return;
            };
            let limits = CgroupLimits {
                memory_bytes: None,
                pids: Some(32),
                cpu_millicores: Some(500),
            };
            let cgroup = host.cgroups.create("sandbox-1", &limits).unwrap();
            assert_eq!(cgroup.paths().len(), 4);
            assert_eq!(
                read_trimmed(&dir_of(&cgroup, "pids.max").join("pids.max")),
                "32"
            );
            let cpu = dir_of(&cgroup, "cpu.cfs_quota_us");
            assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read_trimmed(&cpu.join("cpu.cfs_period_us")), "100000");
            // No memory limit was asked: none written.
            let memory = dir_of(&cgroup, "memory.limit_in_bytes");
            assert_eq!(
                read_trimmed(&memory.join("memory.limit_in_bytes")),
                read_trimmed(&memory.parent().unwrap().join("memory.limit_in_bytes"))
            );

            let pid = host.start_in(&cgroup, "read _; exec sleep 30");
            let listed = proc_cgroup_paths(pid);
            for dir in cgroup.paths() {
                assert!(
                    listed.iter().any(|p| p != "/" && dir.ends_with(&p[1..])),
                    "{} not in /proc/{pid}/cgroup: {listed:?}",
                    dir.display()
                );
                assert_eq!(read_trimmed(&dir.join("cgroup.procs")), pid.to_string());
            }

            cgroup.kill().unwrap();
            // Not reaped yet: how long the kernel keeps the cgroup busy.
            let start = Instant::now();
            let mut busy = 0;
            loop {
                match cgroup.remove() {
                    Ok(()) => break,
                    Err(CgroupError::Busy) => busy += 1,
                    Err(e) => panic!("{}", crate::error_chain(&e)),
                }
                assert!(start.elapsed() < Duration::from_secs(2), "still busy");
            }
            eprintln!(
                "remove after kill, before reap: busy {busy} times over {:?}",
                start.elapsed()
            );
            let status = host.wait(pid, Duration::from_secs(5));
            assert_eq!(status.signal(), Some(libc::SIGKILL));
            assert!(cgroup.paths().iter().all(|p| !p.exists()));
        }

        #[test]
        fn real_v1_memory_limit_oom_kills_a_hog() {
            let Some(mut host) = host("real_v1_memory_limit_oom_kills_a_hog") else {
                return;
            };
            let limit = 32 << 20;
            let limits = CgroupLimits {
                memory_bytes: Some(limit),
                ..CgroupLimits::default()
            };
            let cgroup = host.cgroups.create("sandbox-1", &limits).unwrap();
            let memory = dir_of(&cgroup, "memory.limit_in_bytes");
            assert_eq!(
                read_trimmed(&memory.join("memory.limit_in_bytes")),
                limit.to_string()
            );
            if memory.join("memory.memsw.limit_in_bytes").exists() {
                assert_eq!(
                    read_trimmed(&memory.join("memory.memsw.limit_in_bytes")),
                    limit.to_string()
                );
            }
            assert_eq!(cgroup.usage().oom_kills, 0);
            // tail keeps the one endless line of /dev/zero in memory. The address-space
            // rlimit is a safety net should the cgroup limit not hold: 1 GiB, not the host.
            let pid = host.start_in(&cgroup, "ulimit -v 1048576; read _; exec tail /dev/zero");
            assert!(proc_cgroup_paths(pid)
                .iter()
                .any(|p| p != "/" && memory.ends_with(&p[1..])));
            host.release(pid);
            let status = host.wait(pid, Duration::from_secs(30));
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
            let usage = cgroup.usage();
            eprintln!("hog: {usage:?}");
            assert!(usage.oom_kills >= 1, "{usage:?}");
            let peak = usage.memory_peak_bytes.unwrap();
            assert!(peak > limit / 2 && peak <= limit, "{usage:?}");
            cgroup.remove().unwrap();
        }

        #[test]
        fn real_v1_pids_limit_holds_and_kill_ends_the_whole_tree() {
            let Some(mut host) = host("real_v1_pids_limit_holds_and_kill_ends_the_whole_tree")
            else {
                return;
            };
            let limits = CgroupLimits {
                pids: Some(8),
                ..CgroupLimits::default()
            };
            let cgroup = host.cgroups.create("sandbox-1", &limits).unwrap();
            let pids_dir = dir_of(&cgroup, "pids.max");
            let pid = host.start_in(
                &cgroup,
                "read _; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do sleep 30 & done; sleep 30",
            );
            host.release(pid);
            // Until a fork has been refused at the limit.
            let start = Instant::now();
            while keyed_value(&read(&pids_dir.join("pids.events")), "max").unwrap_or(0) == 0 {
                assert!(start.elapsed() < Duration::from_secs(10), "no fork refused");
                std::thread::sleep(Duration::from_millis(5));
            }
            let members: Vec<i32> = read(&pids_dir.join("cgroup.procs"))
                .lines()
                .map(|l| l.parse().unwrap())
                .collect();
            assert!(members.len() > 1 && members.len() <= 8, "{members:?}");
            assert_eq!(cgroup.usage().pids_peak, Some(8));

            // The sleeps are sh's children (and become orphans): kill must find them all.
            cgroup.kill().unwrap();
            let start = Instant::now();
            let mut busy = 0;
            while let Err(e) = cgroup.remove() {
                assert!(matches!(e, CgroupError::Busy), "{e:?}");
                busy += 1;
                assert!(start.elapsed() < Duration::from_secs(2), "still busy");
                std::thread::sleep(Duration::from_micros(100));
            }
            eprintln!(
                "{} processes killed; remove busy {busy} times over {:?}",
                members.len(),
                start.elapsed()
            );
            for member in members {
                // Gone, or a zombie waiting for its parent.
                if let Ok(stat) = std::fs::read_to_string(format!("/proc/{member}/stat")) {
                    let state = stat.rsplit_once(") ").unwrap().1.chars().next();
                    assert_eq!(state, Some('Z'), "{member} survived: {stat}");
                }
            }
            // sh itself may have given up at the refused fork already.
            host.wait(pid, Duration::from_secs(5));
        }

        #[test]
        fn real_v1_cpu_limit_throttles_and_usage_counts() {
            let Some(mut host) = host("real_v1_cpu_limit_throttles_and_usage_counts") else {
                return;
            };
            let limits = CgroupLimits {
                cpu_millicores: Some(200),
                ..CgroupLimits::default()
            };
            let cgroup = host.cgroups.create("sandbox-1", &limits).unwrap();
            assert_eq!(cgroup.usage().cpu_ns, Some(0));
            let pid = host.start_in(&cgroup, "read _; exec yes");
            host.release(pid);
            let start = Instant::now();
            std::thread::sleep(Duration::from_secs(1));
            let used = cgroup.usage().cpu_ns.unwrap();
            let wall = start.elapsed();
            cgroup.kill().unwrap();
            host.wait(pid, Duration::from_secs(5));
            let cpu_stat = read(&dir_of(&cgroup, "cpu.stat").join("cpu.stat"));
            eprintln!("busy loop at 200m over {wall:?}: {used} ns; {cpu_stat:?}");
            // 20 ms per 100 ms period, plus slack for the periods at either end and
            // the shell's start-up (unthrottled, `yes` would use five times as much).
            let ceiling = wall.as_nanos() as u64 / 5 + 60_000_000;
            assert!(used > 20_000_000 && used < ceiling, "{used} ns in {wall:?}");
            assert!(
                keyed_value(&cpu_stat, "nr_throttled").unwrap() > 0,
                "{cpu_stat}"
            );
            cgroup.remove().unwrap();
        }

        #[test]
        fn real_v1_remove_stale_kills_and_removes() {
            let Some(mut host) = host("real_v1_remove_stale_kills_and_removes") else {
                return;
            };
            let a = host
                .cgroups
                .create("sandbox-1", &CgroupLimits::default())
                .unwrap();
            let b = host
                .cgroups
                .create(
                    "sandbox-2",
                    &CgroupLimits {
                        cpu_millicores: Some(100),
                        ..CgroupLimits::default()
                    },
                )
                .unwrap();
            let pid = host.start_in(&a, "read _; exec sleep 30");
            host.release(pid);
            // A daemon restarted with the same parent.
            let restarted = Cgroups::discover_with(&host.discovery).unwrap();
            assert_eq!(restarted.sandboxes_dirs(), host.cgroups.sandboxes_dirs());
            assert_eq!(restarted.remove_stale(|_| true).unwrap(), 2);
            let status = host.wait(pid, Duration::from_secs(5));
            assert_eq!(status.signal(), Some(libc::SIGKILL));
            for path in a.paths().into_iter().chain(b.paths()) {
                assert!(!path.exists(), "{}", path.display());
            }
            assert_eq!(restarted.remove_stale(|_| true).unwrap(), 0);
        }
    }
}
