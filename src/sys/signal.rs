//! Signals by raw number (realtime ones and glibc's internal 32 and 33 included, which
//! nix's `Signal` does not name): masks, a signalfd, `kill`, and dispositions read and
//! reset with raw `rt_sigaction`.
//!
//! The zygote reads its own dispositions once; a sandbox's init resets them, holds the
//! forwarded signals blocked, reads them from a signalfd and passes them on to its
//! workload, which unblocks them.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use super::fd::new_fd;
use super::SysError;

/// `sigprocmask(how, signals)` with raw signal numbers (realtime ones included, which
/// nix's `Signal` does not name).
pub fn sigprocmask(how: libc::c_int, signals: &[i32]) -> Result<(), SysError> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; the old mask is not wanted.
    if unsafe { libc::sigprocmask(how, &set, std::ptr::null_mut()) } == -1 {
        return Err(SysError::new("sigprocmask", Errno::last()));
    }
    Ok(())
}

/// A `sigset_t` of raw signal numbers.
fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe {
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
    }
    set
}

/// A signalfd (close-on-exec) of the raw signal numbers `signals`, which the caller
/// holds blocked: one fd to read them from, instead of a handler for each.
pub fn signalfd(signals: &[i32]) -> Result<OwnedFd, SysError> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; -1 asks for a new fd.
    new_fd(
        unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) } as libc::c_long,
        "signalfd",
    )
}

/// The number of the next signal read from the signalfd `fd`, waiting for one.
pub fn read_signal(fd: BorrowedFd<'_>) -> Result<i32, Errno> {
    // SAFETY: signalfd_siginfo is plain old data; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is valid for writes of `size` bytes.
    let read = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut info as *mut libc::signalfd_siginfo as *mut libc::c_void,
            size,
        )
    };
    match read {
        -1 => Err(Errno::last()),
        read if read as usize == size => Ok(info.ssi_signo as i32),
        _ => Err(Errno::EIO),
    }
}

/// `kill(pid, signal)` with a raw signal number (realtime ones included).
pub fn send_signal(pid: i32, signal: i32) -> Result<(), Errno> {
    // SAFETY: kill takes plain integers.
    if unsafe { libc::kill(pid, signal) } == -1 {
        return Err(Errno::last());
    }
    Ok(())
}

/// The signals whose disposition is not the default (ignored, or caught by a handler),
/// among every one that has a disposition: the classic and realtime ones, and glibc's
/// internal 32 and 33, which its `sigaction` refuses to touch but a parent may have left
/// ignored. Read with raw `rt_sigaction` queries.
pub fn signals_not_default() -> Result<Vec<i32>, SysError> {
    let mut changed = Vec::new();
    for signal in signals_with_disposition() {
        if rt_sigaction_raw(signal, None)? != libc::SIG_DFL {
            changed.push(signal);
        }
    }
    Ok(changed)
}

/// Every signal that has a disposition (all but `SIGKILL` and `SIGSTOP`), realtime ones
/// and glibc's internal 32 and 33 included.
pub fn signals_with_disposition() -> impl Iterator<Item = i32> {
    (1..=libc::SIGRTMAX()).filter(|&s| !matches!(s, libc::SIGKILL | libc::SIGSTOP))
}

/// Resets `signals` to their default disposition (an ignored signal would otherwise
/// stay ignored across `execve`), with raw `rt_sigaction` calls: glibc's 32 and 33 too.
pub fn reset_signals(signals: &[i32]) -> Result<(), SysError> {
    for &signal in signals {
        rt_sigaction_raw(signal, Some(libc::SIG_DFL))?;
    }
    Ok(())
}

/// `rt_sigaction(signal, handler)` straight to the kernel, past glibc's wrapper: sets
/// the handler (`SIG_DFL` here) when one is given, and returns the one it replaces.
fn rt_sigaction_raw(
    signal: i32,
    handler: Option<libc::sighandler_t>,
) -> Result<libc::sighandler_t, SysError> {
    /// The kernel's `struct sigaction` (with `sa_restorer`, as on x86_64 and arm64).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let new = handler.map(|handler| KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    });
    let mut old = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |new| new as *const KernelSigaction);
    // SAFETY: `new_ptr` is null or a valid kernel sigaction, `old` is writable for the
    // call, and the size argument is the kernel's sigset size (8 bytes); the only
    // handler ever set is SIG_DFL.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            new_ptr,
            &mut old as *mut KernelSigaction,
            std::mem::size_of::<u64>(),
        )
    };
    if ret == -1 {
        return Err(SysError::new(
            format!("rt_sigaction({signal})"),
            Errno::last(),
        ));
    }
    Ok(old.handler)
}
