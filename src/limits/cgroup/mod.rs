//! Zygote side: one cgroup per sandbox, nested under the daemon's own cgroup, with the
//! limits that must hold for the whole process tree (memory, pids, CPU). cgroup v2 where
//! the kernel offers the controllers there, v1 hierarchies otherwise.
//!
//! [`Cgroups::discover`] runs once at daemon start-up: it reads `/proc/self/cgroup` and
//! `/proc/self/mountinfo`, picks the version that carries more of the controllers we
//! need, and creates the daemon's parent directory for sandboxes (`hatchery-sandboxes`)
//! in each hierarchy. [`Cgroups::create`] then makes one [`SandboxCgroup`] per sandbox,
//! with its limits written before the sandbox is cloned into it (v2 `CLONE_INTO_CGROUP`)
//! or moved into it ([`SandboxCgroup::add`]).
//!
//! Everything here reads and writes files; the filesystem root, the text of
//! `/proc/self/cgroup` and of the mountinfo are injectable ([`Discovery`]) so that the
//! v2 path can be tested against a fake tree on a machine that only has v1 controllers.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::sys::{self, Context, SysError};

/// The directory, under the daemon's own cgroup, that holds the sandboxes' cgroups.
pub const SANDBOXES_DIR: &str = "hatchery-sandboxes";

/// The v2 leaf the daemon moves itself into, so that its own cgroup has no processes and
/// may enable controllers for its children ("no internal processes").
pub const DAEMON_LEAF: &str = "hatchery-daemon";

/// The CFS period, in microseconds, that CPU quotas are expressed against.
pub const CPU_PERIOD_US: u64 = 100_000;

/// How many times [`SandboxCgroup::kill`] rereads `cgroup.procs` on v1 for processes
/// forked while it was signalling the others.
const KILL_ROUNDS: usize = 8;

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

/// Where [`Cgroups::discover_with`] looks, and what it names its directories.
///
/// [`Discovery::host`] describes this process on this host; tests build one by hand
/// with the text of fake `/proc` files and a temporary directory as `root`.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The text of `/proc/self/cgroup`.
    pub proc_self_cgroup: String,
    /// The text of `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// Prepended to every mount point (`/` on the host).
    pub root: PathBuf,
    /// The parent directory for sandboxes (default [`SANDBOXES_DIR`]).
    pub sandboxes_dir: String,
    /// The process that moves into [`DAEMON_LEAF`] on v2 (default: this one).
    pub pid: u32,
}

impl Discovery {
    /// The cgroup setup of this process, as the kernel shows it.
    pub fn host() -> Result<Discovery, CgroupError> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .op_path("read", path)
                .map_err(CgroupError::Setup)
        };
        Ok(Discovery {
            proc_self_cgroup: read("/proc/self/cgroup")?,
            mountinfo: read("/proc/self/mountinfo")?,
            root: PathBuf::from("/"),
            sandboxes_dir: SANDBOXES_DIR.to_owned(),
            pid: std::process::id(),
        })
    }
}

/// The two directory operations in which cgroupfs differs from a plain filesystem: its
/// `mkdir` populates the control files, its `rmdir` removes a directory full of them.
/// Tests swap in functions that imitate that on a temporary directory.
#[derive(Debug, Clone, Copy)]
struct DirOps {
    mkdir: fn(&Path) -> std::io::Result<()>,
    rmdir: fn(&Path) -> std::io::Result<()>,
}

fn real_mkdir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir(path)
}

fn real_rmdir(path: &Path) -> std::io::Result<()> {
    std::fs::remove_dir(path)
}

const CGROUPFS: DirOps = DirOps {
    mkdir: real_mkdir,
    rmdir: real_rmdir,
};

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

/// This process's cgroup in one hierarchy, found from `/proc/self/cgroup` and mountinfo.
type Found = Place;

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
        match plan(discovery) {
            Plan::V2(own) => setup_v2(discovery, own, ops),
            Plan::V1(found) => setup_v1(discovery, found, ops),
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

/// The version chosen, and this process's cgroups in it.
enum Plan {
    V2(Found),
    V1(Vec<Found>),
}

/// Chooses v2 if the unified hierarchy offers at least as many of memory, pids and cpu
/// as the v1 hierarchies do (a controller is in one hierarchy at a time), else v1.
fn plan(discovery: &Discovery) -> Plan {
    let own = parse_proc_cgroup(&discovery.proc_self_cgroup);
    let mounts = parse_mountinfo(&discovery.mountinfo);
    let v1 = find_v1(discovery, &own, &mounts);
    let v1_count = v1
        .iter()
        .map(|found| found.controllers.limit_count())
        .sum::<usize>();
    match find_v2(discovery, &own, &mounts) {
        Some(v2) if v2.controllers.limit_count() >= v1_count => Plan::V2(v2),
        _ => Plan::V1(v1),
    }
}

/// This process's v2 cgroup, if a cgroup2 mount shows it.
fn find_v2(discovery: &Discovery, own: &[ProcCgroup], mounts: &[Mount]) -> Option<Found> {
    let line = own
        .iter()
        .find(|line| line.id == 0 && line.controllers.is_empty())?;
    // A daemon started again from inside the leaf of a previous one.
    let rel = match line.path.strip_suffix(&format!("/{DAEMON_LEAF}")) {
        Some("") => "/",
        Some(parent) => parent,
        None => &line.path,
    };
    let path = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .find_map(|m| resolve(&discovery.root, m, rel))?;
    let mut controllers = Controllers::default();
    let available = std::fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
    for name in available.split_whitespace() {
        for c in [Controller::Memory, Controller::Pids, Controller::Cpu] {
            if name == c.name() {
                controllers.add(c);
            }
        }
    }
    Some(Found {
        path,
        rel: rel.to_owned(),
        controllers,
    })
}

/// This process's cgroup in each v1 hierarchy carrying one of our controllers.
fn find_v1(discovery: &Discovery, own: &[ProcCgroup], mounts: &[Mount]) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for c in Controller::ALL {
        let Some(line) = own
            .iter()
            .find(|line| line.controllers.iter().any(|name| name == c.name()))
        else {
            continue;
        };
        let Some(path) = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == c.name()))
            .find_map(|m| resolve(&discovery.root, m, &line.path))
        else {
            continue;
        };
        // Co-mounted controllers (`cpu,cpuacct`) share one directory.
        match found.iter_mut().find(|f| f.path == path) {
            Some(f) => f.controllers.add(c),
            None => {
                let mut controllers = Controllers::default();
                controllers.add(c);
                found.push(Found {
                    path,
                    rel: line.path.clone(),
                    controllers,
                });
            }
        }
    }
    found
}

/// `mkdir` that accepts an existing directory: a second daemon start reuses it.
fn ensure_dir(ops: DirOps, path: &Path) -> Result<(), CgroupError> {
    match (ops.mkdir)(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(CgroupError::Setup(
            SysError::from_io("mkdir", Some(path), &e),
        )),
        _ => Ok(()),
    }
}

fn setup_v2(discovery: &Discovery, own: Found, ops: DirOps) -> Result<Cgroups, CgroupError> {
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

fn setup_v1(discovery: &Discovery, found: Vec<Found>, ops: DirOps) -> Result<Cgroups, CgroupError> {
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

/// The cgroup of one sandbox, in every hierarchy in use.
///
/// Dropping it leaves the directories in place: [`SandboxCgroup::remove`] may have to be
/// retried while killed tasks exit, which a destructor cannot do.
#[derive(Debug)]
pub struct SandboxCgroup {
    name: String,
    version: CgroupVersion,
    dirs: Vec<Place>,
    /// v2: the directory, for `CLONE_INTO_CGROUP`.
    fd: Option<OwnedFd>,
    ops: DirOps,
}

impl SandboxCgroup {
    /// The name it was created with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// v2 only: an `O_DIRECTORY` fd of the cgroup for `clone3`'s `CLONE_INTO_CGROUP`.
    pub fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Moves `pid` (the sandbox init, before it starts its setup) into the cgroup in
    /// every hierarchy (a write to `cgroup.procs`). Used on v1, and on v2 when
    /// `CLONE_INTO_CGROUP` is not used.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            write_value(&dir.path.join("cgroup.procs"), &pid.to_string())
                .map_err(|source| CgroupError::Add { pid, source })?;
        }
        Ok(())
    }

    /// Current usage, for the daemon's watchdog and the verdict. A file that cannot be
    /// read gives `None` (or no OOM kills).
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for dir in &self.dirs {
            let c = dir.controllers;
            let file = |name: &str| dir.path.join(name);
            match self.version {
                CgroupVersion::V1 => {
                    if c.has(Controller::Cpuacct) {
                        usage.cpu_ns = read_u64(&file("cpuacct.usage"));
                        usage.cpu_user_ns = read_u64(&file("cpuacct.usage_user"));
                        usage.cpu_system_ns = read_u64(&file("cpuacct.usage_sys"));
                    }
                    if c.has(Controller::Memory) {
                        usage.memory_peak_bytes = read_u64(&file("memory.max_usage_in_bytes"));
                        usage.oom_kills =
                            read_keyed(&file("memory.oom_control"), "oom_kill").unwrap_or(0);
                    }
                }
                CgroupVersion::V2 => {
                    let stat = file("cpu.stat");
                    let ns = |key: &str| read_keyed(&stat, key).map(|us| us.saturating_mul(1000));
                    usage.cpu_ns = ns("usage_usec");
                    usage.cpu_user_ns = ns("user_usec");
                    usage.cpu_system_ns = ns("system_usec");
                    if c.has(Controller::Memory) {
                        usage.memory_peak_bytes = read_u64(&file("memory.peak"));
                        let events = file("memory.events");
                        let kills = read_keyed(&events, "oom_kill").unwrap_or(0);
                        let group_kills = read_keyed(&events, "oom_group_kill").unwrap_or(0);
                        usage.oom_kills = kills.max(group_kills);
                    }
                }
            }
            if c.has(Controller::Pids) {
                usage.pids_peak = read_u64(&file("pids.peak"));
            }
        }
        usage
    }

    /// Kills every process in the cgroup: v2 `cgroup.kill` (kernel 5.14 and later);
    /// otherwise `SIGKILL` to each process listed in `cgroup.procs`, rereading it for
    /// processes forked meanwhile. Does not wait for them to exit.
    pub fn kill(&self) -> Result<(), CgroupError> {
        if self.version == CgroupVersion::V2 {
            if let Some(dir) = self.dirs.first() {
                match write_value(&dir.path.join("cgroup.kill"), "1") {
                    Err(e) if e.errno() == Errno::ENOENT => {}
                    result => return result.map_err(CgroupError::Kill),
                }
            }
        }
        self.kill_listed()
    }

    /// Signals the processes listed in `cgroup.procs` until a reading shows none that
    /// was not signalled already. A process with `SIGKILL` pending cannot fork, so once
    /// a reading shows no new one, every process left is dying.
    ///
    /// A process that cannot be signalled does not spare the others: the first error is
    /// returned after all were tried.
    fn kill_listed(&self) -> Result<(), CgroupError> {
        let mut signalled = HashSet::new();
        let mut first_error = None;
        for _ in 0..KILL_ROUNDS {
            let mut new = 0;
            for dir in &self.dirs {
                let procs = dir.path.join("cgroup.procs");
                let text = match std::fs::read_to_string(&procs) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    result => result.op_path("read", &procs).map_err(CgroupError::Kill)?,
                };
                for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    if signalled.insert(pid) {
                        new += 1;
                        if let Err(e) = kill_member(pid, self.version, dir) {
                            first_error.get_or_insert(CgroupError::Kill(e));
                        }
                    }
                }
            }
            if new == 0 {
                break;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the cgroup directories (and any below them). A directory that still has
    /// tasks gives [`CgroupError::Busy`], so the caller retries later; one already gone
    /// counts as removed.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut busy = false;
        for dir in &self.dirs {
            match remove_tree(self.ops, &dir.path) {
                Ok(()) => {}
                Err(e) if e.errno() == Errno::EBUSY => busy = true,
                Err(e) => return Err(CgroupError::Remove(e)),
            }
        }
        if busy {
            return Err(CgroupError::Busy);
        }
        Ok(())
    }

    /// The cgroup's directories (one per hierarchy), for logs and tests.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|dir| dir.path.clone()).collect()
    }

    /// Kills, then retries the removal until it succeeds or `timeout` passes.
    fn kill_and_wait(&self, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        loop {
            self.kill()?;
            match self.remove() {
                Err(CgroupError::Busy) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(CgroupError::Busy) => {
                    let path = self
                        .dirs
                        .first()
                        .map(|d| d.path.clone())
                        .unwrap_or_default();
                    return Err(CgroupError::StaleBusy(path));
                }
                result => return result,
            }
        }
    }

    /// Writes the limits (only those given) and, on v2, opens the directory.
    fn prepare(&mut self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let cpu_quota = match limits.cpu_millicores {
            Some(m) => Some(m.checked_mul(CPU_PERIOD_US / 1000).ok_or(
                CgroupError::OutOfRange {
                    limit: "cpu",
                    value: m,
                },
            )?),
            None => None,
        };
        for dir in &self.dirs {
            let c = dir.controllers;
            if c.has(Controller::Memory) {
                self.write_memory(dir, limits.memory_bytes)
                    .map_err(|source| CgroupError::Limit {
                        limit: "memory",
                        source,
                    })?;
            }
            if let (true, Some(pids)) = (c.has(Controller::Pids), limits.pids) {
                write_value(&dir.path.join("pids.max"), &pids.to_string()).map_err(|source| {
                    CgroupError::Limit {
                        limit: "pids",
                        source,
                    }
                })?;
            }
            if let (true, Some(quota)) = (c.has(Controller::Cpu), cpu_quota) {
                self.write_cpu(dir, quota)
                    .map_err(|source| CgroupError::Limit {
                        limit: "cpu",
                        source,
                    })?;
            }
        }
        if self.version == CgroupVersion::V2 {
            if let Some(dir) = self.dirs.first() {
                let fd = nix::fcntl::open(
                    &dir.path,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .op_path("open", &dir.path)
                .map_err(|source| CgroupError::Create {
                    name: self.name.clone(),
                    source,
                })?;
                self.fd = Some(fd);
            }
        }
        Ok(())
    }

    fn write_memory(&self, dir: &Place, bytes: Option<u64>) -> Result<(), SysError> {
        let file = |name: &str| dir.path.join(name);
        match self.version {
            CgroupVersion::V1 => {
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
            }
            CgroupVersion::V2 => {
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
            }
        }
        Ok(())
    }

    fn write_cpu(&self, dir: &Place, quota_us: u64) -> Result<(), SysError> {
        match self.version {
            CgroupVersion::V1 => {
                write_value(
                    &dir.path.join("cpu.cfs_period_us"),
                    &CPU_PERIOD_US.to_string(),
                )?;
                write_value(&dir.path.join("cpu.cfs_quota_us"), &quota_us.to_string())
            }
            CgroupVersion::V2 => write_value(
                &dir.path.join("cpu.max"),
                &format!("{quota_us} {CPU_PERIOD_US}"),
            ),
        }
    }
}

/// Sends `SIGKILL` to `pid` if it is (still) a member of `dir`. The process is pinned by
/// an fd of its `/proc` directory first, so a pid reused by an unrelated process between
/// the reading of `cgroup.procs` and the signal is never hit.
fn kill_member(pid: i32, version: CgroupVersion, dir: &Place) -> Result<(), SysError> {
    let proc_dir = format!("/proc/{pid}");
    let handle = match nix::fcntl::open(
        proc_dir.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::ENOENT | Errno::ESRCH) => return Ok(()),
        result => result.op_path("open", &proc_dir)?,
    };
    let membership = match nix::fcntl::openat(
        &handle,
        "cgroup",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::ENOENT | Errno::ESRCH) => return Ok(()),
        result => result.op_path("open", format!("{proc_dir}/cgroup"))?,
    };
    let mut text = String::new();
    match std::fs::File::from(membership).read_to_string(&mut text) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        result => result.op_path("read", format!("{proc_dir}/cgroup"))?,
    };
    if !is_member(&text, version, dir) {
        return Ok(());
    }
    match sys::pidfd_send_signal(handle.as_fd(), libc::SIGKILL) {
        Err(e) if e.errno() == Errno::ESRCH => Ok(()),
        result => result,
    }
}

/// Whether `/proc/PID/cgroup` text places the process in `dir` (or below it).
fn is_member(proc_cgroup: &str, version: CgroupVersion, dir: &Place) -> bool {
    let controller = dir.controllers.iter().next();
    parse_proc_cgroup(proc_cgroup).iter().any(|line| {
        let right_line = match version {
            CgroupVersion::V2 => line.id == 0 && line.controllers.is_empty(),
            CgroupVersion::V1 => {
                controller.is_some_and(|c| line.controllers.iter().any(|n| n == c.name()))
            }
        };
        right_line
            && (line.path == dir.rel
                || line
                    .path
                    .strip_prefix(&dir.rel)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// Removes `path` and every cgroup below it, deepest first. Gone already is fine.
fn remove_tree(ops: DirOps, path: &Path) -> Result<(), SysError> {
    let children = match subdirectories(path) {
        Err(e) if e.errno() == Errno::ENOENT => return Ok(()),
        result => result?,
    };
    for child in children {
        remove_tree(ops, &path.join(child))?;
    }
    match (ops.rmdir)(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        result => result.op_path("rmdir", path),
    }
}

/// The names of the directories in `path` (child cgroups, on cgroupfs).
fn subdirectories(path: &Path) -> Result<Vec<String>, SysError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).op_path("read_dir", path)? {
        let entry = entry.op_path("read_dir", path)?;
        if entry.file_type().op_path("stat", entry.path())?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `value` to a cgroup file in one `write` (cgroupfs takes each write as one
/// whole value), naming the file in the error.
fn write_value(path: &Path, value: &str) -> Result<(), SysError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .op_path("open", path)?;
    let written = file.write(value.as_bytes()).op_path("write", path)?;
    if written != value.len() {
        return Err(SysError::with_path("write", path, Errno::EIO));
    }
    Ok(())
}

/// A file holding one number (`max` reads as `None`).
fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file of `key value` lines.
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed_value(&std::fs::read_to_string(path).ok()?, key)
}

fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// One line of `/proc/PID/cgroup`: `hierarchy-id:controller,list:/path`.
#[derive(Debug, PartialEq, Eq)]
struct ProcCgroup {
    id: u32,
    /// Empty for the v2 line (`0::/path`).
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let id = fields.next()?.parse().ok()?;
            let controllers = fields
                .next()?
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            let path = fields.next()?.to_owned();
            Some(ProcCgroup {
                id,
                controllers,
                path,
            })
        })
        .collect()
}

/// One line of `/proc/PID/mountinfo`, the fields used here.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    /// The directory of the filesystem mounted (a cgroup's path, for cgroupfs).
    root: String,
    point: PathBuf,
    fstype: String,
    super_options: Vec<String>,
}

/// Parses mountinfo: `id parent major:minor root point options [optional...] - fstype
/// source super-options`.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = 6 + fields.get(6..)?.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            let super_options = fields.get(dash + 3)?;
            Some(Mount {
                root: String::from_utf8_lossy(&unescape(fields.get(3)?)).into_owned(),
                point: PathBuf::from(std::ffi::OsString::from_vec(unescape(fields.get(4)?))),
                fstype: (*fstype).to_owned(),
                super_options: super_options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal.map(|d| d.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'))) {
            Some(value) if value <= 0xff => {
                out.push(value as u8);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The directory of cgroup `own` (as `/proc/self/cgroup` shows it) through `mount`,
/// under `root`; `None` if that mount does not show it.
fn resolve(root: &Path, mount: &Mount, own: &str) -> Option<PathBuf> {
    let rest = own.strip_prefix(mount.root.trim_end_matches('/'))?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut dir = root.join(mount.point.strip_prefix("/").unwrap_or(&mount.point));
    for part in rest.split('/').filter(|part| !part.is_empty()) {
        // Outside the cgroup namespace's root: not reachable through this mount.
        if part == ".." || part == "." {
            return None;
        }
        dir.push(part);
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
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

    /// `rmdir` on a fake tree: refused while the cgroup has processes or children.
    fn fake_rmdir(path: &Path) -> std::io::Result<()> {
        let procs = std::fs::read_to_string(path.join("cgroup.procs"))?;
        let has_children = std::fs::read_dir(path)?.any(|e| e.unwrap().path().is_dir());
        if !procs.trim().is_empty() || has_children {
            return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
        }
        std::fs::remove_dir_all(path)
    }

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

    const FAKE_V2: DirOps = DirOps {
        mkdir: fake_v2_mkdir,
        rmdir: fake_rmdir,
    };

    const FAKE_V1: DirOps = DirOps {
        mkdir: fake_v1_mkdir,
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

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const ALL_LIMITS: CgroupLimits = CgroupLimits {
        memory_bytes: Some(32 << 20),
        pids: Some(64),
        cpu_millicores: Some(1500),
    };

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
        assert_eq!(
            cgroup.usage(),
            Usage {
                cpu_ns: Some(1_234_000),
                cpu_user_ns: Some(1_000_000),
                cpu_system_ns: Some(234_000),
                memory_peak_bytes: Some(123_456_789),
                oom_kills: 3,
                pids_peak: Some(7),
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

    // ---- Parsing ----------------------------------------------------------------------

    #[test]
    fn proc_cgroup_lines_with_combined_controllers() {
        let text = "12:pids:/user.slice/user-1000.slice\n\
                    4:cpu,cpuacct:/user.slice\n\
                    1:name=systemd:/user.slice/session-2.scope\n\
                    0::/user.slice/session-2.scope\n";
        let lines = parse_proc_cgroup(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[1],
            ProcCgroup {
                id: 4,
                controllers: vec!["cpu".into(), "cpuacct".into()],
                path: "/user.slice".into()
            }
        );
        assert_eq!(lines[2].controllers, vec!["name=systemd".to_owned()]);
        assert_eq!(
            lines[3],
            ProcCgroup {
                id: 0,
                controllers: vec![],
                path: "/user.slice/session-2.scope".into()
            }
        );
    }

    #[test]
    fn mountinfo_lines_with_super_options() {
        let text = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 master:3 - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 /docker/abc /mnt/cgroup\\040v2 rw,relatime - cgroup2 cgroup2 rw
garbage
";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mounts[0].fstype, "cgroup");
        assert_eq!(mounts[0].super_options, vec!["rw", "memory"]);
        assert_eq!(mounts[1].super_options, vec!["rw", "cpu", "cpuacct"]);
        assert_eq!(mounts[2].root, "/docker/abc");
        assert_eq!(mounts[2].point, PathBuf::from("/mnt/cgroup v2"));
        assert_eq!(mounts[2].fstype, "cgroup2");
    }

    #[test]
    fn resolve_joins_the_mount_root_and_the_own_path() {
        let mount = |root: &str| Mount {
            root: root.into(),
            point: "/sys/fs/cgroup/memory".into(),
            fstype: "cgroup".into(),
            super_options: vec![],
        };
        let root = Path::new("/fake");
        assert_eq!(
            resolve(root, &mount("/"), "/a/b"),
            Some(PathBuf::from("/fake/sys/fs/cgroup/memory/a/b"))
        );
        assert_eq!(
            resolve(root, &mount("/"), "/"),
            Some(PathBuf::from("/fake/sys/fs/cgroup/memory"))
        );
        // A container's view: the mount shows only its own subtree.
        assert_eq!(
            resolve(root, &mount("/docker/abc"), "/docker/abc/x"),
            Some(PathBuf::from("/fake/sys/fs/cgroup/memory/x"))
        );
        assert_eq!(resolve(root, &mount("/docker/abc"), "/docker/abcd"), None);
        assert_eq!(resolve(root, &mount("/"), "/../outside"), None);
    }

    #[test]
    fn v1_oom_control_and_keyed_files() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(oom_control, "oom_kill"), Some(3));
        assert_eq!(keyed_value(oom_control, "oom_kill_disable"), Some(0));
        assert_eq!(keyed_value(oom_control, "oom"), None);
        assert_eq!(keyed_value("usage_usec 17\n", "usage_usec"), Some(17));
    }

    #[test]
    fn membership_follows_the_hierarchy_of_the_directory() {
        let mut memory = Controllers::default();
        memory.add(Controller::Memory);
        let place = Place {
            path: PathBuf::new(),
            rel: "/a/hatchery-sandboxes/sandbox-1".into(),
            controllers: memory,
        };
        let inside = "4:memory:/a/hatchery-sandboxes/sandbox-1\n1:cpu:/\n0::/\n";
        let below = "4:memory:/a/hatchery-sandboxes/sandbox-1/x\n0::/\n";
        let sibling = "4:memory:/a/hatchery-sandboxes/sandbox-10\n0::/\n";
        let other_hierarchy = "4:pids:/a/hatchery-sandboxes/sandbox-1\n4:memory:/\n";
        assert!(is_member(inside, CgroupVersion::V1, &place));
        assert!(is_member(below, CgroupVersion::V1, &place));
        assert!(!is_member(sibling, CgroupVersion::V1, &place));
        assert!(!is_member(other_hierarchy, CgroupVersion::V1, &place));
        let v2 = "0::/a/hatchery-sandboxes/sandbox-1\n";
        assert!(is_member(v2, CgroupVersion::V2, &place));
        assert!(!is_member(inside, CgroupVersion::V2, &place));
    }

    // ---- The v1 path, on a fake tree ---------------------------------------------------

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
        assert_eq!(
            cgroup.usage(),
            Usage {
                cpu_ns: Some(987_654_321),
                cpu_user_ns: Some(900_000_000),
                cpu_system_ns: Some(87_654_321),
                memory_peak_bytes: Some(4096),
                oom_kills: 3,
                pids_peak: Some(5),
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
        use super::super::*;
        use super::read;
        use std::os::unix::process::ExitStatusExt;
        use std::process::{Child, Command, Stdio};
        use std::sync::atomic::{AtomicUsize, Ordering};

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
