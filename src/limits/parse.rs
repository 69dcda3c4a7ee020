//! Resource limits as people write them: sizes (`256M`), durations (`10s`), counts and
//! CPU shares (`0.5`), read into the units of the wire's [`Limits`].
//!
//! Pure logic, run by the CLI for `hatchery run --memory 256M` and for the daemon's
//! `hatchery serve --default-*/--max-*` flags.
//!
//! [`Limits`]: crate::protocol::Limits

use crate::protocol::Limit;

/// A value that could not be read as a size, duration, count or CPU share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {expected}")]
pub struct ParseError {
    what: &'static str,
    text: String,
    expected: std::borrow::Cow<'static, str>,
}

fn invalid(
    what: &'static str,
    text: &str,
    expected: impl Into<std::borrow::Cow<'static, str>>,
) -> ParseError {
    ParseError {
        what,
        text: text.to_string(),
        expected: expected.into(),
    }
}

/// The smallest size written without a unit: a bare number is bytes, and fewer than
/// 4 KiB (a page) is almost always a forgotten `M`.
pub const SMALLEST_BARE_SIZE: u64 = 4096;

/// A number written with a minus sign: no limit is negative.
fn negative(what: &'static str, text: &str) -> Option<ParseError> {
    text.trim()
        .starts_with('-')
        .then(|| invalid(what, text, format!("a {what} cannot be negative")))
}

/// Parses a size in bytes: a number with an optional binary suffix `K`, `M`, `G`, `T`
/// (or `KiB`, `MiB`, ...; `KB` is read as KiB too). A number without a unit is bytes, and
/// is refused below [`SMALLEST_BARE_SIZE`] (but for 0): `--memory 64` means 64M.
///
/// ```
/// use hatchery::limits::parse_size;
/// assert_eq!(parse_size("256M"), Ok(256 << 20));
/// assert_eq!(parse_size("1.5G"), Ok(3 << 29));
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert_eq!(parse_size("64B"), Ok(64));
/// assert!(parse_size("64").unwrap_err().to_string().contains("did you mean 64M?"));
/// assert!(parse_size("12 apples").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, ParseError> {
    const EXPECTED: &str = "expected a number of bytes with an optional K, M, G or T suffix";
    if let Some(error) = negative("size", text) {
        return Err(error);
    }
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
    let bytes =
        scaled(number, (1u64 << shift) as f64).ok_or_else(|| invalid("size", text, EXPECTED))?;
    if suffix.is_empty() && bytes != 0 && bytes < SMALLEST_BARE_SIZE {
        return Err(invalid(
            "size",
            text,
            format!(
                "a size without a unit is in bytes, and {bytes} bytes is too small; \
                 did you mean {number}M? (write {number}B for bytes)"
            ),
        ));
    }
    Ok(bytes)
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
    if let Some(error) = negative("duration", text) {
        return Err(error);
    }
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
    if let Some(error) = negative("CPU share", text) {
        return Err(error);
    }
    match scaled(text.trim(), 1000.0) {
        Some(millicores) if millicores > 0 => Ok(millicores),
        _ => Err(invalid("CPU share", text, EXPECTED)),
    }
}

/// Parses a plain count (processes, open files, inodes).
pub fn parse_count(text: &str) -> Result<u64, ParseError> {
    if let Some(error) = negative("count", text) {
        return Err(error);
    }
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

/// Parses a limit as a flag takes it: a value in its unit, or `unlimited` (`None`): no
/// limit, where a request must say so to lift the daemon's default.
pub fn parse_limit_or_unlimited(kind: Limit, text: &str) -> Result<Option<u64>, ParseError> {
    if text.trim() == "unlimited" {
        return Ok(None);
    }
    parse_limit(kind, text).map(Some)
}

/// A duration in milliseconds as a person would type it: `2m`, `1s`, `1.5s`, `250ms`.
///
/// ```
/// use hatchery::limits::{format_duration_ms, parse_duration_ms};
/// for ms in [120_000, 1000, 1500, 250] {
///     assert_eq!(parse_duration_ms(&format_duration_ms(ms)), Ok(ms));
/// }
/// ```
pub fn format_duration_ms(ms: u64) -> String {
    match ms {
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms >= 1000 && ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms if ms >= 1000 => format!("{}s", ms as f64 / 1000.0),
        ms => format!("{ms}ms"),
    }
}

/// A limit's value as a person would type it: `64M`, `1.5s`, `0.5` CPUs, `256`.
///
/// ```
/// use hatchery::limits::{format_limit, parse_limit};
/// use hatchery::protocol::Limit;
/// assert_eq!(format_limit(Limit::TmpSize, 64 << 20), "64M");
/// assert_eq!(format_limit(Limit::WallTime, 1500), "1.5s");
/// for (kind, value) in [(Limit::Memory, 3 << 30), (Limit::Cpu, 250), (Limit::Pids, 256)] {
///     assert_eq!(parse_limit(kind, &format_limit(kind, value)), Ok(value));
/// }
/// ```
pub fn format_limit(kind: Limit, value: u64) -> String {
    match kind {
        Limit::Memory | Limit::FileSize | Limit::TmpSize => {
            let unit = ["T", "G", "M", "K"]
                .into_iter()
                .zip([40, 30, 20, 10])
                .find(|&(_, shift)| value >= 1 << shift && value % (1 << shift) == 0);
            match unit {
                Some((suffix, shift)) => format!("{}{suffix}", value >> shift),
                None => value.to_string(),
            }
        }
        Limit::CpuTime | Limit::WallTime => format_duration_ms(value),
        Limit::Cpu => format!("{}", value as f64 / 1000.0),
        Limit::Pids | Limit::OpenFiles | Limit::TmpInodes => value.to_string(),
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
    fn a_bare_size_below_a_page_is_refused_with_a_hint() {
        assert_eq!(
            parse_size("64").unwrap_err().to_string(),
            "invalid size \"64\": a size without a unit is in bytes, and 64 bytes is too \
             small; did you mean 64M? (write 64B for bytes)"
        );
        assert!(parse_size("4095").is_err());
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64B"), Ok(64));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
    }

    #[test]
    fn negative_values_are_named_plainly() {
        for (kind, text, what) in [
            (Limit::WallTime, "-1", "a duration cannot be negative"),
            (Limit::Memory, "-1M", "a size cannot be negative"),
            (Limit::Cpu, "-0.5", "a CPU share cannot be negative"),
            (Limit::Pids, "-3", "a count cannot be negative"),
        ] {
            let message = parse_limit(kind, text).unwrap_err().to_string();
            assert!(message.ends_with(what), "{kind}: {message}");
        }
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
        assert_eq!(parse_limit_or_unlimited(Limit::Pids, "unlimited"), Ok(None));
        assert_eq!(parse_limit_or_unlimited(Limit::Pids, "8"), Ok(Some(8)));
        assert!(parse_limit_or_unlimited(Limit::Pids, "infinite").is_err());
    }
}
