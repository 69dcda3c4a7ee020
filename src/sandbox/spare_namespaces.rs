//! Spare network and IPC namespaces, made ahead by a helper process so that creating
//! them is not on a spawn's critical path.
//!
//! A new network namespace is the dearest part of a sandbox's `clone3` (about half a
//! millisecond here, most of it the kernel initialising every network subsystem for
//! it), and an IPC namespace the next dearest (some 20–50 µs: its sysctls and its
//! internal `mqueue` mount). The daemon forks a small helper once, `hatchery-netns`,
//! that makes a pair of them on request while the daemon and the sandboxes use the
//! other CPU: `unshare(CLONE_NEWNET | CLONE_NEWIPC)`, `lo` up, an fd of each sent to
//! the daemon, then back to its own namespaces, so that it holds none it made. The
//! daemon keeps [`SPARES`] pairs and clones a sandbox into one with `setns` before its
//! `clone3` (which then omits [`FLAGS`]) and back after; it closes its fds of them right
//! away, so they live exactly as long as the sandbox. It asks for replacements once no
//! sandbox is being set up (or when none is left): a spawn's new init would otherwise
//! wait for the CPU the helper is busy on.
//!
//! Such namespaces belong to the host's user namespace, not the sandbox's: the sandbox
//! holds no capability over them, even before it drops its own, which is strictly less
//! than namespaces of its own would give it (it cannot change the IPC limits of its
//! namespace, say). Where the helper cannot make namespaces (no `CAP_SYS_ADMIN`: a
//! container, an unprivileged daemon), it says so once and every sandbox makes its
//! own, as without spares.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use crate::protocol::{self, RecvBuffer};
use crate::sys::{self, Context, NewProcess, SingleThreaded, SysError};

/// How many pairs the daemon keeps ready: one for the next spawn, one for a second
/// client's spawn while the helper makes the next.
pub const SPARES: usize = 2;

/// The namespaces a spare pair gives a sandbox, which its `clone3` then omits.
pub const FLAGS: u64 = (libc::CLONE_NEWNET | libc::CLONE_NEWIPC) as u64;

/// The helper's command name (`/proc/PID/comm`).
pub const HELPER_NAME: &std::ffi::CStr = c"hatchery-netns";

/// The helper's answer to one request.
#[derive(Debug, Serialize, Deserialize)]
enum Made {
    /// A pair, the network namespace's fd then the IPC namespace's attached.
    Namespaces,
    /// It cannot make namespaces; it exits after saying so.
    Failed(SysError),
}

/// A network and an IPC namespace for one sandbox (or the daemon's own pair).
#[derive(Debug)]
pub struct Pair {
    net: OwnedFd,
    ipc: OwnedFd,
}

impl Pair {
    /// The calling thread's own.
    fn own() -> Result<Pair, SysError> {
        Ok(Pair {
            net: sys::own_netns()?,
            ipc: sys::own_namespace("ipc")?,
        })
    }

    /// Moves the calling thread into them.
    fn enter(&self) -> Result<(), SysError> {
        nix::sched::setns(&self.net, CloneFlags::CLONE_NEWNET).op("setns(CLONE_NEWNET)")?;
        nix::sched::setns(&self.ipc, CloneFlags::CLONE_NEWIPC).op("setns(CLONE_NEWIPC)")
    }
}

/// The daemon's side: the helper, and the pairs it has made and not yet given out.
#[derive(Debug)]
pub struct SpareNamespaces {
    helper: OwnedFd,
    socket: OwnedFd,
    /// The daemon's own namespaces, to return to after each clone.
    home: Pair,
    ready: Vec<Pair>,
    /// Requests sent that the helper has not answered yet.
    asked: usize,
}

impl SpareNamespaces {
    /// Forks the helper and asks it for the first namespaces. The caller must be
    /// single-threaded.
    pub fn start(
        single: SingleThreaded,
        dev_null: BorrowedFd<'_>,
    ) -> Result<SpareNamespaces, SysError> {
        let home = Pair::own()?;
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
        )
        .op("socketpair")?;
        let daemon = nix::unistd::getpid();
        match sys::clone3(single, 0, None)? {
            sys::Cloned::Child(process) => {
                drop(ours);
                helper(process, theirs, home, dev_null, daemon)
            }
            sys::Cloned::Parent { pidfd, .. } => {
                let mut spares = SpareNamespaces {
                    helper: pidfd,
                    socket: ours,
                    home,
                    ready: Vec::with_capacity(SPARES),
                    asked: 0,
                };
                spares.ask();
                Ok(spares)
            }
        }
    }

    /// The socket to poll while answers are due.
    pub fn awaited(&self) -> Option<BorrowedFd<'_>> {
        (self.asked > 0).then(|| self.socket.as_fd())
    }

    /// Takes the helper's answers. `Err` when it can make no more (it has failed or
    /// gone): the caller drops this and sandboxes make their own namespaces.
    pub fn receive(&mut self, buf: &mut RecvBuffer) -> Result<(), String> {
        loop {
            match protocol::recv::<Made>(self.socket.as_fd(), buf, true) {
                Ok(Some((Made::Namespaces, fds))) if fds.len() == 2 => {
                    self.asked = self.asked.saturating_sub(1);
                    let [net, ipc]: [OwnedFd; 2] = fds.try_into().expect("two fds");
                    self.ready.push(Pair { net, ipc });
                }
                Ok(Some((Made::Failed(error), _))) => return Err(crate::error_chain(&error)),
                Ok(Some((Made::Namespaces, fds))) => {
                    return Err(format!("the helper sent {} fds, not two", fds.len()))
                }
                Ok(None) => return Err("the helper is gone".into()),
                Err(protocol::ProtocolError::Io(e)) if e.errno() == Errno::EAGAIN => return Ok(()),
                Err(e) => return Err(crate::error_chain(&e)),
            }
        }
    }

    /// A spare pair, if one is ready. Its replacement is asked for by
    /// [`SpareNamespaces::replenish`].
    pub fn take(&mut self) -> Option<Pair> {
        self.ready.pop()
    }

    /// Asks for the namespaces taken since the last call: all of them when `quiet` (no
    /// sandbox is being set up, so the helper's work takes no CPU from a spawn's
    /// critical path), otherwise only when none is left or on its way.
    pub fn replenish(&mut self, quiet: bool) {
        if quiet || self.ready.len() + self.asked == 0 {
            self.ask();
        }
    }

    /// Runs `clone` (a `clone3` without [`FLAGS`]) in the namespaces `spare`, then
    /// returns to the daemon's own; the child stays in `spare`. A daemon that cannot
    /// return aborts rather than go on serving from a sandbox's namespaces.
    pub fn clone_into(
        &self,
        spare: Pair,
        clone: impl FnOnce() -> Result<sys::Cloned, SysError>,
    ) -> Result<sys::Cloned, SysError> {
        if let Err(e) = spare.enter() {
            self.return_home();
            return Err(e);
        }
        let cloned = clone();
        if !matches!(cloned, Ok(sys::Cloned::Child(_))) {
            self.return_home();
        }
        cloned
    }

    /// Back to the daemon's own namespaces, or abort.
    fn return_home(&self) {
        if let Err(e) = self.home.enter() {
            tracing::error!(error = %e, "cannot return to the daemon's namespaces");
            std::process::abort();
        }
    }

    /// Asks the helper for as many namespaces as are missing.
    fn ask(&mut self) {
        while self.ready.len() + self.asked < SPARES {
            if sys::send_with_fds(self.socket.as_fd(), &[1], &[]).is_err() {
                // Full or gone: the answers to come, or the hang-up, tell.
                return;
            }
            self.asked += 1;
        }
    }
}

impl Drop for SpareNamespaces {
    /// Ends the helper and reaps it (unless the daemon's own reaping got there first);
    /// the spare namespaces go with their fds.
    fn drop(&mut self) {
        let _ = sys::pidfd_send_signal(self.helper.as_fd(), libc::SIGKILL);
        let _ = sys::wait_pidfd(self.helper.as_fd());
    }
}

/// The helper's whole life: one pair per request byte, until the daemon hangs up or
/// dies. Never returns.
fn helper(
    process: NewProcess,
    socket: OwnedFd,
    home: Pair,
    dev_null: BorrowedFd<'_>,
    daemon: nix::unistd::Pid,
) -> ! {
    let _ = nix::sys::prctl::set_name(HELPER_NAME);
    // Nothing of the daemon's but its stdio slots (on /dev/null) and these three fds.
    let kept = (0..=2)
        .try_for_each(|slot| process.dup_onto(dev_null, slot))
        .and_then(|()| {
            let mut keep = [
                socket.as_raw_fd(),
                home.net.as_raw_fd(),
                home.ipc.as_raw_fd(),
            ];
            keep.sort_unstable();
            process.close_from_but(3, &keep)
        });
    if kept.is_err() {
        sys::exit_now(1)
    }
    let _ = sys::sigprocmask(libc::SIG_SETMASK, &[]);
    // It dies with the daemon, which may already be gone.
    if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err()
        || nix::unistd::getppid() != daemon
    {
        sys::exit_now(1)
    }
    let _ = nix::fcntl::fcntl(
        &socket,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    );
    let mut request = [0u8; 1];
    loop {
        match nix::sys::socket::recv(
            socket.as_raw_fd(),
            &mut request,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(0) => sys::exit_now(0),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => sys::exit_now(1),
        }
        let sent = match make(&home) {
            Ok(pair) => protocol::send(
                socket.as_fd(),
                &Made::Namespaces,
                &[pair.net.as_fd(), pair.ipc.as_fd()],
            ),
            Err(error) => {
                let _ = protocol::send(socket.as_fd(), &Made::Failed(error), &[]);
                sys::exit_now(1)
            }
        };
        if sent.is_err() {
            sys::exit_now(1)
        }
    }
}

/// One pair, its network namespace with `lo` up; the helper is back in `home` after it.
fn make(home: &Pair) -> Result<Pair, SysError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC)
        .op("unshare(CLONE_NEWNET | CLONE_NEWIPC)")?;
    let made = sys::loopback_up().and_then(|()| Pair::own());
    if home.enter().is_err() {
        // Whatever it made next would hold this one alive.
        sys::exit_now(1)
    }
    made
}
