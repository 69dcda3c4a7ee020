//! The daemon's defaults and ceilings for resource limits, and how a request's limits
//! are resolved against them.
//!
//! Pure logic. The policy is checked once when the zygote starts (a nonsensical one
//! stops it) and applied by the zygote to every request, before anything is cloned.

use std::fmt;

use crate::protocol::{Limit, Limits};

/// The daemon's defaults (applied where a request sets no limit) and ceilings (no
/// request may exceed them; a request with no limit where a ceiling exists gets the
/// ceiling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Applied to requests that do not set a limit.
    pub defaults: Limits,
    /// The most any request may ask for.
    pub ceilings: Limits,
}

/// A request asked for more than the daemon allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AboveCeiling {
    /// Which limit.
    pub kind: Limit,
    /// What was asked.
    pub requested: u64,
    /// The ceiling.
    pub ceiling: u64,
}

impl fmt::Display for AboveCeiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} limit {} is above this daemon's ceiling of {}",
            self.kind, self.requested, self.ceiling
        )
    }
}

/// A daemon's limit policy that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPolicy {
    /// A default or ceiling is an invalid limit value.
    #[error("invalid {which} {kind} limit: {problem}")]
    Invalid {
        /// "default" or "maximum".
        which: &'static str,
        /// Which limit.
        kind: Limit,
        /// What is wrong with it.
        problem: String,
    },
    /// A default above its ceiling would refuse every request that sets none.
    #[error("the default {kind} limit {default} is above its maximum {ceiling}")]
    DefaultAboveCeiling {
        /// Which limit.
        kind: Limit,
        /// The default.
        default: u64,
        /// The ceiling.
        ceiling: u64,
    },
}

impl LimitPolicy {
    /// Checks the policy once, at start-up: valid values, and no default above its
    /// ceiling.
    pub fn check(&self) -> Result<(), BadPolicy> {
        for (which, limits) in [("default", &self.defaults), ("maximum", &self.ceilings)] {
            if let Err(e) = crate::protocol::validate::check_limits(limits) {
                let kind = limits.set().into_iter().find(|&k| {
                    let mut one = Limits::default();
                    one.set_limit(k, limits.get(k));
                    crate::protocol::validate::check_limits(&one).is_err()
                });
                return Err(BadPolicy::Invalid {
                    which,
                    kind: kind.unwrap_or(Limit::Memory),
                    problem: e.to_string(),
                });
            }
        }
        for kind in Limit::ALL {
            if let (Some(default), Some(ceiling)) =
                (self.defaults.get(kind), self.ceilings.get(kind))
            {
                if default > ceiling {
                    return Err(BadPolicy::DefaultAboveCeiling {
                        kind,
                        default,
                        ceiling,
                    });
                }
            }
        }
        Ok(())
    }

    /// The limits a request gets: its own, else the default, else the ceiling; refused
    /// if above the ceiling.
    ///
    /// ```
    /// use hatchery::limits::LimitPolicy;
    /// use hatchery::protocol::Limits;
    /// let policy = LimitPolicy {
    ///     defaults: Limits { pids: Some(64), ..Limits::default() },
    ///     ceilings: Limits { memory_bytes: Some(1 << 30), ..Limits::default() },
    /// };
    /// let resolved = policy.resolve(&Limits::default()).unwrap();
    /// assert_eq!(resolved.pids, Some(64));
    /// assert_eq!(resolved.memory_bytes, Some(1 << 30));
    /// let greedy = Limits { memory_bytes: Some(2 << 30), ..Limits::default() };
    /// assert!(policy.resolve(&greedy).is_err());
    /// ```
    pub fn resolve(&self, requested: &Limits) -> Result<Limits, AboveCeiling> {
        let mut resolved = Limits::default();
        for kind in Limit::ALL {
            let ceiling = self.ceilings.get(kind);
            let value = requested.get(kind).or(self.defaults.get(kind)).or(ceiling);
            if let (Some(value), Some(ceiling)) = (value, ceiling) {
                if value > ceiling {
                    return Err(AboveCeiling {
                        kind,
                        requested: value,
                        ceiling,
                    });
                }
            }
            resolved.set_limit(kind, value);
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsensical_policies_are_refused() {
        let zero = LimitPolicy {
            defaults: Limits {
                pids: Some(0),
                ..Limits::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            zero.check(),
            Err(BadPolicy::Invalid {
                which: "default",
                kind: Limit::Pids,
                ..
            })
        ));
        let upside_down = LimitPolicy {
            defaults: Limits {
                memory_bytes: Some(2 << 30),
                ..Limits::default()
            },
            ceilings: Limits {
                memory_bytes: Some(1 << 30),
                ..Limits::default()
            },
        };
        assert_eq!(
            upside_down.check(),
            Err(BadPolicy::DefaultAboveCeiling {
                kind: Limit::Memory,
                default: 2 << 30,
                ceiling: 1 << 30
            })
        );
        assert_eq!(LimitPolicy::default().check(), Ok(()));
    }

    #[test]
    fn resolution_prefers_the_request_then_the_default_then_the_ceiling() {
        let policy = LimitPolicy {
            defaults: Limits {
                memory_bytes: Some(100),
                wall_time_ms: Some(5),
                ..Limits::default()
            },
            ceilings: Limits {
                memory_bytes: Some(200),
                pids: Some(10),
                ..Limits::default()
            },
        };
        let resolved = policy
            .resolve(&Limits {
                memory_bytes: Some(150),
                ..Limits::default()
            })
            .unwrap();
        assert_eq!(resolved.memory_bytes, Some(150));
        assert_eq!(resolved.wall_time_ms, Some(5));
        assert_eq!(resolved.pids, Some(10));
        assert_eq!(resolved.cpu_time_ms, None);
        let err = policy
            .resolve(&Limits {
                pids: Some(11),
                ..Limits::default()
            })
            .unwrap_err();
        assert_eq!(
            err,
            AboveCeiling {
                kind: Limit::Pids,
                requested: 11,
                ceiling: 10
            }
        );
        assert_eq!(
            err.to_string(),
            "the pids limit 11 is above this daemon's ceiling of 10"
        );
    }
}
