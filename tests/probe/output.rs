//! How the probe reports: `key=value` lines on stdout, errno names as values (`EPERM`,
//! `ENOSYS`, ...), and the `<operation>: <ERRNO>` messages of a command that fails.
//!
//! Runs in the workload (the probe inside a sandbox); every command module writes its
//! facts through these, so that the tests parse one format.

use std::fmt::Display;
use std::fs;
use std::io::{self, Write};

use nix::errno::Errno;

use crate::Outcome;

/// The symbolic name of an errno (`EPERM`, `ENOSYS`, ...), or `errno<N>` if unknown.
pub fn errno_name(code: i32) -> String {
    match Errno::from_raw(code) {
        Errno::UnknownErrno => format!("errno{code}"),
        known => format!("{known:?}"),
    }
}

/// Names an I/O error by its errno when it has one, else by its message.
pub fn io_error_name(err: &io::Error) -> String {
    err.raw_os_error()
        .map_or_else(|| err.to_string(), errno_name)
}

/// An error message of the form `<operation>: <ERRNO>`.
pub fn io_failure(op: impl Display, err: io::Error) -> String {
    format!("{op}: {}", io_error_name(&err))
}

/// Same as [`io_failure`] for nix results.
pub fn nix_failure(op: impl Display, err: Errno) -> String {
    format!("{op}: {}", errno_name(err as i32))
}

/// Prints `key=value` with the value as raw bytes (paths and env may not be UTF-8).
pub fn print_bytes(key: &str, value: &[u8]) -> Outcome {
    let mut out = io::stdout().lock();
    out.write_all(key.as_bytes())
        .and_then(|()| out.write_all(b"="))
        .and_then(|()| out.write_all(value))
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| io_failure("write stdout", e))
}

/// Writes `ready` and flushes, so a test waiting for that line sees it at once.
pub fn say_ready() -> Outcome {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| io_failure("write stdout", e))
}

/// Comma-joins displayable items.
pub fn join<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn read_file(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| io_failure(format!("read {path}"), e))
}

/// `ok`, or the errno name.
pub fn verdict<T>(result: Result<T, Errno>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_name(e as i32),
    }
}

/// `ok`, or the errno name (or message) of an I/O error.
pub fn io_verdict<T>(result: &io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => io_error_name(e),
    }
}
