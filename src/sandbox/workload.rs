//! The workload process, from its start to its `execve` (or its entry): it lets through
//! the signals the init held, marks every fd but stdio close-on-exec (an entry, which
//! execs nothing, closes them), sets its own open-files limit, installs the seccomp
//! filter last, and execs. Runs in the workload: for an exec, a child that shares the
//! init's memory until its `execve`, so nothing here allocates; for an entry, a forked
//! copy of the init.
//!
//! Its failures reach the init on the exec pipe, a close-on-exec pipe whose end of file
//! means the `execve` succeeded: one postcard [`WorkloadReport`], written from a buffer
//! on the stack and decoded strictly by the init ([`read_report`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use super::channel::CHANNEL_FD;
use super::entry::{self, EntryCall};
use super::exec::ExecArgs;
use super::{timeline, SetupError, SETUP_FAILED};
use crate::protocol::{SetupFailure, SetupStep};
use crate::seccomp::CompiledSeccomp;
use crate::sys::{self, NewProcess, SysError};

/// What the workload does once its setup is done.
pub(super) enum Ready {
    /// `execve` the program.
    Exec(ExecArgs),
    /// Run the entry, with the result pipe's write end on `entry::RESULT_FD`.
    Entry { call: EntryCall, result: OwnedFd },
}

/// What an exec's workload needs, borrowed from the init: it runs in a child that
/// shares the init's memory until its `execve` (see [`sys::spawn_sharing_memory`]), so
/// it allocates nothing and owns nothing.
pub(super) struct ExecWorkload<'a> {
    /// The exec's prepared arguments.
    pub exec: &'a ExecArgs,
    /// The exec pipe's write end (close-on-exec).
    pub exec_write: BorrowedFd<'a>,
    /// The filter to install, unless there is none or the init installed it.
    pub seccomp: Option<&'a CompiledSeccomp>,
    /// The workload's own open-files limit.
    pub open_files: Option<u64>,
    /// A persistent sandbox's command: a session (and process group) of its own, so
    /// that its signals reach it and what it starts, and none of the init's.
    pub new_session: bool,
    /// A persistent sandbox's command: its own CPU-time limit, in seconds.
    pub cpu_time_s: Option<u64>,
    /// A persistent sandbox's command with a terminal: its stdin (a pty's slave)
    /// becomes its controlling terminal, after its `setsid`.
    pub controlling_terminal: bool,
}

/// The workload of an exec: signal mask, fds, its open-files limit, seccomp, `execve`.
/// Returns only by exiting.
pub(super) fn run_exec(workload: &ExecWorkload<'_>) -> ! {
    timeline::mark(SetupStep::StartWorkload);
    unblock_signals();
    // Everything but 0-2 closes at exec: the channel, and the exec pipe once it has
    // served its purpose (its closing is how the init learns the exec succeeded). A
    // failure here is reported as the exec's, which it prevents.
    if let Err(errno) = sys::close_on_exec_from(CHANNEL_FD as u32) {
        report(
            workload.exec_write,
            WorkloadReport::ExecFailed(errno as i32),
        );
    }
    if workload.new_session {
        let session = nix::unistd::setsid().map(drop);
        workload_step(workload.exec_write, SetupStep::Session, session);
    }
    if workload.controlling_terminal {
        // Fd 0 is the pty's slave the init placed there.
        let terminal = sys::set_controlling_terminal_stdin();
        workload_step(workload.exec_write, SetupStep::Devpts, terminal);
    }
    if let Some(seconds) = workload.cpu_time_s {
        use nix::sys::resource::{setrlimit, Resource};
        // SIGXCPU at the limit, SIGKILL a second later if it is caught.
        let limited = setrlimit(Resource::RLIMIT_CPU, seconds, seconds + 1);
        workload_step(workload.exec_write, SetupStep::ResourceLimits, limited);
    }
    limit_and_filter(workload.exec_write, workload.seccomp, workload.open_files);
    let errno = workload.exec.exec();
    report(
        workload.exec_write,
        WorkloadReport::ExecFailed(errno as i32),
    )
}

/// The workload of an entry, in a forked copy of the init: signal mask, fds, seccomp,
/// the entry. Returns only by exiting.
pub(super) fn run_entry(
    process: NewProcess,
    exec_write: OwnedFd,
    ready: Ready,
    seccomp: Option<&CompiledSeccomp>,
    open_files: Option<u64>,
) -> ! {
    unblock_signals();
    // An entry execs nothing, so the inherited fds are closed now.
    let exec_write = match entry::close_inherited(&process, exec_write, CHANNEL_FD) {
        Ok(exec_write) => exec_write,
        // The exec pipe is in an unknown state: exiting is the report.
        Err(_) => sys::exit_now(SETUP_FAILED),
    };
    limit_and_filter(exec_write.as_fd(), seccomp, open_files);
    let Ready::Entry { call, result } = ready else {
        sys::exit_now(SETUP_FAILED)
    };
    // Closing the exec pipe tells the init the workload runs, as an exec would.
    drop(exec_write);
    entry::run(call, result)
}

/// The workload starts with the default dispositions the init set in `hold_signals`
/// (the init installs no handler): the held signals are let through, and act on the
/// workload as they should.
fn unblock_signals() {
    let _ = sys::sigprocmask(libc::SIG_SETMASK, &[]);
}

/// The workload's own open-files limit (the init needs a few fds of its own), then
/// seccomp; a failure is reported on the exec pipe and ends the workload.
fn limit_and_filter(
    exec_write: BorrowedFd<'_>,
    seccomp: Option<&CompiledSeccomp>,
    open_files: Option<u64>,
) {
    if let Some(files) = open_files {
        use nix::sys::resource::{setrlimit, Resource};
        let limited = setrlimit(Resource::RLIMIT_NOFILE, files, files);
        workload_step(exec_write, SetupStep::OpenFilesLimit, limited);
    }
    if let Some(filter) = seccomp {
        workload_step(exec_write, SetupStep::Seccomp, filter.install());
    }
}

/// The workload's twin of the timed step wrapper (`sandbox::step`), which allocates
/// nothing: a success notes the step's end on the timeline, a failure is reported on
/// the exec pipe, naming the step, and ends the workload.
fn workload_step(exec_write: BorrowedFd<'_>, step: SetupStep, result: Result<(), Errno>) {
    match result {
        Ok(()) => timeline::mark(step),
        Err(errno) => report(
            exec_write,
            WorkloadReport::StepFailed {
                step,
                errno: errno as i32,
            },
        ),
    }
}

/// The system call of a step the workload performs itself (its report names only the
/// step); `None` for a step that is not the workload's.
fn workload_call(step: SetupStep) -> Option<&'static str> {
    match step {
        SetupStep::OpenFilesLimit => Some("setrlimit(RLIMIT_NOFILE)"),
        SetupStep::Session => Some("setsid"),
        SetupStep::ResourceLimits => Some("setrlimit(RLIMIT_CPU)"),
        SetupStep::Devpts => Some("ioctl(TIOCSCTTY)"),
        SetupStep::Seccomp => Some("seccomp(SECCOMP_SET_MODE_FILTER)"),
        _ => None,
    }
}

/// What the workload writes on the exec pipe when it fails before or at `execve`
/// (nothing when its `execve` succeeds: the pipe closes with it). One postcard message,
/// encoded into a buffer on the stack: the workload allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum WorkloadReport {
    /// One of the workload's own steps ([`SetupStep::OpenFilesLimit`],
    /// [`SetupStep::Seccomp`]; for a persistent sandbox's command also
    /// [`SetupStep::Session`] and [`SetupStep::ResourceLimits`]) failed with this errno.
    StepFailed {
        /// The step.
        step: SetupStep,
        /// Its system call's errno.
        errno: i32,
    },
    /// `execve` failed with this errno (or marking the fds close-on-exec did, just
    /// before it).
    ExecFailed(i32),
}

/// More than any [`WorkloadReport`] takes: a tag, a step and an errno, a few bytes each.
const REPORT_BUFFER: usize = 32;

/// Writes `message` on the exec pipe and ends the workload.
fn report(exec_write: BorrowedFd<'_>, message: WorkloadReport) -> ! {
    let mut buffer = [0u8; REPORT_BUFFER];
    if let Ok(bytes) = postcard::to_slice(&message, &mut buffer) {
        let _ = nix::unistd::write(exec_write, bytes);
    }
    sys::exit_now(127)
}

/// Reads, in the init, how the workload's exec went: `Ok(None)` (end of file) when its
/// `execve` succeeded, `Ok(Some(errno))` when the exec failed, an error naming the step
/// when one of the workload's own steps failed, or [`SetupStep::Exec`] when the report
/// cannot be read or decoded.
pub(super) fn read_report(exec_read: &OwnedFd) -> Result<Option<i32>, SetupError> {
    let unreadable = |error: SetupFailure| SetupError {
        step: SetupStep::Exec,
        error,
    };
    let mut buffer = [0u8; REPORT_BUFFER];
    let read = loop {
        match nix::unistd::read(exec_read, &mut buffer) {
            Err(Errno::EINTR) => continue,
            Ok(read) => break read,
            Err(errno) => return Err(unreadable(SysError::new("read(exec pipe)", errno).into())),
        }
    };
    if read == 0 {
        return Ok(None);
    }
    match decode_report(&buffer[..read]).map_err(unreadable)? {
        WorkloadReport::ExecFailed(errno) => Ok(Some(errno)),
        WorkloadReport::StepFailed { step, errno } => {
            // A decoded report names one of the workload's steps (see `decode_report`).
            let call = workload_call(step).unwrap_or("the workload's step");
            Err(SetupError {
                step,
                error: SysError::new(call, Errno::from_raw(errno)).into(),
            })
        }
    }
}

/// Decodes one [`WorkloadReport`], strictly: an unknown tag or step, a step that is not
/// the workload's, a truncated message, or bytes left after it are refused.
fn decode_report(bytes: &[u8]) -> Result<WorkloadReport, SetupFailure> {
    let refused = |received: String| SetupFailure::Protocol {
        expected: "a workload report".into(),
        received,
    };
    match postcard::take_from_bytes::<WorkloadReport>(bytes) {
        Ok((WorkloadReport::StepFailed { step, .. }, [])) if workload_call(step).is_none() => {
            Err(refused(format!("a failure of the step \"{step}\"")))
        }
        Ok((report, [])) => Ok(report),
        Ok((_, rest)) => Err(refused(format!("{} bytes after a report", rest.len()))),
        Err(error) => Err(refused(format!(
            "{} undecodable bytes ({error})",
            bytes.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_reports_round_trip_through_the_stack_buffer() {
        for report in [
            WorkloadReport::ExecFailed(libc::ENOENT),
            WorkloadReport::StepFailed {
                step: SetupStep::Seccomp,
                errno: i32::MAX,
            },
            WorkloadReport::StepFailed {
                step: SetupStep::OpenFilesLimit,
                errno: i32::MIN,
            },
        ] {
            let mut buffer = [0u8; REPORT_BUFFER];
            let bytes = postcard::to_slice(&report, &mut buffer).expect("fits");
            assert_eq!(decode_report(bytes), Ok(report));
        }
    }

    #[test]
    fn workload_reports_are_decoded_strictly() {
        let mut buffer = [0u8; REPORT_BUFFER];
        let bytes = postcard::to_slice(&WorkloadReport::ExecFailed(2), &mut buffer)
            .expect("fits")
            .to_vec();
        let protocol = |result| matches!(result, Err(SetupFailure::Protocol { .. }));
        // A remainder, an unknown tag, an unknown step, a step not the workload's, a
        // truncated message.
        assert!(protocol(decode_report(&[&bytes[..], &[0]].concat())));
        assert!(protocol(decode_report(&[7, 4])));
        assert!(protocol(decode_report(&[0, 0x7F, 4])));
        assert!(protocol(decode_report(&[0, SetupStep::IdMaps as u8, 4])));
        assert!(protocol(decode_report(&bytes[..1])));
        assert_eq!(
            decode_report(&[0, SetupStep::Seccomp as u8, 4]),
            Ok(WorkloadReport::StepFailed {
                step: SetupStep::Seccomp,
                errno: 2
            })
        );
    }
}
