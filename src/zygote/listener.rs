//! The daemon's socket: created owner-only (a `--group` widens it), stale sockets
//! replaced, a live daemon never displaced; and the peer check on every connection.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::stat::Mode;

use crate::sys::{self, Context, SysError};

/// Who may use the daemon.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Uids allowed besides root and the daemon's own uid.
    pub extra_uids: Vec<u32>,
    /// A group whose members are allowed; the socket is made group-accessible for it.
    pub group: Option<u32>,
}

/// The credentials of a connected client.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Its pid (as seen from the daemon).
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl Access {
    /// Checks `SO_PEERCRED` (and for a group, `SO_PEERGROUPS`) of a new connection.
    pub fn check(&self, conn: BorrowedFd<'_>) -> Result<Peer, (Option<Peer>, String)> {
        let creds = socket::getsockopt(&conn, sockopt::PeerCredentials)
            .map_err(|e| (None, format!("cannot read the peer's credentials: {e}")))?;
        let peer = Peer {
            pid: creds.pid(),
            uid: creds.uid(),
            gid: creds.gid(),
        };
        let own = nix::unistd::geteuid().as_raw();
        if peer.uid == 0 || peer.uid == own || self.extra_uids.contains(&peer.uid) {
            return Ok(peer);
        }
        if let Some(group) = self.group {
            if peer.gid == group
                || sys::peer_groups(conn).is_ok_and(|groups| groups.contains(&group))
            {
                return Ok(peer);
            }
        }
        Err((
            Some(peer),
            format!("uid {} is not allowed to use this daemon", peer.uid),
        ))
    }
}

/// The listening socket; removes its file when dropped.
/// How many client connections the daemon keeps at once, in all and from one uid. A
/// connection past either bound is answered `Busy` and closed at once, so that no local
/// user can hold the daemon's fds (or its attention) away from the others.
///
/// ```
/// use hatchery::zygote::ConnectionLimits;
/// let limits = ConnectionLimits::for_open_files(1024);
/// assert_eq!((limits.total, limits.per_uid), (512, 128));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The most connections at once.
    pub total: usize,
    /// The most connections at once from one uid.
    pub per_uid: usize,
}

impl ConnectionLimits {
    /// The bounds that suit a process allowed `open_files` fds: half of them (at most
    /// 1024) for connections, the rest for the sandboxes (each holds a few) and the
    /// daemon itself; a quarter of those per uid.
    pub fn for_open_files(open_files: u64) -> ConnectionLimits {
        let total = (open_files / 2).clamp(4, 1024) as usize;
        ConnectionLimits {
            total,
            per_uid: (total / 4).max(1),
        }
    }

    /// The bounds for this process's open-files limit (`RLIMIT_NOFILE`, soft).
    pub fn for_this_process() -> ConnectionLimits {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap_or((1024, 1024));
        ConnectionLimits::for_open_files(soft)
    }
}

#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: PathBuf,
    /// Whether the daemon made the socket file (and so removes it when it stops);
    /// a socket passed by a service manager stays, for the next daemon to serve.
    owns_path: bool,
}

impl Listener {
    /// Binds a `SOCK_SEQPACKET` socket at `path`, mode 0600; 0660 and the group's with
    /// `access.group`; 0666 with `access.extra_uids` (the peer check then decides). A
    /// stale socket file (nobody listening) is replaced; a live daemon on the path is an
    /// `EADDRINUSE` error.
    pub fn bind(path: &Path, access: &Access) -> Result<Listener, SysError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(SysError::with_path(
                    "bind (path exists and is not a socket)",
                    path,
                    Errno::EEXIST,
                ));
            }
            if crate::client::probe_socket(path) {
                return Err(SysError::with_path(
                    "bind (another daemon is serving)",
                    path,
                    Errno::EADDRINUSE,
                ));
            }
            std::fs::remove_file(path).op_path("unlink", path)?;
        }
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .op("socket(AF_UNIX, SOCK_SEQPACKET)")?;
        let addr = UnixAddr::new(path).op_path("socket address", path)?;
        // The socket file is created with the umask applied: owner-only from the start,
        // so there is no window in which others could connect.
        let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o177));
        let bound = socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr);
        nix::sys::stat::umask(old);
        bound.op_path("bind", path)?;
        let listener = Listener {
            fd,
            path: path.to_path_buf(),
            owns_path: true,
        };
        if let Some(group) = access.group {
            nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(group)))
                .op_path("chown", path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .op_path("chmod", path)?;
        }
        if !access.extra_uids.is_empty() {
            // Other uids must reach the socket at all; SO_PEERCRED admits only theirs.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .op_path("chmod", path)?;
        }
        socket::listen(
            &listener.fd,
            socket::Backlog::new(128).unwrap_or(socket::Backlog::MAXCONN),
        )
        .op_path("listen", path)?;
        Ok(listener)
    }

    /// Accepts one pending connection, if any.
    pub fn accept(&self) -> Result<Option<OwnedFd>, SysError> {
        match sys::accept(self.fd.as_fd()) {
            Ok(fd) => Ok(Some(fd)),
            Err(e)
                if matches!(
                    e.errno(),
                    Errno::EAGAIN | Errno::ECONNABORTED | Errno::EINTR
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A listening socket a service manager passed (socket activation): served as it is
    /// (its mode and owner are the manager's), and left in place when the daemon stops,
    /// so that clients queue on it until the next daemon accepts.
    pub fn activated(fd: OwnedFd) -> Listener {
        let path = super::systemd::socket_path(fd.as_fd()).unwrap_or_default();
        Listener {
            fd,
            path,
            owns_path: false,
        }
    }

    /// Whether the daemon made the socket file (else a service manager passed it).
    pub fn owns_path(&self) -> bool {
        self.owns_path
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.owns_path {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
