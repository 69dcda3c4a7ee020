//! Zygote side: one cgroup per sandbox, nested under the daemon's own cgroup, with the
//! limits that must hold for the whole process tree (memory, pids, CPU). cgroup v2 where
//! the kernel offers the controllers there, v1 hierarchies otherwise.
//!
//! [`Cgroups::discover`] runs once at daemon start-up: it reads `/proc/self/cgroup` and
//! `/proc/self/mountinfo` (`discover`), picks the version that carries more of the
//! controllers we need, and creates the daemon's parent directory for sandboxes
//! (`hatchery-sandboxes`) in each hierarchy (`v1`, `v2`). [`Cgroups::create`] then makes
//! one [`SandboxCgroup`] per sandbox, with its limits written before the sandbox is
//! cloned into it (v2 `CLONE_INTO_CGROUP`) or moved into it ([`SandboxCgroup::add`]).
//!
//! Everything here runs in the zygote and reads and writes files (`files`); the
//! filesystem root, the text of `/proc/self/cgroup` and of the mountinfo are injectable
//! ([`Discovery`]) so that the v2 path can be tested against a fake tree on a machine
//! that only has v1 controllers. Where the two versions differ (setup, the control files
//! of limits and usage) the code is in `v1` and `v2`; the rest is shared.

mod discover;
#[cfg(test)]
mod fake;
mod files;
mod sandbox_cgroup;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::sys::SysError;
pub use discover::Discovery;
use discover::Plan;
use files::{subdirectories, DirOps, CGROUPFS};
pub use sandbox_cgroup::SandboxCgroup;

/// The directory, under the daemon's own cgroup, that holds the sandboxes' cgroups.
pub const SANDBOXES_DIR: &str = "hatchery-sandboxes";

/// The v2 leaf the daemon moves itself into, so that its own cgroup has no processes and
/// may enable controllers for its children ("no internal processes").
pub const DAEMON_LEAF: &str = "hatchery-daemon";

/// The CFS period, in microseconds, that CPU quotas are expressed against.
pub const CPU_PERIOD_US: u64 = 100_000;

/// How long [`Cgroups::remove_stale`] waits for the killed processes of one stale
/// cgroup to exit before giving up on it.
const STALE_TIMEOUT: Duration = Duration::from_secs(2);

/// A cgroup controller this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Controller {
    /// `memory`: the memory limit, peak and OOM kills.
    Memory,
    /// `pids`: the number of tasks.
    Pids,
    /// `cpu`: CPU bandwidth (and, on v2, usage).
    Cpu,
    /// `cpuacct` (v1 only): CPU usage.
    Cpuacct,
}

impl Controller {
    /// Every controller, in the order files are written.
    pub const ALL: [Controller; 4] = [
        Controller::Memory,
        Controller::Pids,
        Controller::Cpu,
        Controller::Cpuacct,
    ];

    /// The kernel's name of the controller, e.g. `"cpuacct"`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of controllers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Controllers(u8);

impl Controllers {
    fn has(self, c: Controller) -> bool {
        self.0 & c.bit() != 0
    }

    fn add(&mut self, c: Controller) {
        self.0 |= c.bit();
    }

    fn iter(self) -> impl Iterator<Item = Controller> {
        Controller::ALL.into_iter().filter(move |&c| self.has(c))
    }

    /// How many of the three limit controllers (memory, pids, cpu) are in the set.
    fn limit_count(self) -> usize {
        self.iter().filter(|&c| c != Controller::Cpuacct).count()
    }

    /// The v2 `cgroup.subtree_control` line enabling these: `+memory +pids +cpu`.
    fn subtree_control(self) -> String {
        self.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The limits that go through cgroups.
///
/// ```
/// use hatchery::limits::cgroup::CgroupLimits;
/// let limits = CgroupLimits {
///     memory_bytes: Some(256 << 20),
///     pids: Some(64),
///     cpu_millicores: Some(1500), // one and a half CPUs
/// };
/// assert_ne!(limits, CgroupLimits::default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Hard memory limit in bytes; swap is disabled for the group, and on v2 an OOM kill
    /// takes the whole group.
    pub memory_bytes: Option<u64>,
    /// Most tasks (processes and threads) at once.
    pub pids: Option<u64>,
    /// CPU bandwidth: 1000 is one full CPU (a quota of `millicores * 100` µs per
    /// 100 ms period).
    pub cpu_millicores: Option<u64>,
}

/// Which limits (and which accounting) the host's cgroups can enforce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Supported {
    /// A memory limit (and peak and OOM accounting).
    pub memory: bool,
    /// A limit on the number of tasks.
    pub pids: bool,
    /// A CPU bandwidth limit.
    pub cpu: bool,
    /// CPU time used by the group (what a CPU-time limit needs).
    pub cpu_usage: bool,
}

/// The cgroup version in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Separate v1 hierarchies, one per controller or co-mounted group of them.
    V1,
    /// The unified hierarchy.
    V2,
}

/// The accounting of one sandbox cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of every task that ran in it (v1 `cpuacct.usage`, v2 `cpu.stat`).
    pub cpu_ns: Option<u64>,
    /// The user part of it (v1 `cpuacct.usage_user`, v2 `cpu.stat` `user_usec`).
    pub cpu_user_ns: Option<u64>,
    /// The system part of it (v1 `cpuacct.usage_sys`, v2 `cpu.stat` `system_usec`).
    pub cpu_system_ns: Option<u64>,
    /// Peak memory charged to it (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub memory_peak_bytes: Option<u64>,
    /// Processes killed by the OOM killer in it (v1 `memory.oom_control`, v2
    /// `memory.events`, where a group kill counts at least once).
    pub oom_kills: u64,
    /// Peak number of tasks (`pids.peak`, kernel 6.13 and later).
    pub pids_peak: Option<u64>,
    /// Forks refused at its pids limit (`pids.events` `max`).
    pub pids_refused: u64,
}

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading this process's cgroup setup or preparing the sandboxes' parent failed.
    #[error("setting up the daemon's cgroups failed")]
    Setup(#[source] SysError),
    /// A limit was asked for that no available hierarchy can enforce.
    #[error("no cgroup hierarchy for controller {0}")]
    NoHierarchy(Controller),
    /// A sandbox cgroup's name must be one path component.
    #[error("invalid sandbox cgroup name {0:?}")]
    InvalidName(String),
    /// A limit's value cannot be written to the cgroup's files.
    #[error("{limit} limit {value} is out of range")]
    OutOfRange {
        /// The limit, e.g. `"cpu"`.
        limit: &'static str,
        /// The value asked for.
        value: u64,
    },
    /// Creating a sandbox's cgroup directory (or opening it) failed.
    #[error("creating the cgroup of sandbox {name:?} failed")]
    Create {
        /// The sandbox cgroup's name.
        name: String,
        /// The failed call, naming the directory.
        #[source]
        source: SysError,
    },
    /// Writing a limit failed.
    #[error("setting the {limit} limit failed")]
    Limit {
        /// The limit, e.g. `"memory"`.
        limit: &'static str,
        /// The failed call, naming the file.
        #[source]
        source: SysError,
    },
    /// Moving a process into the cgroup failed.
    #[error("moving pid {pid} into its sandbox cgroup failed")]
    Add {
        /// The process.
        pid: i32,
        /// The failed call, naming the file.
        #[source]
        source: SysError,
    },
    /// Killing the processes of a cgroup failed.
    #[error("killing the processes of a sandbox cgroup failed")]
    Kill(#[source] SysError),
    /// Removing a cgroup directory failed for another reason than remaining tasks.
    #[error("removing a sandbox cgroup failed")]
    Remove(#[source] SysError),
    /// The cgroup still has tasks (killed ones may still be exiting): retry later.
    #[error("the cgroup still has tasks")]
    Busy,
    /// A previous daemon's cgroup kept tasks although they were killed.
    #[error("stale cgroup {} still has tasks after they were killed", .0.display())]
    StaleBusy(PathBuf),
}

/// A cgroup directory and what it carries.
#[derive(Debug, Clone)]
struct Place {
    /// The directory on the filesystem.
    path: PathBuf,
    /// The cgroup's path as `/proc/PID/cgroup` shows it, e.g. `/a/hatchery-sandboxes`.
    rel: String,
    /// The controllers of ours in its hierarchy.
    controllers: Controllers,
}

impl Place {
    fn child(&self, name: &str) -> Place {
        Place {
            path: self.path.join(name),
            rel: format!("{}/{}", self.rel.trim_end_matches('/'), name),
            controllers: self.controllers,
        }
    }
}

/// What the daemon found at start-up: where sandbox cgroups go.
///
/// ```no_run
/// use hatchery::limits::cgroup::{CgroupLimits, Cgroups};
/// let cgroups = Cgroups::discover()?;
/// let stale = cgroups.remove_stale(|_| true)?;
/// let limits = CgroupLimits { memory_bytes: Some(256 << 20), ..CgroupLimits::default() };
/// let cgroup = cgroups.create("sandbox-1", &limits)?;
/// // clone3 with cgroup.clone_into_fd() (v2), or cgroup.add(pid) right after the clone.
/// # Ok::<(), hatchery::limits::cgroup::CgroupError>(())
/// ```
#[derive(Debug)]
pub struct Cgroups {
    version: CgroupVersion,
    /// The sandboxes' parent directory in each hierarchy (one on v2).
    parents: Vec<Place>,
    supported: Supported,
    ops: DirOps,
}

impl Cgroups {
    /// Discovers the cgroup setup of this process and prepares the sandboxes' parent
    /// directory: see [`Cgroups::discover_with`].
    pub fn discover() -> Result<Cgroups, CgroupError> {
        Cgroups::discover_with(&Discovery::host()?)
    }

    /// Discovers the cgroup setup described by `discovery`: v2 if the unified hierarchy
    /// offers at least as many of memory, pids and cpu as the v1 hierarchies do, else v1
    /// (memory, pids, cpu, cpuacct). Creates the sandboxes' parent directory under the
    /// daemon's own cgroup in each hierarchy, reusing one that exists. On v2 the daemon
    /// first moves into the leaf [`DAEMON_LEAF`] and then enables the controllers in its
    /// own cgroup's and the parent's `cgroup.subtree_control`.
    ///
    /// A missing controller is not an error (see [`Cgroups::supports`]); a hierarchy that
    /// is there but cannot be written is.
    pub fn discover_with(discovery: &Discovery) -> Result<Cgroups, CgroupError> {
        Cgroups::discover_with_ops(discovery, CGROUPFS)
    }

    fn discover_with_ops(discovery: &Discovery, ops: DirOps) -> Result<Cgroups, CgroupError> {
        match discover::plan(discovery) {
            Plan::V2(own) => v2::setup(discovery, own, ops),
            Plan::V1(found) => v1::setup(discovery, found, ops),
        }
    }

    /// Which limits can be enforced here.
    pub fn supports(&self) -> Supported {
        self.supported
    }

    /// The cgroup version in use.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The sandboxes' parent directory in each hierarchy in use.
    pub fn sandboxes_dirs(&self) -> Vec<PathBuf> {
        self.parents.iter().map(|p| p.path.clone()).collect()
    }

    /// Removes the sandbox cgroups a previous daemon left (the subdirectories of the
    /// sandboxes' parent whose name `is_stale` accepts: daemons sharing a cgroup share
    /// the parent, so only the caller can tell whose sandboxes are dead): kills what is
    /// in them (v2 `cgroup.kill`; v1 `SIGKILL` to each process listed, until none is
    /// left) and removes them, waiting up to two seconds for the killed processes of each
    /// to exit. Returns how many were removed.
    pub fn remove_stale(&self, is_stale: impl Fn(&str) -> bool) -> Result<usize, CgroupError> {
        let mut names = BTreeSet::new();
        for parent in &self.parents {
            for name in subdirectories(&parent.path).map_err(CgroupError::Remove)? {
                if is_stale(&name) {
                    names.insert(name);
                }
            }
        }
        let mut removed = 0;
        let mut first_error = None;
        for name in names {
            let stale = SandboxCgroup {
                name: name.clone(),
                version: self.version,
                dirs: self
                    .parents
                    .iter()
                    .map(|parent| parent.child(&name))
                    .filter(|dir| dir.path.is_dir())
                    .collect(),
                fd: None,
                ops: self.ops,
            };
            match stale.kill_and_wait(STALE_TIMEOUT) {
                Ok(()) => removed += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Creates the cgroup of one sandbox (`name` is unique, e.g. `"sandbox-7"`) with
    /// these limits written. On v1 it is created in the memory, pids and cpuacct
    /// hierarchies always (so usage, peak and OOM kills are measurable without a limit)
    /// and in a separate cpu hierarchy only for a CPU limit. Fails, naming the file and
    /// the errno, if a limit cannot be written; then nothing is left behind.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<SandboxCgroup, CgroupError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(CgroupError::InvalidName(name.to_owned()));
        }
        let wanted = [
            (
                limits.memory_bytes,
                self.supported.memory,
                Controller::Memory,
            ),
            (limits.pids, self.supported.pids, Controller::Pids),
            (limits.cpu_millicores, self.supported.cpu, Controller::Cpu),
        ];
        for (limit, supported, controller) in wanted {
            if limit.is_some() && !supported {
                return Err(CgroupError::NoHierarchy(controller));
            }
        }
        let mut cgroup = SandboxCgroup {
            name: name.to_owned(),
            version: self.version,
            dirs: Vec::new(),
            fd: None,
            ops: self.ops,
        };
        for parent in &self.parents {
            let c = parent.controllers;
            let needed = self.version == CgroupVersion::V2
                || c.has(Controller::Memory)
                || c.has(Controller::Pids)
                || c.has(Controller::Cpuacct)
                || (c.has(Controller::Cpu) && limits.cpu_millicores.is_some());
            if !needed {
                continue;
            }
            let dir = parent.child(name);
            if let Err(e) = (self.ops.mkdir)(&dir.path) {
                let _ = cgroup.remove();
                return Err(CgroupError::Create {
                    name: name.to_owned(),
                    source: SysError::from_io("mkdir", Some(&dir.path), &e),
                });
            }
            cgroup.dirs.push(dir);
        }
        if let Err(e) = cgroup.prepare(limits) {
            let _ = cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }
}
