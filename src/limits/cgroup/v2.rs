//! What is particular to cgroup v2, the unified hierarchy: at the zygote's start the
//! daemon moves into a leaf of its own and enables the controllers it was granted; per
//! sandbox, one directory whose control files are `memory.max`, `memory.oom.group`,
//! `cpu.max`, `memory.events` and `cpu.stat`. Runs in the zygote only.

use std::path::Path;

use super::discover::{Discovery, Found};
use super::files::{ensure_dir, read_keyed, read_u64, write_value, DirOps};
use super::{
    CgroupError, CgroupVersion, Cgroups, Controller, Place, Supported, Usage, CPU_PERIOD_US,
    DAEMON_LEAF,
};
use crate::sys::SysError;

/// Sets up the unified hierarchy for sandboxes: moves the daemon into [`DAEMON_LEAF`],
/// enables the controllers it was granted in its own cgroup and in the sandboxes' parent.
pub(super) fn setup(
    discovery: &Discovery,
    own: Found,
    ops: DirOps,
) -> Result<Cgroups, CgroupError> {
    // No internal processes: a cgroup that enables controllers for its children may hold
    // no process itself, so the daemon first moves into a leaf of its own.
    let leaf = own.path.join(DAEMON_LEAF);
    ensure_dir(ops, &leaf)?;
    write_value(&leaf.join("cgroup.procs"), &discovery.pid.to_string())
        .map_err(CgroupError::Setup)?;
    let enable = own.controllers.subtree_control();
    if !enable.is_empty() {
        write_value(&own.path.join("cgroup.subtree_control"), &enable)
            .map_err(CgroupError::Setup)?;
    }
    let parent = own.child(&discovery.sandboxes_dir);
    ensure_dir(ops, &parent.path)?;
    if !enable.is_empty() {
        write_value(&parent.path.join("cgroup.subtree_control"), &enable)
            .map_err(CgroupError::Setup)?;
    }
    let c = own.controllers;
    Ok(Cgroups {
        version: CgroupVersion::V2,
        supported: Supported {
            memory: c.has(Controller::Memory),
            pids: c.has(Controller::Pids),
            cpu: c.has(Controller::Cpu),
            // A core file of every v2 cgroup, with or without the cpu controller.
            cpu_usage: parent.path.join("cpu.stat").is_file(),
        },
        parents: vec![parent],
        ops,
    })
}

/// Writes the memory limit (and no swap beyond it) where one is given, and in every case
/// makes an OOM kill take the whole sandbox.
pub(super) fn write_memory(dir: &Path, bytes: Option<u64>) -> Result<(), SysError> {
    let file = |name: &str| dir.join(name);
    if let Some(bytes) = bytes {
        write_value(&file("memory.max"), &bytes.to_string())?;
        // Absent without swap accounting (then there is no swap to limit).
        let swap = file("memory.swap.max");
        if swap.exists() {
            write_value(&swap, "0")?;
        }
    }
    // Not a limit but how an OOM ends: with or without a limit of ours (the
    // daemon's own cgroup may have one), it takes the whole sandbox.
    write_value(&file("memory.oom.group"), "1")?;
    Ok(())
}

/// Writes a CPU quota of `quota_us` per [`CPU_PERIOD_US`].
pub(super) fn write_cpu(dir: &Path, quota_us: u64) -> Result<(), SysError> {
    write_value(&dir.join("cpu.max"), &format!("{quota_us} {CPU_PERIOD_US}"))
}

/// Reads what `dir` accounts into `usage`: CPU time from `cpu.stat` (a core file of
/// every v2 cgroup), peak memory and OOM kills where the memory controller is on.
pub(super) fn read_usage(dir: &Place, usage: &mut Usage) {
    let file = |name: &str| dir.path.join(name);
    let stat = file("cpu.stat");
    let ns = |key: &str| read_keyed(&stat, key).map(|us| us.saturating_mul(1000));
    usage.cpu_ns = ns("usage_usec");
    usage.cpu_user_ns = ns("user_usec");
    usage.cpu_system_ns = ns("system_usec");
    if dir.controllers.has(Controller::Memory) {
        usage.memory_peak_bytes = read_u64(&file("memory.peak"));
        let events = file("memory.events");
        let kills = read_keyed(&events, "oom_kill").unwrap_or(0);
        let group_kills = read_keyed(&events, "oom_group_kill").unwrap_or(0);
        usage.oom_kills = kills.max(group_kills);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use nix::errno::Errno;

    use super::super::fake::{fake_rmdir, read, ALL_LIMITS};
    use super::super::{CgroupLimits, SANDBOXES_DIR};
    use super::*;

    // ---- A fake cgroup2 filesystem -------------------------------------------------

    /// The files of every v2 cgroup, with their initial contents.
    const V2_CORE_FILES: &[(&str, &str)] = &[
        ("cgroup.procs", ""),
        ("cgroup.controllers", ""),
        ("cgroup.subtree_control", ""),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cgroup.kill", ""),
        ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
    ];

    /// The files a v2 controller adds to a cgroup where its parent enables it.
    fn v2_controller_files(controller: &str) -> &'static [(&'static str, &'static str)] {
        match controller {
            "memory" => &[
                ("memory.max", "max\n"),
                ("memory.swap.max", "max\n"),
                ("memory.oom.group", "0\n"),
                ("memory.peak", "0\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
                ),
            ],
            "pids" => &[("pids.max", "max\n"), ("pids.peak", "0\n")],
            "cpu" => &[("cpu.max", "max 100000\n")],
            _ => &[],
        }
    }

    /// The controllers a fake cgroup's `cgroup.subtree_control` enables. The kernel
    /// would show `memory pids`; the fake holds what was written, `+memory +pids`.
    fn enabled_in(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("cgroup.subtree_control"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|t| t.strip_prefix('+').or(Some(t)))
            .map(str::to_owned)
            .collect()
    }

    /// `mkdir` on a fake cgroup2 tree: the core files, plus the files of the controllers
    /// the parent enables, as the kernel would populate them.
    fn fake_v2_mkdir(path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)?;
        let enabled = enabled_in(path.parent().unwrap());
        for (name, content) in V2_CORE_FILES {
            std::fs::write(path.join(name), content)?;
        }
        std::fs::write(path.join("cgroup.controllers"), enabled.join(" ") + "\n")?;
        for controller in &enabled {
            for (name, content) in v2_controller_files(controller) {
                std::fs::write(path.join(name), content)?;
            }
        }
        Ok(())
    }

    const FAKE_V2: DirOps = DirOps {
        mkdir: fake_v2_mkdir,
        rmdir: fake_rmdir,
    };

    const V2_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const SERVICE: &str = "/system.slice/hatchery.service";

    /// A fake cgroup2 host whose daemon runs in [`SERVICE`], where `available` are the
    /// controllers its parent grants it.
    struct FakeV2 {
        dir: tempfile::TempDir,
    }

    impl FakeV2 {
        fn new(available: &str) -> FakeV2 {
            let dir = tempfile::tempdir().unwrap();
            let own = dir.path().join("sys/fs/cgroup").join(&SERVICE[1..]);
            std::fs::create_dir_all(&own).unwrap();
            for (name, content) in V2_CORE_FILES {
                std::fs::write(own.join(name), content).unwrap();
            }
            std::fs::write(own.join("cgroup.controllers"), format!("{available}\n")).unwrap();
            // The daemon is in its service cgroup, as systemd started it.
            std::fs::write(own.join("cgroup.procs"), "4242\n").unwrap();
            FakeV2 { dir }
        }

        fn own(&self) -> PathBuf {
            self.dir.path().join("sys/fs/cgroup").join(&SERVICE[1..])
        }

        fn discovery(&self, own: &str) -> Discovery {
            Discovery {
                proc_self_cgroup: format!("0::{own}\n"),
                mountinfo: V2_MOUNTINFO.to_owned(),
                root: self.dir.path().to_owned(),
                sandboxes_dir: SANDBOXES_DIR.to_owned(),
                pid: 4242,
            }
        }

        fn discover(&self) -> Cgroups {
            Cgroups::discover_with_ops(&self.discovery(SERVICE), FAKE_V2).unwrap()
        }
    }

    // ---- The v2 path, on the fake tree ---------------------------------------------

    #[test]
    fn v2_discovery_moves_the_daemon_into_a_leaf_and_enables_controllers() {
        let fake = FakeV2::new("cpuset cpu io memory hugetlb pids rdma misc");
        let cgroups = fake.discover();
        assert_eq!(cgroups.version(), CgroupVersion::V2);
        assert_eq!(
            cgroups.supports(),
            Supported {
                memory: true,
                pids: true,
                cpu: true,
                cpu_usage: true
            }
        );
        let own = fake.own();
        assert_eq!(read(&own.join("hatchery-daemon/cgroup.procs")), "4242");
        assert_eq!(
            read(&own.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        let parent = own.join(SANDBOXES_DIR);
        assert_eq!(cgroups.sandboxes_dirs(), vec![parent.clone()]);
        assert_eq!(
            read(&parent.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
    }

    #[test]
    fn v2_discovery_again_from_inside_the_leaf_reuses_the_directories() {
        let fake = FakeV2::new("cpu memory pids");
        let first = fake.discover();
        let again = fake.discovery(&format!("{SERVICE}/{DAEMON_LEAF}"));
        let second = Cgroups::discover_with_ops(&again, FAKE_V2).unwrap();
        assert_eq!(first.sandboxes_dirs(), second.sandboxes_dirs());
        assert_eq!(second.supports(), first.supports());
        // Not nested one level deeper.
        assert!(!fake.own().join(DAEMON_LEAF).join(DAEMON_LEAF).exists());
    }

    #[test]
    fn v2_enables_only_the_controllers_granted() {
        let fake = FakeV2::new("cpuset io pids");
        let cgroups = fake.discover();
        assert_eq!(cgroups.version(), CgroupVersion::V2);
        assert_eq!(
            cgroups.supports(),
            Supported {
                memory: false,
                pids: true,
                cpu: false,
                cpu_usage: true
            }
        );
        assert_eq!(read(&fake.own().join("cgroup.subtree_control")), "+pids");
        // A limit for a controller that is not there is refused, and leaves nothing.
        let limits = CgroupLimits {
            memory_bytes: Some(1 << 20),
            ..CgroupLimits::default()
        };
        let err = cgroups.create("sandbox-1", &limits).unwrap_err();
        assert!(
            matches!(err, CgroupError::NoHierarchy(Controller::Memory)),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "no cgroup hierarchy for controller memory");
        assert!(!fake.own().join(SANDBOXES_DIR).join("sandbox-1").exists());
    }

    #[test]
    fn v2_create_writes_every_limit() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroups = fake.discover();
        let cgroup = cgroups.create("sandbox-1", &ALL_LIMITS).unwrap();
        let dir = fake.own().join(SANDBOXES_DIR).join("sandbox-1");
        assert_eq!(cgroup.paths(), vec![dir.clone()]);
        assert_eq!(cgroup.name(), "sandbox-1");
        assert_eq!(read(&dir.join("memory.max")), "33554432");
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("memory.oom.group")), "1");
        assert_eq!(read(&dir.join("pids.max")), "64");
        assert_eq!(read(&dir.join("cpu.max")), "150000 100000");
        assert!(cgroup.clone_into_fd().is_some());
    }

    #[test]
    fn v2_create_without_limits_writes_only_the_oom_group() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroup = fake
            .discover()
            .create("sandbox-1", &CgroupLimits::default())
            .unwrap();
        let dir = &cgroup.paths()[0];
        assert_eq!(read(&dir.join("memory.max")), "max\n");
        assert_eq!(read(&dir.join("memory.swap.max")), "max\n");
        assert_eq!(read(&dir.join("pids.max")), "max\n");
        assert_eq!(read(&dir.join("cpu.max")), "max 100000\n");
        assert_eq!(read(&dir.join("memory.oom.group")), "1");
    }

    #[test]
    fn v2_a_limit_that_cannot_be_written_names_the_file_and_leaves_nothing() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroups = fake.discover();
        // As if memory were switched off for the sandboxes behind our back.
        let parent = fake.own().join(SANDBOXES_DIR);
        std::fs::write(parent.join("cgroup.subtree_control"), "+pids +cpu").unwrap();
        let err = cgroups.create("sandbox-1", &ALL_LIMITS).unwrap_err();
        let CgroupError::Limit { limit, source } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*limit, "memory");
        assert_eq!(source.errno(), Errno::ENOENT);
        assert_eq!(
            source.path.as_deref(),
            Some(parent.join("sandbox-1/memory.max").to_str().unwrap())
        );
        assert_eq!(
            crate::error_chain(&err),
            format!(
                "setting the memory limit failed: open({:?}): ENOENT (No such file or directory)",
                parent.join("sandbox-1/memory.max")
            )
        );
        assert!(!parent.join("sandbox-1").exists());
    }

    #[test]
    fn v2_usage_reads_peak_events_and_cpu_stat() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroup = fake
            .discover()
            .create("sandbox-1", &CgroupLimits::default())
            .unwrap();
        let dir = &cgroup.paths()[0];
        std::fs::write(dir.join("memory.peak"), "123456789\n").unwrap();
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 3\noom_group_kill 1\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 0\n",
        )
        .unwrap();
        std::fs::write(dir.join("pids.peak"), "7\n").unwrap();
        std::fs::write(dir.join("pids.events"), "max 2\n").unwrap();
        assert_eq!(
            cgroup.usage(),
            Usage {
                cpu_ns: Some(1_234_000),
                cpu_user_ns: Some(1_000_000),
                cpu_system_ns: Some(234_000),
                memory_peak_bytes: Some(123_456_789),
                oom_kills: 3,
                pids_peak: Some(7),
                pids_refused: 2,
            }
        );
        // A group kill counts even where the kernel reports only that line.
        std::fs::write(dir.join("memory.events"), "oom 1\noom_group_kill 1\n").unwrap();
        // Older kernels have no memory.peak or pids.peak.
        std::fs::remove_file(dir.join("memory.peak")).unwrap();
        std::fs::remove_file(dir.join("pids.peak")).unwrap();
        let usage = cgroup.usage();
        assert_eq!(usage.oom_kills, 1);
        assert_eq!(usage.memory_peak_bytes, None);
        assert_eq!(usage.pids_peak, None);
    }

    #[test]
    fn v2_kill_writes_cgroup_kill() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroup = fake
            .discover()
            .create("sandbox-1", &CgroupLimits::default())
            .unwrap();
        let kill_file = cgroup.paths()[0].join("cgroup.kill");
        assert_eq!(read(&kill_file), "");
        cgroup.kill().unwrap();
        assert_eq!(read(&kill_file), "1");
    }

    #[test]
    fn v2_add_writes_the_pid_to_cgroup_procs() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroup = fake
            .discover()
            .create("sandbox-1", &CgroupLimits::default())
            .unwrap();
        cgroup.add(31337).unwrap();
        assert_eq!(read(&cgroup.paths()[0].join("cgroup.procs")), "31337");
    }

    #[test]
    fn v2_remove_reports_busy_then_removes() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroup = fake
            .discover()
            .create("sandbox-1", &CgroupLimits::default())
            .unwrap();
        let dir = cgroup.paths()[0].clone();
        std::fs::write(dir.join("cgroup.procs"), "31337\n").unwrap();
        assert!(matches!(cgroup.remove(), Err(CgroupError::Busy)));
        assert!(dir.exists());
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        cgroup.remove().unwrap();
        assert!(!dir.exists());
        // Removing again is not an error: it is gone.
        cgroup.remove().unwrap();
    }

    #[test]
    fn v2_remove_stale_removes_what_a_previous_daemon_left() {
        let fake = FakeV2::new("cpu memory pids");
        let first = fake.discover();
        let a = first.create("sandbox-1", &ALL_LIMITS).unwrap();
        let b = first.create("sandbox-2", &CgroupLimits::default()).unwrap();
        // Something below a sandbox cgroup goes too.
        fake_v2_mkdir(&b.paths()[0].join("nested")).unwrap();
        drop(first);
        let restarted = fake.discover();
        assert_eq!(restarted.remove_stale(|_| true).unwrap(), 2);
        assert!(!a.paths()[0].exists());
        assert!(!b.paths()[0].exists());
        assert!(fake.own().join(SANDBOXES_DIR).exists());
        assert_eq!(restarted.remove_stale(|_| true).unwrap(), 0);
    }

    #[test]
    fn remove_stale_leaves_what_the_filter_does_not_call_stale() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroups = fake.discover();
        let dead = cgroups
            .create("sandbox-1-1", &CgroupLimits::default())
            .unwrap();
        let alive = cgroups
            .create("sandbox-2-1", &CgroupLimits::default())
            .unwrap();
        // The live one has a process: touching it would mean a kill and a busy rmdir.
        std::fs::write(alive.paths()[0].join("cgroup.procs"), "31337\n").unwrap();
        let removed = cgroups
            .remove_stale(|name| name.starts_with("sandbox-1-"))
            .unwrap();
        assert_eq!(removed, 1);
        assert!(!dead.paths()[0].exists());
        assert_eq!(read(&alive.paths()[0].join("cgroup.kill")), "");
        assert_eq!(read(&alive.paths()[0].join("cgroup.procs")), "31337\n");
    }

    #[test]
    fn v2_cpu_quota_overflow_is_refused() {
        let fake = FakeV2::new("cpu memory pids");
        let limits = CgroupLimits {
            cpu_millicores: Some(u64::MAX / 10),
            ..CgroupLimits::default()
        };
        let err = fake.discover().create("sandbox-1", &limits).unwrap_err();
        assert!(
            matches!(err, CgroupError::OutOfRange { limit: "cpu", .. }),
            "{err:?}"
        );
        assert!(!fake.own().join(SANDBOXES_DIR).join("sandbox-1").exists());
    }

    #[test]
    fn names_must_be_one_path_component() {
        let fake = FakeV2::new("cpu memory pids");
        let cgroups = fake.discover();
        for name in ["", ".", "..", "../escape", "a/b"] {
            let err = cgroups.create(name, &CgroupLimits::default()).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidName(_)),
                "{name:?}: {err:?}"
            );
        }
    }
}
