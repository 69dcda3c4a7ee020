//! What a service manager hands the daemon and what the daemon tells it: the listening
//! socket of socket activation (`LISTEN_FDS`, `LISTEN_PID`) and readiness through
//! `NOTIFY_SOCKET` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`). Both protocols
//! are systemd's, written here without libsystemd: a few environment variables, one fd
//! and one datagram. Runs in the daemon process, before and while it serves.
//!
//! The variables are taken out of the daemon's environment as soon as they are read, so
//! no process the daemon starts (its namespace helper, a sandbox) ever sees them, and a
//! sandbox's environment is in any case exactly its request's.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use nix::sys::socket::{self, sockopt, AddressFamily, SockType, SockaddrLike};

use crate::sys::{self, SysError};

/// The variables of socket activation, removed from the environment once read.
const ACTIVATION_VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// The variable naming the service manager's notification socket.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Why the socket a service manager passed cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` or `LISTEN_PID` is not a number.
    #[error("{variable}={value:?} is not a number")]
    NotANumber {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// More or fewer than one socket was passed.
    #[error("LISTEN_FDS={0}: the daemon serves exactly one socket (give the .socket unit one ListenSequentialPacket=)")]
    Count(u32),
    /// The passed fd is not what the daemon can serve.
    #[error("the socket passed as fd 3 is {0}, not a listening AF_UNIX SOCK_SEQPACKET socket (ListenSequentialPacket= in the .socket unit)")]
    WrongKind(String),
    /// A system call on the passed fd failed.
    #[error("the socket passed as fd 3")]
    Sys(#[source] SysError),
}

/// The listening socket passed by a service manager, if `LISTEN_PID` names this process
/// and `LISTEN_FDS` is set, checked to be a listening `AF_UNIX` `SOCK_SEQPACKET` socket.
/// The variables are removed from the environment in every case (when `LISTEN_PID` names
/// another process, they were meant for it and are ignored). Call once, single-threaded.
pub fn activated_socket() -> Result<Option<OwnedFd>, ActivationError> {
    let read = |variable: &'static str| std::env::var(variable).ok();
    let (pid, fds) = (read("LISTEN_PID"), read("LISTEN_FDS"));
    for variable in ACTIVATION_VARIABLES {
        std::env::remove_var(variable);
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let number = |variable: &'static str, value: &str| {
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| ActivationError::NotANumber {
                variable,
                value: value.to_string(),
            })
    };
    if number("LISTEN_PID", &pid)? != std::process::id() {
        tracing::info!(listen_pid = %pid, "LISTEN_PID names another process; its sockets are not ours");
        return Ok(None);
    }
    let count = number("LISTEN_FDS", &fds)?;
    if count != 1 {
        return Err(ActivationError::Count(count));
    }
    let fd = sys::take_activated_socket().map_err(ActivationError::Sys)?;
    check_listening_seqpacket(fd.as_fd())?;
    Ok(Some(fd))
}

/// Whether `fd` is a listening `AF_UNIX` `SOCK_SEQPACKET` socket.
fn check_listening_seqpacket(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), ActivationError> {
    let sys_error = |op: &'static str| move |e| ActivationError::Sys(SysError::new(op, e));
    let kind =
        socket::getsockopt(&fd, sockopt::SockType).map_err(sys_error("getsockopt(SO_TYPE)"))?;
    let listening = socket::getsockopt(&fd, sockopt::AcceptConn)
        .map_err(sys_error("getsockopt(SO_ACCEPTCONN)"))?;
    let family =
        socket::getsockname::<socket::SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .map_err(sys_error("getsockname"))?
            .family();
    if kind != SockType::SeqPacket || !listening || family != Some(AddressFamily::Unix) {
        return Err(ActivationError::WrongKind(format!(
            "{family:?} {kind:?}{}",
            if listening { "" } else { ", not listening" }
        )));
    }
    Ok(())
}

/// The path an activated socket is bound to, for the log (`None`: abstract or unnamed).
pub fn socket_path(fd: std::os::fd::BorrowedFd<'_>) -> Option<PathBuf> {
    socket::getsockname::<socket::UnixAddr>(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .ok()
        .and_then(|addr| addr.path().map(PathBuf::from))
}

/// Where the daemon reports its state to a service manager (`NOTIFY_SOCKET`), if one
/// asked; each report is one datagram, sent without waiting (a manager that does not
/// read loses it, the daemon never blocks on it).
pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("address", &self.address)
            .finish()
    }
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET` (a path, or an abstract name written `@NAME`),
    /// which is removed from the environment; `None` when it is unset or unusable (said
    /// in the log). Call once, single-threaded.
    pub fn from_environment() -> Option<Notifier> {
        let value = std::env::var_os(NOTIFY_SOCKET)?;
        std::env::remove_var(NOTIFY_SOCKET);
        Notifier::to(&value)
    }

    /// The notifier of the socket `value` names (as `NOTIFY_SOCKET` would).
    fn to(value: &std::ffi::OsStr) -> Option<Notifier> {
        let made = (|| {
            use std::os::unix::ffi::OsStrExt;
            let bytes = value.as_bytes();
            let address = match bytes.first() {
                Some(b'@') => {
                    use std::os::linux::net::SocketAddrExt;
                    std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?
                }
                Some(b'/') => std::os::unix::net::SocketAddr::from_pathname(value)?,
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "neither an absolute path nor @NAME",
                    ))
                }
            };
            let socket = UnixDatagram::unbound()?;
            socket.set_nonblocking(true)?;
            Ok(Notifier { socket, address })
        })();
        match made {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                tracing::warn!(notify_socket = ?value, error = %e, "cannot notify the service manager");
                None
            }
        }
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines); a failure is logged once
    /// per call, never fatal.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::debug!(error = %e, state, "service manager notification not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_arrives_as_one_datagram() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::to(path.as_os_str()).expect("a notifier");
        assert!(Notifier::to(std::ffi::OsStr::new("relative")).is_none());
        notifier.notify("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("a datagram");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
    }

    #[test]
    fn a_plain_socket_of_another_kind_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("a pair");
        let err = check_listening_seqpacket(a.as_fd()).unwrap_err();
        assert!(
            err.to_string()
                .contains("not a listening AF_UNIX SOCK_SEQPACKET"),
            "{err}"
        );
    }
}
