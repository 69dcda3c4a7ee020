//! The typed channel between the zygote and one sandbox's init: one `SOCK_SEQPACKET`
//! socketpair per child, postcard messages on it, and methods named after protocol steps.
//!
//! The zygote end lives in the zygote; the sandbox end in the sandbox init (never in the
//! workload: it is close-on-exec and the init keeps the only copy).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::timeline::Timeline;
use super::SetupError;
use crate::protocol::{self, ExecRequest, ExitStatus, ProtocolError, SetupFailure, SpawnRequest};
use crate::sys::{Context, SysError};

/// The fd a sandbox's init keeps its end of the channel on (after its stdio on 0-2);
/// everything above it but an entry's result pipe is closed.
pub(super) const CHANNEL_FD: i32 = 3;

/// Zygote → sandbox.
#[derive(Debug, Serialize, Deserialize)]
enum ToSandbox {
    /// The uid/gid maps are written: setup may start.
    IdMapsWritten,
    /// The sandbox's veth network is configured and up: the workload may start.
    NetworkReady,
    /// The request a warm-pool sandbox runs (its stdio fds come with it); it is the
    /// only one that sandbox ever runs.
    Run(Box<SpawnRequest>),
    /// One more command for a persistent sandbox's init to fork (its three stdio fds
    /// come with it), numbered by the zygote.
    Exec {
        /// The zygote's number for it, in this sandbox.
        command: u64,
        /// What to run.
        request: Box<ExecRequest>,
    },
    /// A signal for a command's process group.
    Signal {
        /// The command.
        command: u64,
        /// The signal.
        signal: i32,
    },
}

/// Sandbox → zygote.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromSandbox {
    /// A setup step failed; the init exits without running the workload.
    SetupFailed(SetupError),
    /// The workload's `execve` succeeded; how long each part of the setup took.
    Execed(Timeline),
    /// The workload's `execve` failed with this errno.
    ExecFailed(i32),
    /// The workload ended so, and every other process of the sandbox has been killed
    /// and reaped; the init exits next.
    WorkloadExited {
        /// How it ended.
        status: ExitStatus,
        /// Processes and threads started in the sandbox (the pid namespace's last pid).
        tasks_started: Option<u64>,
        /// What the workload and every process it started used.
        usage: WorkloadUsage,
    },
    /// A persistent sandbox's command was exec'd.
    CommandStarted {
        /// The zygote's number for it.
        command: u64,
    },
    /// A persistent sandbox's command did not start.
    CommandFailed {
        /// The zygote's number for it.
        command: u64,
        /// Why.
        failure: CommandFailure,
    },
    /// A persistent sandbox's command (its first process) ended; what else it started
    /// may run on.
    CommandExited {
        /// The zygote's number for it.
        command: u64,
        /// How it ended.
        status: ExitStatus,
        /// What it and the children it waited for used.
        usage: WorkloadUsage,
    },
}

/// Why a persistent sandbox's command did not start.
#[derive(Debug, Serialize, Deserialize)]
pub enum CommandFailure {
    /// Its `execve` failed with this errno.
    Exec(i32),
    /// A step before it failed (its directory, its session, its filter...).
    Setup(SetupError),
}

/// CPU time and peak resident set of the processes an init has reaped (its
/// `RUSAGE_CHILDREN`): the workload and every process it started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct WorkloadUsage {
    pub user_cpu_us: u64,
    pub system_cpu_us: u64,
    pub max_rss_kib: u64,
}

impl From<&libc::rusage> for WorkloadUsage {
    fn from(usage: &libc::rusage) -> Self {
        let us =
            |tv: libc::timeval| (tv.tv_sec.max(0) as u64) * 1_000_000 + tv.tv_usec.max(0) as u64;
        WorkloadUsage {
            user_cpu_us: us(usage.ru_utime),
            system_cpu_us: us(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
        }
    }
}

/// Creates the socketpair: (zygote end, sandbox end), both close-on-exec.
pub fn pair() -> Result<(ZygoteEnd, SandboxEnd), SysError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .op("socketpair")?;
    Ok((ZygoteEnd(a), SandboxEnd(b)))
}

/// The zygote's end of one sandbox's channel.
#[derive(Debug)]
pub struct ZygoteEnd(OwnedFd);

impl ZygoteEnd {
    /// Tells the sandbox that its id maps are in place.
    pub fn id_maps_written(&self) -> Result<(), ProtocolError> {
        protocol::send(self.0.as_fd(), &ToSandbox::IdMapsWritten, &[])
    }

    /// Tells the sandbox that its veth network is up.
    pub fn network_ready(&self) -> Result<(), ProtocolError> {
        protocol::send(self.0.as_fd(), &ToSandbox::NetworkReady, &[])
    }

    /// Hands a warm-pool sandbox the request it is to run, with the workload's stdin,
    /// stdout and stderr.
    pub fn hand_over(
        &self,
        request: &SpawnRequest,
        stdio: &[BorrowedFd<'_>; 3],
    ) -> Result<(), ProtocolError> {
        // Cloning the request costs less than the round trip it saves; `Run` owns it so
        // that one type serves both ends.
        let message = ToSandbox::Run(Box::new(request.clone()));
        protocol::send(self.0.as_fd(), &message, stdio)
    }

    /// Sends a persistent sandbox's init one more command, with its stdin, stdout and
    /// stderr.
    pub fn exec(
        &self,
        command: u64,
        request: &ExecRequest,
        stdio: &[BorrowedFd<'_>; 3],
    ) -> Result<(), ProtocolError> {
        let message = ToSandbox::Exec {
            command,
            request: Box::new(request.clone()),
        };
        protocol::send(self.0.as_fd(), &message, stdio)
    }

    /// Asks a persistent sandbox's init to send `signal` to a command's process group.
    pub fn signal_command(&self, command: u64, signal: i32) -> Result<(), ProtocolError> {
        protocol::send(self.0.as_fd(), &ToSandbox::Signal { command, signal }, &[])
    }

    /// Reads one pending report without blocking.
    pub fn try_report(&self, buf: &mut protocol::RecvBuffer) -> Result<Pending, ProtocolError> {
        match protocol::recv::<FromSandbox>(self.0.as_fd(), buf, true) {
            Ok(Some((report, fds))) => Ok(Pending::Report(report, fds)),
            Ok(None) => Ok(Pending::Closed),
            Err(ProtocolError::Io(e)) if e.errno() == nix::errno::Errno::EAGAIN => {
                Ok(Pending::Nothing)
            }
            // The init was killed before it read all we sent: closed all the same.
            Err(ProtocolError::Io(e)) if e.errno() == nix::errno::Errno::ECONNRESET => {
                Ok(Pending::Closed)
            }
            Err(e) => Err(e),
        }
    }
}

/// What [`ZygoteEnd::try_report`] found.
#[derive(Debug)]
pub enum Pending {
    /// A report, with the fds that came with it (a command's terminal's master).
    Report(FromSandbox, Vec<OwnedFd>),
    /// Nothing yet.
    Nothing,
    /// The sandbox's init has closed its end (it has exited or is exiting).
    Closed,
}

impl AsFd for ZygoteEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The sandbox init's end of the channel.
#[derive(Debug)]
pub struct SandboxEnd(OwnedFd);

impl SandboxEnd {
    /// Blocks until the zygote has written the id maps. A closed channel means the
    /// zygote gave up on this child.
    pub fn wait_for_id_maps(&self) -> Result<(), SetupFailure> {
        match self.wait_for("the id maps written")? {
            (ToSandbox::IdMapsWritten, _) => Ok(()),
            (other, _) => Err(unexpected("the id maps written", &other)),
        }
    }

    /// Blocks until the zygote has brought the sandbox's veth network up. A closed
    /// channel means the zygote gave up on this child.
    pub fn wait_for_network(&self) -> Result<(), SetupFailure> {
        match self.wait_for("the network ready")? {
            (ToSandbox::NetworkReady, _) => Ok(()),
            (other, _) => Err(unexpected("the network ready", &other)),
        }
    }

    /// Blocks until the zygote hands this warm-pool sandbox its request and the
    /// workload's three stdio fds.
    pub fn wait_for_request(&self) -> Result<(SpawnRequest, [OwnedFd; 3]), SetupFailure> {
        const EXPECTED: &str = "a request with 3 stdio fds";
        match self.wait_for(EXPECTED)? {
            (ToSandbox::Run(request), fds) => {
                let count = fds.len();
                let stdio: [OwnedFd; 3] = fds.try_into().map_err(|_| SetupFailure::Protocol {
                    expected: EXPECTED.into(),
                    received: format!("a request with {count} fds"),
                })?;
                Ok((*request, stdio))
            }
            (other, _) => Err(unexpected(EXPECTED, &other)),
        }
    }

    /// Reads the zygote's next message to a persistent sandbox's init (which polled its
    /// end as readable): `None` once the zygote has closed its end.
    pub fn next_order(
        &self,
        buf: &mut protocol::RecvBuffer,
    ) -> Result<Option<Order>, SetupFailure> {
        const EXPECTED: &str = "a command or a signal";
        match protocol::recv::<ToSandbox>(self.0.as_fd(), buf, true) {
            Ok(None) => Ok(None),
            Ok(Some((ToSandbox::Exec { command, request }, fds))) => {
                let count = fds.len();
                let stdio: [OwnedFd; 3] = fds.try_into().map_err(|_| SetupFailure::Protocol {
                    expected: EXPECTED.into(),
                    received: format!("a command with {count} fds"),
                })?;
                Ok(Some(Order::Exec {
                    command,
                    request,
                    stdio,
                }))
            }
            Ok(Some((ToSandbox::Signal { command, signal }, _))) => {
                Ok(Some(Order::Signal { command, signal }))
            }
            Ok(Some((other, _))) => Err(unexpected(EXPECTED, &other)),
            Err(ProtocolError::Io(e))
                if matches!(
                    e.errno(),
                    nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR
                ) =>
            {
                Ok(Some(Order::Nothing))
            }
            Err(ProtocolError::Io(e)) => Err(e.into()),
            Err(other) => Err(SetupFailure::Protocol {
                expected: EXPECTED.into(),
                received: other.to_string(),
            }),
        }
    }

    /// Reports that a command was exec'd, with the master of its terminal if it has one.
    pub fn report_command_started(&self, command: u64, master: Option<OwnedFd>) {
        let fds: Vec<BorrowedFd<'_>> = master.iter().map(AsFd::as_fd).collect();
        let _ = protocol::send(
            self.0.as_fd(),
            &FromSandbox::CommandStarted { command },
            &fds,
        );
    }

    /// Reports that a command did not start.
    pub fn report_command_failed(&self, command: u64, failure: CommandFailure) {
        let report = FromSandbox::CommandFailed { command, failure };
        let _ = protocol::send(self.0.as_fd(), &report, &[]);
    }

    /// Reports that a command's first process ended.
    pub fn report_command_exited(&self, command: u64, status: ExitStatus, usage: WorkloadUsage) {
        let report = FromSandbox::CommandExited {
            command,
            status,
            usage,
        };
        let _ = protocol::send(self.0.as_fd(), &report, &[]);
    }

    /// Blocks until the zygote sends a message (`expected` names the one waited for).
    fn wait_for(&self, expected: &str) -> Result<(ToSandbox, Vec<OwnedFd>), SetupFailure> {
        let mut buf = protocol::RecvBuffer::new();
        loop {
            return match protocol::recv::<ToSandbox>(self.0.as_fd(), &mut buf, false) {
                Ok(Some(message)) => Ok(message),
                Ok(None) => Err(SetupFailure::ZygoteGone),
                // A forwarded signal is held, not handled, until the workload runs; but
                // be safe against an interrupted read all the same.
                Err(ProtocolError::Io(e)) if e.errno() == nix::errno::Errno::EINTR => continue,
                Err(ProtocolError::Io(e)) => Err(e.into()),
                Err(other) => Err(SetupFailure::Protocol {
                    expected: expected.into(),
                    received: other.to_string(),
                }),
            };
        }
    }

    /// Whether the zygote's end is closed (the zygote has died).
    pub fn zygote_gone(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // POLLHUP is reported whatever is asked for: the peer has closed its end.
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP))
    }

    /// Reports a failed setup step.
    pub fn report_failure(&self, error: SetupError) {
        // Nothing more can be done if the zygote is gone; the init exits next anyway.
        let _ = protocol::send(self.0.as_fd(), &FromSandbox::SetupFailed(error), &[]);
    }

    /// Reports how the workload's `execve` went.
    pub fn report_exec(&self, errno: Option<i32>) {
        let report = match errno {
            None => FromSandbox::Execed(Timeline::noted()),
            Some(errno) => FromSandbox::ExecFailed(errno),
        };
        let _ = protocol::send(self.0.as_fd(), &report, &[]);
    }

    /// Reports how the workload ended.
    pub fn report_exit(
        &self,
        status: ExitStatus,
        tasks_started: Option<u64>,
        usage: WorkloadUsage,
    ) {
        let report = FromSandbox::WorkloadExited {
            status,
            tasks_started,
            usage,
        };
        let _ = protocol::send(self.0.as_fd(), &report, &[]);
    }
}

/// The protocol failure of receiving `received` where `expected` was waited for.
fn unexpected(expected: &str, received: &ToSandbox) -> SetupFailure {
    let received = match received {
        ToSandbox::IdMapsWritten => "the id maps written",
        ToSandbox::NetworkReady => "the network ready",
        ToSandbox::Run(_) => "a request",
        ToSandbox::Exec { .. } => "a command",
        ToSandbox::Signal { .. } => "a signal for a command",
    };
    SetupFailure::Protocol {
        expected: expected.into(),
        received: received.into(),
    }
}

/// What the zygote asked of a persistent sandbox's init.
pub enum Order {
    /// Nothing after all (the read would block, or was interrupted).
    Nothing,
    /// Fork this command, with this stdio.
    Exec {
        /// The zygote's number for it.
        command: u64,
        /// What to run.
        request: Box<ExecRequest>,
        /// Its stdin, stdout and stderr.
        stdio: [OwnedFd; 3],
    },
    /// Send `signal` to the command's process group.
    Signal {
        /// The command.
        command: u64,
        /// The signal.
        signal: i32,
    },
}

impl From<OwnedFd> for SandboxEnd {
    fn from(fd: OwnedFd) -> Self {
        SandboxEnd(fd)
    }
}

impl From<SandboxEnd> for OwnedFd {
    fn from(end: SandboxEnd) -> Self {
        end.0
    }
}

impl AsFd for SandboxEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
