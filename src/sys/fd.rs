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
///
/// # Safety
///
/// Unless `flags` holds `CLOSE_RANGE_CLOEXEC`, no object that will still be used or
/// dropped may own an fd of the range (an `OwnedFd` would act on whatever file takes its
/// number next). A process made by a clone calls `NewProcess::close_range` instead.
pub unsafe fn close_range(first: u32, last: u32, flags: u32) -> Result<(), SysError> {
    // SAFETY: the caller's contract, when `flags` closes; marking close-on-exec leaves
    // every fd open where it was.
    unsafe { close_range_errno(first, last, flags) }
        .map_err(|errno| SysError::new("close_range", errno))
}

/// [`close_range`] with every fd from `first` up marked close-on-exec, allocating
/// nothing, not even for its error: fit for a child that shares its parent's memory.
pub fn close_on_exec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: the flag marks the fds close-on-exec and closes none.
    unsafe { close_range_errno(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) }
}

/// [`close_range`], its errno bare.
///
/// # Safety
///
/// As for [`close_range`].
unsafe fn close_range_errno(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: close_range takes plain integers; that no owner is left to the fds it
    // closes is the caller's contract.
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
///
/// # Safety
///
/// No object that will still be used or dropped may own `target` (it would act on
/// `fd`'s file from then on). A process made by a clone calls `NewProcess::dup_onto`
/// instead.
pub unsafe fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), SysError> {
    if fd.as_raw_fd() == target {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).op("fcntl(F_GETFD)")?;
        let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags)).op("fcntl(F_SETFD)")?;
        return Ok(());
    }
    // SAFETY: dup3 only touches the fd table; that nothing owns `target` is the caller's
    // contract.
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
                // SAFETY: `slot` was closed just above (EBADF), so nothing owns it.
                unsafe { dup_onto(null.as_fd(), slot) }?;
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
///
/// # Safety
///
/// As for [`close_range`]: no object that will still be used or dropped may own an fd
/// it closes. A process made by a clone calls `NewProcess::close_from_but` instead.
pub unsafe fn close_from_but(first: u32, keep: &[RawFd]) -> Result<(), SysError> {
    let mut first = first;
    for &fd in keep {
        let fd = fd as u32;
        if fd > first {
            // SAFETY: the caller's contract, for every fd this closes.
            unsafe { close_range(first, fd - 1, 0) }?;
        }
        first = first.max(fd + 1);
    }
    // SAFETY: as above.
    unsafe { close_range(first, u32::MAX, 0) }
}

/// Moves `fd` to the number `target` (closing what was there), close-on-exec cleared.
///
/// # Safety
///
/// As for [`dup_onto`]: no object that will still be used or dropped may own `target`.
/// A process made by a clone calls `NewProcess::move_fd` instead.
pub unsafe fn move_fd(fd: OwnedFd, target: RawFd) -> Result<OwnedFd, SysError> {
    // SAFETY: the caller's contract: nothing owns `target` (or it is `fd` itself).
    unsafe { dup_onto(fd.as_fd(), target) }?;
    if fd.as_raw_fd() != target {
        drop(fd);
        // SAFETY: dup3 just made `target` a new fd that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(target) });
    }
    Ok(fd)
}

/// The fd operations of a process that a clone just made (see [`super::NewProcess`]), on the
/// fds it inherited: its copy of its parent's memory holds objects that own some of
/// them, which it never uses or drops again (it ends in `execve` or [`exit_now`]), so it
/// may close them under those objects, and place its own fds on their numbers.
///
/// What each one closes or replaces must still be owned by nothing the new process uses
/// from then on: the fds it keeps using are passed by value (`move_fd`), kept (`keep`),
/// or outside the range. These are the crate's own, for the sandbox init, its workload
/// and the spare-namespace helper, which arrange their fds first thing after their clone.
///
/// [`exit_now`]: super::exit_now
#[cfg(feature = "daemon")]
impl super::NewProcess {
    /// [`close_range`] without flags: closes every fd from `first` to `last`.
    pub(crate) fn close_range(&self, first: u32, last: u32) -> Result<(), SysError> {
        // SAFETY: in a new process (`self`), on fds it inherited and no longer uses
        // (this impl's contract).
        unsafe { close_range(first, last, 0) }
    }

    /// [`dup_onto`]: makes `target` a copy of `fd`.
    pub(crate) fn dup_onto(&self, fd: BorrowedFd<'_>, target: RawFd) -> Result<(), SysError> {
        // SAFETY: as in `close_range`: `target` is an inherited fd no longer used.
        unsafe { dup_onto(fd, target) }
    }

    /// [`move_fd`]: moves `fd` to `target`.
    pub(crate) fn move_fd(&self, fd: OwnedFd, target: RawFd) -> Result<OwnedFd, SysError> {
        // SAFETY: as in `close_range`: `target` is an inherited fd no longer used.
        unsafe { move_fd(fd, target) }
    }

    /// [`close_from_but`]: closes every fd from `first` up but `keep`.
    pub(crate) fn close_from_but(&self, first: u32, keep: &[RawFd]) -> Result<(), SysError> {
        // SAFETY: as in `close_range`: `keep` holds every fd from `first` up that the
        // new process still uses.
        unsafe { close_from_but(first, keep) }
    }
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
