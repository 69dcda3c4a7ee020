//! A terminal session of `hatchery shell`, `hatchery run -t` and `hatchery exec -t` (the CLI's process):
//! the caller's terminal in raw mode, restored on every exit path (the guard's drop, and
//! the signals that would end this process read from a signalfd instead); its keys to
//! the command's pty, the pty's output to it, its size forwarded on `SIGWINCH`. The
//! caller's terminal itself never enters the sandbox: only bytes cross.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};

use hatchery::{error_chain as chain, ChildProcess, ExitStatus, Verdict};

/// The size a command's terminal gets when the caller has none.
pub const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// The caller's terminal size, or [`DEFAULT_SIZE`].
pub fn caller_size() -> (u16, u16) {
    hatchery::client::window_size(std::io::stdin().as_fd()).unwrap_or(DEFAULT_SIZE)
}

/// The caller's terminal in raw mode until dropped.
struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Raw mode on `fd` if it is a terminal; `None` if it is not.
    fn enter(fd: BorrowedFd<'a>) -> Result<Option<RawMode<'a>>, String> {
        let Ok(saved) = termios::tcgetattr(fd) else {
            return Ok(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSADRAIN, &raw)
            .map_err(|e| format!("cannot put the terminal in raw mode: {e}"))?;
        Ok(Some(RawMode { fd, saved }))
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSADRAIN, &self.saved);
    }
}

/// How a session ended.
pub enum Ended {
    /// The command ended, with this verdict.
    Exited(Verdict),
    /// A signal asked this process to end; the command was killed (its verdict, if the
    /// daemon gave it).
    Signaled(Signal, Option<Verdict>),
}

/// Runs the session of `child`, which has a terminal, until it ends.
pub fn session(child: &mut ChildProcess) -> Result<Ended, String> {
    let master = child
        .pty
        .take()
        .ok_or("the command came without its terminal")?;
    let stdin = std::io::stdin();
    let stdin_fd = stdin.as_fd();
    // What would end this process is read instead, so that the terminal is restored.
    let mut mask = SigSet::empty();
    for signal in [
        Signal::SIGWINCH,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        mask.add(signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;
    let raw = RawMode::enter(stdin_fd)?;
    let resize = |master: &std::fs::File| {
        let (rows, cols) = caller_size();
        let _ = hatchery::client::set_window_size(master.as_fd(), rows, cols);
    };
    if raw.is_some() {
        resize(&master);
    }
    let mut stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    let ended = loop {
        let mut fds = vec![
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let (output, signalled) = (ready(&fds[0]), ready(&fds[1]));
        let input = fds.get(2).is_some_and(ready);
        drop(fds);
        if output {
            match (&master).read(&mut buf) {
                Ok(0) | Err(_) => {
                    // Every end of its terminal is closed: the command's verdict is next.
                    break None;
                }
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                }
            }
        }
        // A resize before the keys that follow it.
        if signalled {
            let mut end = None;
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => resize(&master),
                    Ok(signal) => end = Some(signal),
                    Err(_) => {}
                }
            }
            // A signal that would end this process: the command is killed instead, and
            // the terminal restored below.
            if let Some(signal) = end {
                let _ = child.kill();
                break Some(signal);
            }
        }
        if input {
            match (&stdin).read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if (&master).write_all(&buf[..n]).is_err() {
                        stdin_open = false;
                    }
                }
            }
        }
        match child.try_wait() {
            Ok(Some(_)) => break None,
            Ok(None) => {}
            Err(e) => return Err(chain(&e)),
        }
    };
    // What the command printed last, before its end.
    drain(&master, &mut stdout);
    drop(raw);
    match ended {
        Some(signal) => Ok(Ended::Signaled(signal, child.wait().ok())),
        None => child.wait().map(Ended::Exited).map_err(|e| chain(&e)),
    }
}

/// Copies what the master still holds to `out`, without waiting for more.
fn drain(master: &std::fs::File, out: &mut std::io::Stdout) {
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 0 {
            return;
        }
        match (&*master).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
        }
    }
}

/// The exit code of a session: the command's, or 128 + the signal that ended this one.
pub fn exit_code(ended: &Ended) -> u8 {
    match ended {
        Ended::Exited(verdict) => (verdict.status.code() & 0xff) as u8,
        Ended::Signaled(signal, _) => (ExitStatus::Signaled(*signal as i32).code() & 0xff) as u8,
    }
}
