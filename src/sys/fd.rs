//! File descriptors: placing them on fixed numbers (`dup3`), closing ranges of them
//! (`close_range`), stdio kept open, and `memfd_create`.
//!
//! Placing and closing run in a freshly cloned process (a sandbox's init, its workload,
//! the spare-namespace helper) before it runs anything of its own; `ensure_stdio_open`
//! and `memfd_create` in the zygote.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::{Context, SysError};

/// `close_range(first, last, flags)`: closes (or, with `CLOSE_RANGE_CLOEXEC`, marks
/// close-on-exec) every fd from `first` to `last`; `u32::MAX` means all the rest.
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), SysError> {
    close_range_errno(first, last, flags).map_err(|errno| SysError::new("close_range", errno))
}

/// [`close_range`] with every fd from `first` up marked close-on-exec, allocating
/// nothing, not even for its error: fit for a child that shares its parent's memory.
pub fn close_on_exec_from(first: u32) -> Result<(), Errno> {
    close_range_errno(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC)
}

fn close_range_errno(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: closing fds is memory-safe; callers (the sandbox init and workload) own the
    // fds in the range and hold no Rust object that still uses them.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if ret == -1 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `dup3(fd, target, flags)`: makes `target` a copy of `fd`, closing what `target` was.
///
/// Used to place stdio on 0, 1 and 2. When `fd` already is `target`, its close-on-exec
/// flag is cleared instead (dup3 refuses equal fds).
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), SysError> {
    if fd.as_raw_fd() == target {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).op("fcntl(F_GETFD)")?;
        let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags)).op("fcntl(F_SETFD)")?;
        return Ok(());
    }
    // SAFETY: dup3 only touches the fd table; `target` is a stdio slot this process owns.
    let ret = unsafe { libc::dup3(fd.as_raw_fd(), target, 0) };
    if ret == -1 {
        return Err(SysError::new("dup3", Errno::last()));
    }
    Ok(())
}

/// Opens `/dev/null` on any of fds 0, 1 and 2 that is closed, so that a later open can
/// never land on a stdio slot.
pub fn ensure_stdio_open() -> Result<(), SysError> {
    for slot in 0..=2 {
        if nix::fcntl::fcntl(
            // SAFETY: only probes whether `slot` is open; the borrow ends with the call.
            unsafe { BorrowedFd::borrow_raw(slot) },
            nix::fcntl::FcntlArg::F_GETFD,
        ) == Err(Errno::EBADF)
        {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            )
            .op_path("open", "/dev/null")?;
            if null.as_raw_fd() != slot {
                dup_onto(null.as_fd(), slot)?;
            } else {
                // It landed on the free slot: keep it open for good.
                std::mem::forget(null);
            }
        }
    }
    Ok(())
}

/// Closes every fd from `first` up but those in `keep` (in ascending order; any below
/// `first` is left alone anyway).
pub fn close_from_but(first: u32, keep: &[RawFd]) -> Result<(), SysError> {
    let mut first = first;
    for &fd in keep {
        let fd = fd as u32;
        if fd > first {
            close_range(first, fd - 1, 0)?;
        }
        first = first.max(fd + 1);
    }
    close_range(first, u32::MAX, 0)
}

/// Moves `fd` to the number `target` (closing what was there), close-on-exec cleared.
pub fn move_fd(fd: OwnedFd, target: RawFd) -> Result<OwnedFd, SysError> {
    if fd.as_raw_fd() != target {
        dup_onto(fd.as_fd(), target)?;
        drop(fd);
        // SAFETY: dup3 just made `target` a new fd that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(target) });
    }
    dup_onto(fd.as_fd(), target)?;
    Ok(fd)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, at_least)`: a close-on-exec copy of `fd` on the lowest
/// free number from `at_least` up.
pub fn dupfd_cloexec(fd: BorrowedFd<'_>, at_least: RawFd) -> Result<OwnedFd, SysError> {
    let copy = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(at_least))
        .op("fcntl(F_DUPFD_CLOEXEC)")?;
    // SAFETY: F_DUPFD_CLOEXEC just made `copy` a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// `memfd_create(2)`: an anonymous file, close-on-exec, with `extra_flags` (e.g.
/// `MFD_ALLOW_SEALING`).
pub fn memfd_create(name: &CStr, extra_flags: libc::c_uint) -> Result<OwnedFd, SysError> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | extra_flags) };
    if fd == -1 {
        return Err(SysError::new("memfd_create", Errno::last()));
    }
    // SAFETY: memfd_create succeeded, so `fd` is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The fd a new-mount-API call returned, or its error.
pub(super) fn new_fd(ret: libc::c_long, what: &'static str) -> Result<OwnedFd, SysError> {
    if ret < 0 {
        return Err(SysError::new(what, Errno::last()));
    }
    // SAFETY: the call succeeded, so `ret` is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}
