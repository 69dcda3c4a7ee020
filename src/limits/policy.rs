//! The daemon's defaults and ceilings for resource limits, and how a request's limits
//! are resolved against them.
//!
//! Pure logic. The policy is checked once when the zygote starts (a nonsensical one
//! stops it) and applied by the zygote to every request, before anything is cloned.

use crate::protocol::{Limit, LimitSet, Limits};

/// The defaults a daemon has unless its operator changes them (`serve --default-pids`,
/// `--default-tmp-size`, `--default-tmp-inodes`; `unlimited` removes one): no sandbox can
/// fork without bound or fill the host's memory through its `/tmp` or `/dev/shm` unless
/// someone asked for it.
pub const SAFE_DEFAULTS: Limits = Limits {
    memory_bytes: None,
    pids: Some(256),
    cpu_millicores: None,
    cpu_time_ms: None,
    wall_time_ms: None,
    file_size_bytes: None,
    open_files: None,
    tmp_size_bytes: Some(64 << 20),
    tmp_inodes: Some(16_384),
    unlimited: LimitSet::EMPTY,
};

/// The daemon's defaults (applied where a request sets no limit), ceilings (no request
/// may exceed them; a request with no limit where a ceiling exists gets the ceiling), and
/// the defaults a request may lift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Applied to requests that do not set a limit.
    pub defaults: Limits,
    /// The most any request may ask for.
    pub ceilings: Limits,
    /// The defaults a request may ask to run without (`Limits::unlimited`); a kind with
    /// a ceiling can never be lifted.
    pub allow_unlimited: LimitSet,
}

impl Default for LimitPolicy {
    /// [`SAFE_DEFAULTS`], no ceilings, no default may be lifted.
    fn default() -> LimitPolicy {
        LimitPolicy {
            defaults: SAFE_DEFAULTS,
            ceilings: Limits::default(),
            allow_unlimited: LimitSet::EMPTY,
        }
    }
}

/// Why the daemon's policy refuses a request's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    /// A request asked for more than the daemon allows.
    #[error("the {kind} limit {requested} is above this daemon's ceiling of {ceiling}")]
    AboveCeiling {
        /// Which limit.
        kind: Limit,
        /// What was asked.
        requested: u64,
        /// The ceiling.
        ceiling: u64,
    },
    /// A request asked for no limit where the daemon has a ceiling.
    #[error("the request asks for no {kind} limit, but this daemon allows at most {ceiling}")]
    UnlimitedAboveCeiling {
        /// Which limit.
        kind: Limit,
        /// The ceiling.
        ceiling: u64,
    },
    /// A request asked to lift a default the daemon's operator did not allow it to.
    #[error(
        "the request asks for no {kind} limit, but this daemon's default is {default} and it \
         lifts it only when started with `--allow-unlimited {kind}`"
    )]
    UnlimitedNotAllowed {
        /// Which limit.
        kind: Limit,
        /// The daemon's default.
        default: u64,
    },
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

    /// The limits a request gets: its own, else none if it asks for none and may, else
    /// the default, else the ceiling; refused if above the ceiling, or if it asks to lift
    /// a default it may not. The result's `unlimited` lists the defaults lifted.
    ///
    /// ```
    /// use hatchery::limits::LimitPolicy;
    /// use hatchery::protocol::{Limit, LimitSet, Limits};
    /// let policy = LimitPolicy {
    ///     defaults: Limits { pids: Some(64), ..Limits::default() },
    ///     ceilings: Limits { memory_bytes: Some(1 << 30), ..Limits::default() },
    ///     allow_unlimited: LimitSet::EMPTY,
    /// };
    /// let resolved = policy.resolve(&Limits::default()).unwrap();
    /// assert_eq!(resolved.pids, Some(64));
    /// assert_eq!(resolved.memory_bytes, Some(1 << 30));
    /// let greedy = Limits { memory_bytes: Some(2 << 30), ..Limits::default() };
    /// assert!(policy.resolve(&greedy).is_err());
    /// let forkful = Limits { unlimited: [Limit::Pids].into_iter().collect(), ..Limits::default() };
    /// assert!(policy.resolve(&forkful).is_err(), "not allowed by the operator");
    /// ```
    pub fn resolve(&self, requested: &Limits) -> Result<Limits, NotAllowed> {
        let mut resolved = Limits::default();
        for kind in Limit::ALL {
            let ceiling = self.ceilings.get(kind);
            let value = match (requested.get(kind), requested.unlimited.contains(kind)) {
                (Some(value), _) => Some(value),
                (None, true) => {
                    if let Some(ceiling) = ceiling {
                        return Err(NotAllowed::UnlimitedAboveCeiling { kind, ceiling });
                    }
                    match self.defaults.get(kind) {
                        Some(default) if !self.allow_unlimited.contains(kind) => {
                            return Err(NotAllowed::UnlimitedNotAllowed { kind, default });
                        }
                        Some(_) => resolved.unlimited.insert(kind),
                        None => {}
                    }
                    None
                }
                (None, false) => self.defaults.get(kind).or(ceiling),
            };
            if let (Some(value), Some(ceiling)) = (value, ceiling) {
                if value > ceiling {
                    return Err(NotAllowed::AboveCeiling {
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
            allow_unlimited: LimitSet::EMPTY,
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
            allow_unlimited: LimitSet::EMPTY,
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
            NotAllowed::AboveCeiling {
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

    #[test]
    fn a_request_without_limits_gets_the_safe_defaults() {
        let resolved = LimitPolicy::default().resolve(&Limits::default()).unwrap();
        assert_eq!(resolved, SAFE_DEFAULTS);
        assert_eq!(resolved.pids, Some(256));
        assert_eq!(resolved.tmp_size_bytes, Some(64 << 20));
        assert!(resolved.tmp_inodes.is_some());
    }

    #[test]
    fn a_default_is_lifted_only_when_asked_and_allowed() {
        let no_pids = Limits {
            unlimited: [Limit::Pids].into_iter().collect(),
            ..Limits::default()
        };
        let strict = LimitPolicy::default();
        let err = strict.resolve(&no_pids).unwrap_err();
        assert_eq!(
            err,
            NotAllowed::UnlimitedNotAllowed {
                kind: Limit::Pids,
                default: 256
            }
        );
        assert!(err.to_string().contains("--allow-unlimited pids"), "{err}");

        let lenient = LimitPolicy {
            allow_unlimited: [Limit::Pids].into_iter().collect(),
            ..LimitPolicy::default()
        };
        let resolved = lenient.resolve(&no_pids).unwrap();
        assert_eq!(resolved.pids, None);
        assert_eq!(resolved.unlimited.iter().collect::<Vec<_>>(), [Limit::Pids]);
        assert_eq!(resolved.tmp_size_bytes, SAFE_DEFAULTS.tmp_size_bytes);
        // Allowed does not mean imposed: a request that says nothing keeps the default.
        assert_eq!(lenient.resolve(&Limits::default()).unwrap().pids, Some(256));

        // A kind with no default needs no permission, and is not reported as lifted.
        let no_memory = Limits {
            unlimited: [Limit::Memory].into_iter().collect(),
            ..Limits::default()
        };
        let resolved = strict.resolve(&no_memory).unwrap();
        assert_eq!(resolved.memory_bytes, None);
        assert!(resolved.unlimited.is_empty());

        // A ceiling is never lifted, whatever the operator allowed.
        let capped = LimitPolicy {
            ceilings: Limits {
                pids: Some(512),
                ..Limits::default()
            },
            allow_unlimited: LimitSet::all(),
            ..LimitPolicy::default()
        };
        assert_eq!(
            capped.resolve(&no_pids).unwrap_err(),
            NotAllowed::UnlimitedAboveCeiling {
                kind: Limit::Pids,
                ceiling: 512
            }
        );
    }
}
