//! Workload side of an entry call: the workload process, forked from the sandbox init
//! (itself a clone of the zygote), runs a Rust function of the zygote instead of
//! `execve`, and writes its [`EntryResult`] on the result pipe.
//!
//! Nothing is exec'd, so nothing is closed by close-on-exec either: every fd but stdio,
//! the result pipe and the exec pipe is closed here, before seccomp and the entry.

use std::io::Write;
use std::os::fd::OwnedFd;

use crate::protocol::EntryResult;
use crate::sys::{self, NewProcess, SysError};

/// A prepared entry call: its arguments already decoded in the zygote (so that bad
/// arguments fail the request before anything is cloned), run once in the child.
pub type EntryCall = Box<dyn FnOnce() -> EntryResult>;

/// What the sandbox's workload is.
pub enum Workload {
    /// `execve` the request's program.
    Exec,
    /// Run this entry in a process forked from the zygote.
    Entry(EntryCall),
    /// No workload: a persistent sandbox, whose init runs the commands it is sent.
    Sandbox,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workload::Exec => f.write_str("Exec"),
            Workload::Entry(_) => f.write_str("Entry"),
            Workload::Sandbox => f.write_str("Sandbox"),
        }
    }
}

/// The fd the result pipe's write end sits on in the init and the workload.
pub const RESULT_FD: i32 = 4;

/// Closes every fd the entry must not see (the init's channel above all), keeping
/// stdio, the result pipe and the exec pipe, which is moved onto the channel's slot.
/// Returns the exec pipe's new fd.
pub fn close_inherited(
    process: &NewProcess,
    exec_write: OwnedFd,
    channel_fd: i32,
) -> Result<OwnedFd, SysError> {
    // dup3 onto the channel's number closes the channel in this process.
    let exec_write = process.move_fd(exec_write, channel_fd)?;
    process.close_range(RESULT_FD as u32 + 1, u32::MAX)?;
    Ok(exec_write)
}

/// Runs the entry, writes its result and exits: 0 when it returned `Ok`, 1 for `Err`,
/// 101 (Rust's panic code) when it panicked.
pub fn run(call: EntryCall, result: OwnedFd) -> ! {
    let outcome = call();
    let code = match outcome {
        EntryResult::Returned(_) => 0,
        EntryResult::Failed { .. } => 1,
        EntryResult::Panicked { .. } => 101,
    };
    // What the entry printed is still in std's buffers; `exit_now` skips their flush.
    let _ = std::io::stdout().flush();
    let bytes = match postcard::to_allocvec(&outcome) {
        Ok(bytes) => bytes,
        Err(_) => sys::exit_now(125),
    };
    drop(outcome);
    let mut pipe = std::fs::File::from(result);
    if pipe.write_all(&bytes).is_err() {
        // The reader is gone (or stopped reading at its bound): nothing to report to.
        sys::exit_now(125);
    }
    drop(pipe);
    sys::exit_now(code)
}
