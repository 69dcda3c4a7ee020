//! Where a sandbox's setup spends its time. Each step of the recipe
//! ([`SetupStep`], the vocabulary its failures use too) notes the moment it ends, in
//! microseconds after the zygote began to clone the sandbox (a warm-pool sandbox: after
//! it received its request), and the init's report of the exec carries them; the
//! zygote logs them at debug level (`RUST_LOG=hatchery=debug`, "sandbox running; its
//! setup, in µs"), and `benches/steps.sh` sums them over many spawns. Noting costs a
//! `clock_gettime` (vDSO, no system call) per step.
//!
//! Runs in the zygote (the clock's start), the sandbox init and the workload. The
//! marks live in statics: the init inherits the zygote's origin with its copy of the
//! zygote's memory, and the workload, which shares the init's memory until its
//! `execve`, notes its own steps where the init reads them.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::protocol::SetupStep;
use crate::sys;

/// How many steps there are.
const STEPS: usize = SetupStep::ALL.len();

/// When the clock started, in nanoseconds of `CLOCK_MONOTONIC`.
static ORIGIN: AtomicU64 = AtomicU64::new(0);
/// Microseconds after the origin at which each step ended, plus one (0: not yet).
static AT: [AtomicU32; STEPS] = [const { AtomicU32::new(0) }; STEPS];

/// Starts the clock: in the zygote just before it clones a sandbox, in a warm-pool
/// sandbox's init when it receives its request. Forgets the marks of an earlier start.
pub fn start() {
    for at in &AT {
        at.store(0, Ordering::Relaxed);
    }
    ORIGIN.store(sys::monotonic_ns(), Ordering::Relaxed);
}

/// Notes that `step` ends now. Called by the init's timed step wrapper
/// (`sandbox::step`) and its workload twin (`init::workload_step`); directly only for a
/// step that cannot fail.
pub fn mark(step: SetupStep) {
    let since = sys::monotonic_ns().saturating_sub(ORIGIN.load(Ordering::Relaxed));
    let us = u32::try_from(since / 1000).unwrap_or(u32::MAX - 1);
    AT[step as usize].store(us + 1, Ordering::Relaxed);
}

/// The steps ended since the clock started, in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline(Vec<(SetupStep, u32)>);

impl Timeline {
    /// The steps noted so far in this process.
    pub fn noted() -> Timeline {
        let mut steps: Vec<(SetupStep, u32)> = SetupStep::ALL
            .iter()
            .filter_map(|&step| match AT[step as usize].load(Ordering::Relaxed) {
                0 => None,
                at => Some((step, at - 1)),
            })
            .collect();
        steps.sort_by_key(|&(_, at)| at);
        Timeline(steps)
    }
}

/// `clone 180, place fds 12, ...`: how long each step took, in microseconds (the names
/// hold no comma, and end with no number).
impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = 0;
        for (i, &(step, at)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", step.name(), at.saturating_sub(previous))?;
            previous = at;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_slot_of_its_own() {
        for (i, step) in SetupStep::ALL.iter().enumerate() {
            assert_eq!(*step as usize, i);
        }
    }

    #[test]
    fn step_names_parse_back_from_the_log_line() {
        // benches/steps.sh and tests/cli.rs split the line at ", " and at the last space.
        for step in SetupStep::ALL {
            let name = step.name();
            assert!(!name.contains(','), "{name}");
            assert!(
                name.rsplit(' ').next().unwrap().parse::<u64>().is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_timeline_shows_each_step_as_a_duration() {
        let timeline = Timeline(vec![(SetupStep::Clone, 150), (SetupStep::HoldSignals, 170)]);
        assert_eq!(timeline.to_string(), "clone 150, hold signals 20");
    }

    #[test]
    fn steps_come_back_in_time_order() {
        start();
        mark(SetupStep::IdMaps);
        // Steps in the same microsecond would come back in the order of `SetupStep::ALL`.
        std::thread::sleep(std::time::Duration::from_millis(2));
        mark(SetupStep::Clone);
        let Timeline(steps) = Timeline::noted();
        assert_eq!(
            steps.iter().map(|&(step, _)| step).collect::<Vec<_>>(),
            [SetupStep::IdMaps, SetupStep::Clone]
        );
        assert!(steps[0].1 < steps[1].1);
    }
}
