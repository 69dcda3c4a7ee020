//! Resource limits of a sandbox and why a sandbox ended: wire types.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits that hold for the whole process tree of a sandbox. `None` means the daemon's
/// default (see `hatchery serve --default-*`; a daemon has defaults for pids and the
/// `/tmp` size and inodes unless its operator removed them), or no limit where the daemon
/// has no default. A request that wants no limit where a default exists says so in
/// [`Limits::unlimited`], and the daemon must allow it.
///
/// Memory and CPU bandwidth go through a cgroup per sandbox; processes are bounded by
/// `RLIMIT_NPROC` in the sandbox's own user namespace (and by its cgroup too, when it has
/// one); CPU time and wall time are enforced by the daemon (CPU time read from the
/// sandbox's cgroup); file size and open files are rlimits of every process; the `/tmp`
/// size and inode count are options of its tmpfs (`/dev/shm` gets the same). Core dumps
/// are always off.
///
/// ```
/// use std::time::Duration;
/// use hatchery::protocol::Limits;
/// let limits = Limits {
///     memory_bytes: Some(256 << 20),
///     pids: Some(64),
///     wall_time_ms: Some(10_000),
///     ..Limits::default()
/// };
/// assert_eq!(limits.wall_time(), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory of the whole sandbox, in bytes; swap is off for it, and exceeding it kills
    /// the whole sandbox (`EndReason::OomKilled`).
    pub memory_bytes: Option<u64>,
    /// Processes and threads alive at once in the sandbox.
    pub pids: Option<u64>,
    /// CPU bandwidth in thousandths of a CPU (1000 = one full CPU).
    pub cpu_millicores: Option<u64>,
    /// CPU time (user + system) of the whole tree, in milliseconds.
    pub cpu_time_ms: Option<u64>,
    /// Wall-clock time from the spawn request, in milliseconds.
    pub wall_time_ms: Option<u64>,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`: `SIGXFSZ` past it).
    pub file_size_bytes: Option<u64>,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Size of the sandbox's `/tmp` (and `/dev/shm`) tmpfs, in bytes.
    pub tmp_size_bytes: Option<u64>,
    /// Inodes of the sandbox's `/tmp` (and `/dev/shm`) tmpfs.
    pub tmp_inodes: Option<u64>,
    /// Limits this request asks to run without, although the daemon has a default for
    /// them (`hatchery run --pids unlimited`). The daemon refuses the request unless its
    /// operator allowed that (`hatchery serve --allow-unlimited pids`) and no maximum
    /// applies. A kind listed here must not also have a value. In a verdict, the
    /// defaults that were lifted.
    #[serde(default)]
    pub unlimited: LimitSet,
}

impl Limits {
    /// The wall-time limit as a duration.
    pub fn wall_time(&self) -> Option<Duration> {
        self.wall_time_ms.map(Duration::from_millis)
    }

    /// The CPU-time limit as a duration.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.cpu_time_ms.map(Duration::from_millis)
    }

    /// The limits that are set, by kind.
    pub fn set(&self) -> Vec<Limit> {
        Limit::ALL
            .into_iter()
            .filter(|&kind| self.get(kind).is_some())
            .collect()
    }

    /// One limit by kind.
    pub fn get(&self, kind: Limit) -> Option<u64> {
        match kind {
            Limit::Memory => self.memory_bytes,
            Limit::Pids => self.pids,
            Limit::Cpu => self.cpu_millicores,
            Limit::CpuTime => self.cpu_time_ms,
            Limit::WallTime => self.wall_time_ms,
            Limit::FileSize => self.file_size_bytes,
            Limit::OpenFiles => self.open_files,
            Limit::TmpSize => self.tmp_size_bytes,
            Limit::TmpInodes => self.tmp_inodes,
        }
    }

    /// Sets one limit by kind.
    pub fn set_limit(&mut self, kind: Limit, value: Option<u64>) {
        let slot = match kind {
            Limit::Memory => &mut self.memory_bytes,
            Limit::Pids => &mut self.pids,
            Limit::Cpu => &mut self.cpu_millicores,
            Limit::CpuTime => &mut self.cpu_time_ms,
            Limit::WallTime => &mut self.wall_time_ms,
            Limit::FileSize => &mut self.file_size_bytes,
            Limit::OpenFiles => &mut self.open_files,
            Limit::TmpSize => &mut self.tmp_size_bytes,
            Limit::TmpInodes => &mut self.tmp_inodes,
        };
        *slot = value;
    }
}

/// A set of kinds of limit, e.g. those a request asks to run without. On the wire and in
/// JSON, a list of [`Limit`]s.
///
/// ```
/// use hatchery::protocol::{Limit, LimitSet};
/// let set: LimitSet = [Limit::Pids, Limit::TmpSize].into_iter().collect();
/// assert!(set.contains(Limit::Pids) && !set.contains(Limit::Memory));
/// assert_eq!(set.iter().collect::<Vec<_>>(), [Limit::Pids, Limit::TmpSize]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LimitSet(u16);

impl LimitSet {
    /// The empty set.
    pub const EMPTY: LimitSet = LimitSet(0);

    /// Every kind of limit.
    pub fn all() -> LimitSet {
        Limit::ALL.into_iter().collect()
    }

    fn bit(kind: Limit) -> u16 {
        1 << (kind as u16)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Limit) -> bool {
        self.0 & LimitSet::bit(kind) != 0
    }

    /// Adds `kind` to the set.
    pub fn insert(&mut self, kind: Limit) {
        self.0 |= LimitSet::bit(kind);
    }

    /// Removes `kind` from the set.
    pub fn remove(&mut self, kind: Limit) {
        self.0 &= !LimitSet::bit(kind);
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`Limit::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Limit> {
        Limit::ALL
            .into_iter()
            .filter(move |&kind| self.contains(kind))
    }
}

impl FromIterator<Limit> for LimitSet {
    fn from_iter<I: IntoIterator<Item = Limit>>(kinds: I) -> LimitSet {
        let mut set = LimitSet::EMPTY;
        for kind in kinds {
            set.insert(kind);
        }
        set
    }
}

impl Serialize for LimitSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first: postcard writes it before the items.
        let mut seq = serializer.serialize_seq(Some(self.0.count_ones() as usize))?;
        for kind in self.iter() {
            seq.serialize_element(&kind)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for LimitSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<LimitSet, D::Error> {
        struct Kinds;
        impl<'de> serde::de::Visitor<'de> for Kinds {
            type Value = LimitSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of limit kinds")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<LimitSet, A::Error> {
                let mut set = LimitSet::EMPTY;
                // At most one of each kind: a longer list is refused before it is read.
                for _ in 0..=Limit::ALL.len() {
                    match seq.next_element::<Limit>()? {
                        Some(kind) => set.insert(kind),
                        None => return Ok(set),
                    }
                }
                Err(serde::de::Error::invalid_length(
                    Limit::ALL.len() + 1,
                    &self,
                ))
            }
        }
        deserializer.deserialize_seq(Kinds)
    }
}

/// A kind of limit, to name one in errors, in the verdict's list of skipped limits, and
/// on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Limit {
    /// [`Limits::memory_bytes`]
    Memory,
    /// [`Limits::pids`]
    Pids,
    /// [`Limits::cpu_millicores`]
    Cpu,
    /// [`Limits::cpu_time_ms`]
    CpuTime,
    /// [`Limits::wall_time_ms`]
    WallTime,
    /// [`Limits::file_size_bytes`]
    FileSize,
    /// [`Limits::open_files`]
    OpenFiles,
    /// [`Limits::tmp_size_bytes`]
    TmpSize,
    /// [`Limits::tmp_inodes`]
    TmpInodes,
}

impl Limit {
    /// Every kind, in declaration order.
    pub const ALL: [Limit; 9] = [
        Limit::Memory,
        Limit::Pids,
        Limit::Cpu,
        Limit::CpuTime,
        Limit::WallTime,
        Limit::FileSize,
        Limit::OpenFiles,
        Limit::TmpSize,
        Limit::TmpInodes,
    ];

    /// The name used on the command line and in JSON, e.g. `"cpu-time"`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Memory => "memory",
            Limit::Pids => "pids",
            Limit::Cpu => "cpus",
            Limit::CpuTime => "cpu-time",
            Limit::WallTime => "wall-time",
            Limit::FileSize => "file-size",
            Limit::OpenFiles => "nofile",
            Limit::TmpSize => "tmp-size",
            Limit::TmpInodes => "tmp-inodes",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// The workload exited by itself.
    Exited,
    /// The workload was killed by a signal (its own doing, or one forwarded to it).
    Signaled,
    /// The sandbox exceeded its memory limit and was killed.
    OomKilled,
    /// The wall-time limit ran out and the daemon killed the sandbox.
    WallTimeout,
    /// The CPU-time limit ran out and the daemon killed the sandbox.
    CpuTimeout,
    /// The client killed it (`ChildProcess::kill`, or `SIGKILL` through `signal`).
    KilledByClient,
    /// The daemon shut down and killed it.
    DaemonShutdown,
}

impl EndReason {
    /// The name used in JSON, e.g. `"wall_timeout"`.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::Signaled => "signaled",
            EndReason::OomKilled => "oom_killed",
            EndReason::WallTimeout => "wall_timeout",
            EndReason::CpuTimeout => "cpu_timeout",
            EndReason::KilledByClient => "killed_by_client",
            EndReason::DaemonShutdown => "daemon_shutdown",
        }
    }
}
