//! Passing a terminal's signals on to a sandbox: what `hatchery run` does while its child
//! runs, so that Ctrl-C, `kill PID` of the CLI, a hang-up or a quit reach the workload
//! (through its init) rather than ending the CLI and leaving the sandbox to its daemon;
//! and, before there is a child to pass them to, answering them at once, however long a
//! daemon takes to answer ([`ForwardedSignals::unless_interrupted`]). Runs in the client.

use std::convert::Infallible;
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
/// let client = Client::connect("/run/hatchery/hatchery.sock")?;
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

impl ForwardedSignals {
    /// Runs `work` (a connect, a spawn: a wait on a daemon that may never answer) on a
    /// thread of its own while this one watches the held signals, and returns what
    /// `work` returned; if a held signal arrives first and `work` does not finish within
    /// [`ANSWER_GRACE`] of it, `interrupted` gets it, and must end the process (it
    /// returns `Infallible`: `work` may be blocked for good and is not waited for).
    /// Ending the process closes the connection, and the daemon kills whatever it
    /// started for it. A signal whose answer was already on its way (`work` finishes
    /// within the grace) is held again, for [`ChildProcess::wait_forwarding`] to pass on:
    /// a program that already runs (and may have printed) gets it.
    ///
    /// ```no_run
    /// use hatchery::client::ForwardedSignals;
    /// use hatchery::{Client, SpawnRequest};
    /// let signals = ForwardedSignals::hold()?;
    /// let client = Client::connect("/run/hatchery/hatchery.sock")?;
    /// let stop = |signal: i32| -> std::convert::Infallible { std::process::exit(128 + signal) };
    /// let child = signals.unless_interrupted(|| client.spawn_child(SpawnRequest::new("/bin/true")), stop)??;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unless_interrupted<T: Send>(
        &self,
        work: impl FnOnce() -> T + Send,
        interrupted: impl FnOnce(i32) -> Infallible,
    ) -> Result<T, SysError> {
        let (done, finished) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).op("pipe2")?;
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let result = work();
                // Its closing wakes the watch below.
                drop(finished);
                result
            });
            loop {
                let mut fds = [
                    PollFd::new(done.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
                ];
                if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
                    if e != nix::errno::Errno::EINTR {
                        // Nothing left to watch with: wait for the work alone.
                        break;
                    }
                }
                if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    if let Ok(Some(info)) = self.fd.read_signal() {
                        let signo = info.ssi_signo as i32;
                        if !finishes_within(&done, ANSWER_GRACE) {
                            match interrupted(signo) {}
                        }
                        // Pending again, for whoever waits next; blocked, so it acts on
                        // nothing meanwhile.
                        if let Ok(signal) = Signal::try_from(signo) {
                            let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
                        }
                        break;
                    }
                }
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    break;
                }
            }
            match worker.join() {
                Ok(result) => Ok(result),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// How long a held signal waits for an answer already on its way before it interrupts
/// the wait for it: a daemon answers in milliseconds, and a program it started may have
/// run (and printed) before its answer arrived.
pub const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether `done` becomes readable (its writer closed) within `grace`.
fn finishes_within(done: &impl AsFd, grace: std::time::Duration) -> bool {
    let mut fds = [PollFd::new(done.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(grace).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
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
