//! The embedded zygote of `hatchery run`: when no daemon is reachable, the CLI forks a
//! zygote of its own that serves exactly one connection (the CLI's) and exits once the
//! CLI hangs up and its sandbox is reaped, so that one command works on a fresh machine.
//! [`start`] runs in the CLI; `serve_one` in the forked zygote. It has the daemon's safe
//! default limits, and lets its one client lift them (`run --pids unlimited`): the person
//! at the command line is its operator.

use std::os::fd::OwnedFd;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use super::{Zygote, ZygoteConfig};
use crate::client::{Client, ConnectError};
use crate::network::NetworkSettings;
use crate::protocol::Layer;
use crate::protocol::LimitSet;
use crate::sys::{self, Context, SysError};

/// The embedded zygote's exit code when it cannot serve (hatchery's own failure).
const CANNOT_SERVE: i32 = 125;

/// Why the embedded zygote could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The socket pair or the fork failed.
    #[error("cannot start an embedded zygote")]
    Sys(#[source] SysError),
    /// The calling process runs more than one thread, so it must not fork.
    #[error("cannot start an embedded zygote: this process has {0} threads; it must be single-threaded to fork safely")]
    NotSingleThreaded(usize),
    /// The zygote did not answer the handshake (it has said why on stderr).
    #[error("the embedded zygote did not start")]
    Handshake(#[source] ConnectError),
}

/// The forked zygote, to be reaped once its client is done with it.
#[derive(Debug)]
pub struct EmbeddedZygote {
    pid: Pid,
}

impl EmbeddedZygote {
    /// Waits for the zygote to exit: drop every [`Client`] of it first (it serves until
    /// its connection closes and its sandbox is reaped).
    pub fn wait(self) {
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// Forks a zygote serving one connection and returns the client of it. With `network`,
/// the zygote offers veth networks from those pools (see [`NetworkSettings::embedded`]).
/// The zygote dies with this process (`PR_SET_PDEATHSIG`). The calling process must run
/// one thread (it forks); this is checked.
///
/// ```no_run
/// use hatchery::zygote::embedded;
/// use hatchery::SpawnRequest;
/// let (client, zygote) = embedded::start(None)?;
/// client.spawn_child(SpawnRequest::new("/bin/true"))?.wait()?;
/// drop(client);
/// zygote.wait();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start(network: Option<NetworkSettings>) -> Result<(Client, EmbeddedZygote), EmbeddedError> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .op("socketpair")
    .map_err(EmbeddedError::Sys)?;
    let single = match sys::Threads::now().map_err(EmbeddedError::Sys)? {
        sys::Threads::One(single) => single,
        sys::Threads::Many(threads) => return Err(EmbeddedError::NotSingleThreaded(threads)),
    };
    match sys::fork(single).map_err(EmbeddedError::Sys)? {
        sys::Forked::Child(_) => {
            drop(ours);
            sys::exit_now(serve_one(theirs, network))
        }
        sys::Forked::Parent(pid) => {
            drop(theirs);
            let zygote = EmbeddedZygote {
                pid: Pid::from_raw(pid),
            };
            let client = Client::handshake(ours).map_err(EmbeddedError::Handshake)?;
            Ok((client, zygote))
        }
    }
}

/// The embedded zygote's process: serves the one connection, then returns its exit code.
fn serve_one(conn: OwnedFd, network: Option<NetworkSettings>) -> i32 {
    // Out of the terminal's process group: a ^C is for the sandbox (forwarded by
    // `run`), not a shutdown request for this zygote. And gone when `run` is.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // The CLI holds the signals it forwards blocked; the zygote starts with none.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // Its one client is the user who started it, its operator: every layer may be
    // switched off and devices bound, as they ask (a daemon allows neither unless its
    // operator says so).
    let result = ZygoteConfig::new()
        .map(|mut config| {
            config.network = network;
            // The person running the command is this zygote's operator: the safe
            // defaults hold unless they ask, on its command line, to lift one.
            config.limits.allow_unlimited = LimitSet::all();
            config.allowed_opt_outs = Layer::ALL.to_vec();
            config.allow_dev_binds = true;
            config
        })
        .and_then(Zygote::new)
        .and_then(|z| z.serve_connection(conn));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hatchery: embedded zygote: {}", crate::error_chain(&e));
            CANNOT_SERVE
        }
    }
}
