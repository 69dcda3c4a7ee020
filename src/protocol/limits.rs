//! Resource limits of a sandbox and why a sandbox ended: wire types.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits that hold for the whole process tree of a sandbox. `None` means no limit (or
/// the daemon's default, see `hatchery serve --default-*`).
///
/// Memory, processes and CPU bandwidth go through a cgroup per sandbox; CPU time and wall
/// time are enforced by the daemon (CPU time read from the sandbox's cgroup); file size
/// and open files are rlimits of every process; the `/tmp` size and inode count are
/// options of its tmpfs (`/dev/shm` gets the same). Core dumps are always off.
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
