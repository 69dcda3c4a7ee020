//! Where a sandbox's setup spends its time. The init notes the moment each part of its
//! setup ends, in microseconds after the zygote began to clone it (a warm-pool sandbox:
//! after it received its request), and its report of the exec carries them; the zygote
//! logs them at debug level (`RUST_LOG=hatchery=debug`), and `benches/steps.sh` sums
//! them over many spawns. Noting costs a `clock_gettime` (vDSO, no system call) per mark.
//!
//! The marks live in statics: the init inherits the zygote's origin with its copy of
//! the zygote's memory, and the workload, which shares the init's memory until its
//! `execve`, notes its own marks where the init reads them.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::sys;

/// The end of one part of a sandbox's setup, in the order a fresh sandbox reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Mark {
    /// The init runs: the zygote's `clone3` and the init's first moment on a CPU.
    Running,
    /// Signal dispositions reset and the forwarded signals held.
    SignalsHeld,
    /// The zygote has written the id maps.
    IdMaps,
    /// The sandbox's uid and gid taken, the parent-death signal armed.
    UserIds,
    /// Mounts private, the scratch root pivoted to.
    RootScratch,
    /// The host's directories bound into the new root.
    HostDirectories,
    /// `/proc` and `/tmp` mounted.
    ProcAndTmp,
    /// `/dev` built.
    Dev,
    /// The request's binds made.
    Binds,
    /// The new root pivoted to.
    RootSwapped,
    /// The old root detached (`umount2`, an RCU grace period).
    OldRootDetached,
    /// The root read-only; hostname and loopback set.
    HostnameAndLoopback,
    /// The bounding set emptied, the securebits locked.
    BoundingSet,
    /// Every capability dropped, `no_new_privs` set and both checked.
    PrivilegesDropped,
    /// A warm-pool sandbox's request and stdio in place.
    HandedOver,
    /// The per-request steps done: working directory, session, rlimits (and the network).
    RequestSteps,
    /// The workload runs (started by `clone(CLONE_VM | CLONE_VFORK)`).
    WorkloadRunning,
    /// The workload's seccomp filter installed.
    Filtered,
    /// The workload's `execve` done (its memory released to the init).
    Execed,
}

/// How many marks there are.
const MARKS: usize = Mark::Execed as usize + 1;

impl Mark {
    const ALL: [Mark; MARKS] = [
        Mark::Running,
        Mark::SignalsHeld,
        Mark::IdMaps,
        Mark::UserIds,
        Mark::RootScratch,
        Mark::HostDirectories,
        Mark::ProcAndTmp,
        Mark::Dev,
        Mark::Binds,
        Mark::RootSwapped,
        Mark::OldRootDetached,
        Mark::HostnameAndLoopback,
        Mark::BoundingSet,
        Mark::PrivilegesDropped,
        Mark::HandedOver,
        Mark::RequestSteps,
        Mark::WorkloadRunning,
        Mark::Filtered,
        Mark::Execed,
    ];

    /// The mark's name in the log and in `benches/steps.sh`.
    pub fn name(self) -> &'static str {
        match self {
            Mark::Running => "clone",
            Mark::SignalsHeld => "signals",
            Mark::IdMaps => "id maps",
            Mark::UserIds => "user ids",
            Mark::RootScratch => "scratch root",
            Mark::HostDirectories => "host dirs",
            Mark::ProcAndTmp => "proc+tmp",
            Mark::Dev => "dev",
            Mark::Binds => "binds",
            Mark::RootSwapped => "pivot",
            Mark::OldRootDetached => "umount old root",
            Mark::HostnameAndLoopback => "hostname+lo",
            Mark::BoundingSet => "bounding set",
            Mark::PrivilegesDropped => "privileges",
            Mark::HandedOver => "handover",
            Mark::RequestSteps => "request steps",
            Mark::WorkloadRunning => "start workload",
            Mark::Filtered => "seccomp",
            Mark::Execed => "execve",
        }
    }
}

/// When the clock started, in nanoseconds of `CLOCK_MONOTONIC`.
static ORIGIN: AtomicU64 = AtomicU64::new(0);
/// Microseconds after the origin at which each mark was reached, plus one (0: not yet).
static AT: [AtomicU32; MARKS] = [const { AtomicU32::new(0) }; MARKS];

/// Starts the clock: in the zygote just before it clones a sandbox, in a warm-pool
/// sandbox's init when it receives its request. Forgets the marks of an earlier start.
pub fn start() {
    for at in &AT {
        at.store(0, Ordering::Relaxed);
    }
    ORIGIN.store(sys::monotonic_ns(), Ordering::Relaxed);
}

/// Notes that `mark` is reached now.
pub fn mark(mark: Mark) {
    let since = sys::monotonic_ns().saturating_sub(ORIGIN.load(Ordering::Relaxed));
    let us = u32::try_from(since / 1000).unwrap_or(u32::MAX - 1);
    AT[mark as usize].store(us + 1, Ordering::Relaxed);
}

/// The marks reached since the clock started, in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline(Vec<(Mark, u32)>);

impl Timeline {
    /// The marks noted so far in this process.
    pub fn noted() -> Timeline {
        let mut marks: Vec<(Mark, u32)> = Mark::ALL
            .iter()
            .filter_map(|&mark| match AT[mark as usize].load(Ordering::Relaxed) {
                0 => None,
                at => Some((mark, at - 1)),
            })
            .collect();
        marks.sort_by_key(|&(_, at)| at);
        Timeline(marks)
    }
}

/// `clone 180, signals 12, ...`: how long each part took, in microseconds.
impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = 0;
        for (i, &(mark, at)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", mark.name(), at.saturating_sub(previous))?;
            previous = at;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mark_is_listed_once_in_order() {
        for (i, mark) in Mark::ALL.iter().enumerate() {
            assert_eq!(*mark as usize, i);
        }
    }

    #[test]
    fn the_timeline_shows_each_part_as_a_duration() {
        let timeline = Timeline(vec![(Mark::Running, 150), (Mark::SignalsHeld, 170)]);
        assert_eq!(timeline.to_string(), "clone 150, signals 20");
    }

    #[test]
    fn marks_come_back_in_time_order() {
        start();
        mark(Mark::IdMaps);
        // Marks in the same microsecond would come back in the order of `Mark::ALL`.
        std::thread::sleep(std::time::Duration::from_millis(2));
        mark(Mark::Running);
        let Timeline(marks) = Timeline::noted();
        assert_eq!(
            marks.iter().map(|&(mark, _)| mark).collect::<Vec<_>>(),
            [Mark::IdMaps, Mark::Running]
        );
        assert!(marks[0].1 < marks[1].1);
    }
}
