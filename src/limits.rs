//! Resource limits as people write them, and the daemon's defaults and ceilings.
//!
//! Pure logic, used by the CLI (`--memory 256M`, `--wall-time 10s`) and by the zygote
//! when it resolves a request's limits against `hatchery serve --default-*/--max-*`.

use std::fmt;

use crate::protocol::{Limit, Limits};

/// A value that could not be read as a size, duration, count or CPU share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {expected}")]
pub struct ParseError {
    what: &'static str,
    text: String,
    expected: &'static str,
}

fn invalid(what: &'static str, text: &str, expected: &'static str) -> ParseError {
    ParseError {
        what,
        text: text.to_string(),
        expected,
    }
}

/// Parses a size in bytes: a number with an optional binary suffix `K`, `M`, `G`, `T`
/// (or `KiB`, `MiB`, ...; `KB` is read as KiB too).
///
/// ```
/// use hatchery::limits::parse_size;
/// assert_eq!(parse_size("256M"), Ok(256 << 20));
/// assert_eq!(parse_size("1.5G"), Ok(3 << 29));
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert!(parse_size("12 apples").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, ParseError> {
    const EXPECTED: &str = "expected a number of bytes with an optional K, M, G or T suffix";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(invalid("size", text, EXPECTED)),
    };
    scaled(number, (1u64 << shift) as f64).ok_or_else(|| invalid("size", text, EXPECTED))
}

/// Parses a duration into milliseconds: a number with a suffix `ms`, `s`, `m` or `h`
/// (a bare number is seconds).
///
/// ```
/// use hatchery::limits::parse_duration_ms;
/// assert_eq!(parse_duration_ms("10s"), Ok(10_000));
/// assert_eq!(parse_duration_ms("250ms"), Ok(250));
/// assert_eq!(parse_duration_ms("1.5"), Ok(1500));
/// assert_eq!(parse_duration_ms("2m"), Ok(120_000));
/// ```
pub fn parse_duration_ms(text: &str) -> Result<u64, ParseError> {
    const EXPECTED: &str = "expected a number with an optional ms, s, m or h suffix";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    let unit_ms = match suffix.trim() {
        "ms" => 1.0,
        "" | "s" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err(invalid("duration", text, EXPECTED)),
    };
    scaled(number, unit_ms).ok_or_else(|| invalid("duration", text, EXPECTED))
}

/// Parses a CPU share into millicores: `0.5` is half a CPU, `2` two CPUs.
///
/// ```
/// use hatchery::limits::parse_cpus;
/// assert_eq!(parse_cpus("0.5"), Ok(500));
/// assert_eq!(parse_cpus("2"), Ok(2000));
/// ```
pub fn parse_cpus(text: &str) -> Result<u64, ParseError> {
    const EXPECTED: &str = "expected a number of CPUs such as 0.5 or 2";
    match scaled(text.trim(), 1000.0) {
        Some(millicores) if millicores > 0 => Ok(millicores),
        _ => Err(invalid("CPU share", text, EXPECTED)),
    }
}

/// Parses a plain count (processes, open files, inodes).
pub fn parse_count(text: &str) -> Result<u64, ParseError> {
    text.trim()
        .parse()
        .map_err(|_| invalid("count", text, "expected a whole number"))
}

/// Parses the value of one kind of limit in the unit people use for it.
pub fn parse_limit(kind: Limit, text: &str) -> Result<u64, ParseError> {
    match kind {
        Limit::Memory | Limit::FileSize | Limit::TmpSize => parse_size(text),
        Limit::CpuTime | Limit::WallTime => parse_duration_ms(text),
        Limit::Cpu => parse_cpus(text),
        Limit::Pids | Limit::OpenFiles | Limit::TmpInodes => parse_count(text),
    }
}

/// `number × unit`, rounded, if `number` is a non-negative decimal that fits in a u64.
fn scaled(number: &str, unit: f64) -> Option<u64> {
    if number.is_empty() || number.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let product = (value * unit).round();
    (product.is_finite() && product >= 0.0 && product < u64::MAX as f64).then_some(product as u64)
}

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
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "M", "-1M", "1.2.3M", "1X", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_size("1X").unwrap_err().to_string(),
            "invalid size \"1X\": expected a number of bytes with an optional K, M, G or T suffix"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("0.1s"), Ok(100));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        for bad in ["", "s", "1d", "-2s", "fast"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpus_and_counts() {
        assert_eq!(parse_cpus("1.25"), Ok(1250));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("-1").is_err());
        assert_eq!(parse_count("64"), Ok(64));
        assert!(parse_count("64k").is_err());
        assert_eq!(parse_limit(Limit::WallTime, "2s"), Ok(2000));
        assert_eq!(parse_limit(Limit::TmpSize, "64M"), Ok(64 << 20));
    }

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
