//! Passing a terminal's signals on to a sandbox: what `hatchery run` does while its child
//! runs, so that Ctrl-C, `kill PID` of the CLI, a hang-up or a quit reach the workload
//! (through its init) rather than ending the CLI and leaving the sandbox to its daemon.
//! Runs in the client.

use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{ChildProcess, ClientError};
use crate::protocol::Verdict;
use crate::sys::{Context, SysError};

/// The signals a client passes on to its sandbox.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Why waiting while forwarding signals failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Holding or polling the signals failed.
    #[error("forwarding signals")]
    Sys(#[source] SysError),
    /// Signalling or waiting for the child failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// `SIGINT`, `SIGTERM`, `SIGHUP` and `SIGQUIT`, blocked for this thread and read from a
/// signalfd, so that none is lost between holding them and the child's start.
///
/// ```no_run
/// use hatchery::client::ForwardedSignals;
/// use hatchery::{Client, SpawnRequest};
/// let signals = ForwardedSignals::hold()?; // before the spawn
/// let client = Client::connect("/run/hatchery.sock")?;
/// let mut child = client.spawn_child(SpawnRequest::new("/bin/sleep").arg("10"))?;
/// let verdict = child.wait_forwarding(&signals)?; // a Ctrl-C now reaches the sleep
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ForwardedSignals {
    fd: SignalFd,
}

impl ForwardedSignals {
    /// Blocks the forwarded signals for the calling thread and opens a signalfd for
    /// them. Call it before spawning, on the thread that will wait.
    pub fn hold() -> Result<ForwardedSignals, SysError> {
        let mut mask = SigSet::empty();
        for signal in FORWARDED {
            mask.add(signal);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .op("sigprocmask")?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .op("signalfd")?;
        Ok(ForwardedSignals { fd })
    }
}

impl ChildProcess {
    /// Closes the child's stdin pipe (if the client holds it), then waits for the child
    /// to end, sending it every held signal that arrives meanwhile.
    pub fn wait_forwarding(&mut self, signals: &ForwardedSignals) -> Result<Verdict, ForwardError> {
        drop(self.stdin.take());
        while let Some(pidfd) = self.pidfd() {
            let mut fds = [
                PollFd::new(pidfd, PollFlags::POLLIN),
                PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(ForwardError::Sys(SysError::new("poll", e))),
            }
            let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                while let Ok(Some(info)) = signals.fd.read_signal() {
                    self.signal(info.ssi_signo as i32)?;
                }
            }
            if exited {
                break;
            }
        }
        Ok(self.wait()?)
    }
}
