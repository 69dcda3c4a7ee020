//! Sockets: `accept4`, the peer's groups, datagrams with fds attached (`SCM_RIGHTS`),
//! and the loopback interface brought up.
//!
//! The zygote accepts clients and exchanges messages and fds with them and with its
//! sandboxes; a sandbox's init (or the spare-namespace helper) brings up the loopback of
//! its new network namespace.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::{Context, SysError};

/// Brings the loopback interface up with `SIOCSIFFLAGS` (cheaper than a netlink socket).
pub fn loopback_up() -> Result<(), SysError> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .op("socket(AF_INET)")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags inside `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } == -1 {
        return Err(SysError::with_path(
            "ioctl(SIOCGIFFLAGS)",
            "lo",
            Errno::last(),
        ));
    }
    // SAFETY: the kernel filled the flags member of the union just above.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // Up already in a namespace made ahead (see `sandbox::spare_namespaces`), where the sandbox
    // could not change it.
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads `req`, which holds the name and the new flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } == -1 {
        return Err(SysError::with_path(
            "ioctl(SIOCSIFFLAGS)",
            "lo",
            Errno::last(),
        ));
    }
    Ok(())
}

/// `accept4(2)` with `SOCK_CLOEXEC | SOCK_NONBLOCK`.
pub fn accept(listener: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let fd = nix::sys::socket::accept4(
        listener.as_raw_fd(),
        nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
    )
    .op("accept4")?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The first fd a service manager passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Takes ownership of the listening socket a service manager passed at exec as fd
/// [`LISTEN_FDS_START`] (`LISTEN_FDS=1`), once per process: a second call fails with
/// `EBADF`, as does a call when that fd is not open. Sets it close-on-exec and
/// non-blocking.
pub fn take_activated_socket() -> Result<OwnedFd, SysError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let op = "fcntl(3, F_GETFD) (the socket passed by LISTEN_FDS)";
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(SysError::new(op, Errno::EBADF));
    }
    // SAFETY: F_GETFD only reads the fd's flags; an fd that is not open gives EBADF.
    if unsafe { libc::fcntl(LISTEN_FDS_START, libc::F_GETFD) } == -1 {
        return Err(SysError::new(op, Errno::last()));
    }
    // SAFETY: the fd is open (F_GETFD succeeded) and was passed to this process at exec
    // for it to own (the LISTEN_FDS protocol); the flag above makes this the only
    // `OwnedFd` ever made of it, and nothing else in the crate uses fd 3 by number.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .op("fcntl(F_SETFD, FD_CLOEXEC)")?;
    let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).op("fcntl(F_GETFL)")?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))
        .op("fcntl(F_SETFL, O_NONBLOCK)")?;
    Ok(fd)
}

/// The supplementary groups of a socket's peer (`SO_PEERGROUPS`).
pub fn peer_groups(sock: BorrowedFd<'_>) -> Result<Vec<u32>, SysError> {
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<u32>()) as libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes and the kernel writes at most that many.
        let ret = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<u32>();
        if ret == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let errno = Errno::last();
        if errno == Errno::ERANGE && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Err(SysError::new("getsockopt(SO_PEERGROUPS)", errno));
    }
}

/// One message received with [`recv_with_fds`].
pub struct Received {
    /// Bytes of the message (0 at end of stream).
    pub len: usize,
    /// The fds that came with it, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The message was longer than the buffer.
    pub truncated: bool,
    /// More fds came than the protocol allows (they are in `fds`, to be closed).
    pub fds_truncated: bool,
}

/// The most fds one message of the protocol may carry.
pub const MAX_FDS_PER_MESSAGE: usize = 16;

/// The most fds the kernel passes in one message (`SCM_MAX_FD`). The control buffer is
/// sized for it, so a message is never truncated: a truncated control message would
/// leave the fds that did arrive in our table with nothing to close them.
const SCM_MAX_FD: usize = 253;

/// `recvmsg(2)` of one datagram with `MSG_CMSG_CLOEXEC`, collecting passed fds.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> Result<Received, SysError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let mut iov = [IoSliceMut::new(buf)];
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags).op("recvmsg")?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().op("recvmsg(cmsg)")? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: SCM_RIGHTS installed these fds in our table just now; we are
                // their only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        fds_truncated: msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > MAX_FDS_PER_MESSAGE,
        fds,
    })
}

/// `sendmsg(2)` of one datagram with fds attached (`SCM_RIGHTS`).
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), SysError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(bytes)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() {
        &[]
    } else {
        &[ControlMessage::ScmRights(&raw)]
    };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).op("sendmsg")?;
    Ok(())
}
