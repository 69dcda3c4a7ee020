//! The command line's size, duration, CPU and count parsers take any text without a
//! panic, and never return a value for text that holds no digit.
#![no_main]

use hatchery::limits::{parse_count, parse_cpus, parse_duration_ms, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let results = [
        parse_size(text),
        parse_duration_ms(text),
        parse_cpus(text),
        parse_count(text),
    ];
    if !text.chars().any(|c| c.is_ascii_digit()) {
        assert!(
            results.iter().all(Result::is_err),
            "{text:?} parsed without a digit"
        );
    }
});
