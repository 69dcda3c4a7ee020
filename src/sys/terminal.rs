//! Terminals: a pty pair from a devpts instance, a window size, a controlling terminal.
//! Runs in a persistent sandbox's init (the pair, from the sandbox's own devpts), its
//! command (the controlling terminal, allocation-free) and the client (a resize).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::{Context, SysError};

/// Opens a pty pair from the devpts instance whose `ptmx` is at `ptmx`: the master, and
/// its slave by `TIOCGPTPEER` (no path lookup in `/dev/pts`), both close-on-exec and
/// neither a controlling terminal of this process; the window is `rows` × `cols`.
pub fn open_pty(
    ptmx: &std::path::Path,
    rows: u16,
    cols: u16,
) -> Result<(OwnedFd, OwnedFd), SysError> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master =
        nix::fcntl::open(ptmx, flags, nix::sys::stat::Mode::empty()).op_path("open", ptmx)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } == -1 {
        return Err(SysError::new("ioctl(TIOCSPTLCK)", Errno::last()));
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd, or -1.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags.bits()) };
    if slave == -1 {
        return Err(SysError::new("ioctl(TIOCGPTPEER)", Errno::last()));
    }
    // SAFETY: the ioctl just returned this fd, which nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    set_window_size(std::os::fd::AsFd::as_fd(&master), rows, cols)?;
    Ok((master, slave))
}

/// `TIOCSWINSZ`: sets the window size of the terminal `fd` (a pty's master or slave);
/// its foreground process group gets `SIGWINCH`.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), SysError> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, valid for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } == -1 {
        return Err(SysError::new("ioctl(TIOCSWINSZ)", Errno::last()));
    }
    Ok(())
}

/// `TIOCGWINSZ`: the window size of the terminal `fd`, as (rows, columns).
pub fn window_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), SysError> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, valid for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } == -1 {
        return Err(SysError::new("ioctl(TIOCGWINSZ)", Errno::last()));
    }
    Ok((size.ws_row, size.ws_col))
}

/// `TIOCSCTTY` on fd 0: makes the terminal on this process's stdin its controlling
/// terminal; the process must lead a session that has none. Allocates nothing (a
/// command calls it between its `setsid` and its `execve`, sharing the init's memory).
pub fn set_controlling_terminal_stdin() -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an int by value (0: do not steal it from another session);
    // fd 0 is only read as a number by the kernel.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } == -1 {
        return Err(Errno::last());
    }
    Ok(())
}
