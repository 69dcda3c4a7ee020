//! The client library: connect to a zygote, spawn sandboxed children, wait for them.
//!
//! Runs in the client's process (a web worker, a job runner, the `hatchery run` CLI).
//! One [`Client`] is one connection; it can run many children at once and may be shared
//! between threads. The daemon is the sandboxes' parent and reaper: a [`ChildProcess`]
//! learns its verdict from an `Exited` event, and holds a pidfd to poll.

mod files;
mod forward;
mod sandbox;
pub(crate) mod streams;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::protocol::{
    self, DaemonStatus, ErrorKind, Event, FdRole, ProtocolError, Request, SetupFailure, SetupStep,
    SpawnRequest, Stdio, Verdict, PROTOCOL_VERSION,
};
use crate::sys::{Context, SysError};
pub use files::{TransferError, TRANSFER_WALL_TIME_MS};
pub use forward::{ForwardError, ForwardedSignals, ANSWER_GRACE};
pub use sandbox::Sandbox;

/// The environment variable naming the default socket.
pub const SOCKET_ENV: &str = "HATCHERY_SOCKET";

/// The socket of a daemon run by root, e.g. as the systemd service of docs/deploy.md
/// (`RuntimeDirectory=hatchery`): root's default, and where `hatchery run` looks when
/// nothing is at a user's own default.
pub const SYSTEM_SOCKET: &str = "/run/hatchery/hatchery.sock";

/// The socket a client uses when none is named: `$HATCHERY_SOCKET`, else
/// `/run/hatchery/hatchery.sock` for root (where docs/deploy.md's systemd unit listens),
/// else `$XDG_RUNTIME_DIR/hatchery.sock`, else `/tmp/hatchery-<euid>.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => Path::new(&dir).join("hatchery.sock"),
        None => PathBuf::from(format!("/tmp/hatchery-{}.sock", nix::unistd::geteuid())),
    }
}

/// The window size of the terminal `fd` as (rows, columns), if it is one: what to give
/// a command's terminal (`ExecRequest::pty`) and [`ChildProcess::resize`].
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    crate::sys::window_size(fd)
        .ok()
        .filter(|&(rows, cols)| rows > 0 && cols > 0)
}

/// Sets the window size of the terminal `fd` (a command's pty master, see
/// [`ChildProcess::pty`]); its foreground job gets `SIGWINCH`.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), SysError> {
    crate::sys::set_window_size(fd, rows, cols)
}

/// Whether a daemon accepts connections on `path`.
pub fn probe_socket(path: &Path) -> bool {
    connect_socket(path).is_ok()
}

fn connect_socket(path: &Path) -> Result<OwnedFd, SysError> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .op("socket(AF_UNIX, SOCK_SEQPACKET)")?;
    let addr = UnixAddr::new(path).op_path("socket address", path)?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).op_path("connect", path)?;
    Ok(fd)
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No daemon could be reached.
    #[error("cannot reach a hatchery daemon")]
    Unreachable(#[source] SysError),
    /// The daemon refused this client (its uid or groups are not allowed).
    #[error("the daemon refused the connection: {0}")]
    Refused(String),
    /// The daemon speaks another protocol version.
    #[error("the daemon speaks protocol version {daemon}, this client {client}")]
    VersionMismatch {
        /// The daemon's version.
        daemon: u32,
        /// Ours.
        client: u32,
    },
    /// The handshake failed.
    #[error("handshake failed")]
    Handshake(#[source] ClientError),
}

/// A connection that failed after the handshake.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Sending or receiving failed.
    #[error("connection to the daemon failed")]
    Protocol(#[source] ProtocolError),
    /// The daemon closed the connection.
    #[error("the daemon closed the connection")]
    Disconnected,
    /// The daemon reported an error about the connection as a whole.
    #[error("the daemon closed the connection: {0}")]
    Closed(String),
    /// The signal cannot be sent to a sandbox (0, out of range, or `SIGSTOP`, which
    /// would stop only its init: send `SIGTSTP`).
    #[error("signal {0} cannot be sent to a sandbox")]
    InvalidSignal(i32),
    /// The daemon sent something this client does not expect.
    #[error("unexpected message from the daemon: {0}")]
    Unexpected(String),
    /// The child's stdout or stderr could not be read ([`ChildProcess::output`]).
    #[error("cannot read the child's output")]
    Output(#[source] SysError),
}

/// Why a child could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program was not found inside the sandbox.
    #[error("{message}")]
    NotFound {
        /// The daemon's explanation.
        message: String,
    },
    /// The program could not be executed (permissions, format).
    #[error("{message}")]
    CannotExecute {
        /// The errno of `execve`.
        errno: Errno,
        /// The daemon's explanation.
        message: String,
    },
    /// A sandbox setup step failed; the program never ran.
    #[error(
        "sandbox setup failed at step \"{step}\"{}",
        .hint.as_ref().map(|hint| format!(" (hint: {hint})")).unwrap_or_default()
    )]
    Setup {
        /// The step (displayed by its name, e.g. `"root directories"`).
        step: SetupStep,
        /// The errno of the failed system call, when a system call failed.
        errno: Option<Errno>,
        /// What went wrong: a failed system call, or a failure that is none.
        #[source]
        source: SetupFailure,
        /// What to change, when the daemon recognised the failure as a known trap of
        /// the machine (a container's seccomp profile, a masked `/proc`, ...).
        hint: Option<String>,
    },
    /// The daemon rejected the request as invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// This host cannot enforce some requested limits (and the request did not allow
    /// running without them).
    #[error("{message}")]
    UnenforceableLimits {
        /// The limits that cannot be enforced.
        limits: Vec<crate::protocol::Limit>,
        /// The daemon's explanation.
        message: String,
    },
    /// The zygote has no entry of this name (or runs no programs, for a program).
    #[error("{message}")]
    UnknownEntry {
        /// The name asked for.
        name: String,
        /// The daemon's explanation.
        message: String,
    },
    /// The entry's arguments do not decode as its argument type.
    #[error("{message}")]
    BadEntryArgs {
        /// The entry's name.
        name: String,
        /// The daemon's explanation.
        message: String,
    },
    /// No live persistent sandbox has this name (or it is ending).
    #[error("{message}")]
    UnknownSandbox {
        /// The name asked for.
        name: String,
        /// The daemon's explanation.
        message: String,
    },
    /// The daemon's policy refuses this (a layer switched off, a device bind, another
    /// uid's sandbox).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The daemon is at its limit of live sandboxes, or shutting down.
    #[error("the daemon is busy: {0}")]
    Busy(String),
    /// The daemon failed on its side.
    #[error("the daemon failed: {0}")]
    Daemon(String),
    /// The request asks for a veth network the daemon cannot give (no pool configured,
    /// or every subnet of its pool in use).
    #[error("no network: {message}")]
    Network {
        /// Every subnet of the pool is taken (retrying later may succeed); otherwise the
        /// daemon has no veth networking at all.
        exhausted: bool,
        /// The daemon's explanation.
        message: String,
    },
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ClientError),
}

/// A connection to a zygote daemon. One connection runs many children at once, and
/// a `Client` may be cloned and shared between threads (the clones share the
/// connection).
///
/// Collect what a command prints, as `std::process::Command::output` does:
///
/// ```no_run
/// use hatchery::{Client, SpawnRequest};
///
/// let client = Client::connect("/run/hatchery.sock")?;
/// let output = client.output(SpawnRequest::new("/bin/sh").args(["-c", "echo out; echo err >&2"]))?;
/// assert!(output.verdict.status.success());
/// assert_eq!(output.stdout, b"out\n");
/// assert_eq!(output.stderr, b"err\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Or talk to the child through its pipes:
///
/// ```no_run
/// use std::io::Read;
/// use hatchery::{Client, SpawnRequest};
///
/// let client = Client::connect("/run/hatchery/hatchery.sock")?;
/// let mut child = client.spawn_child(SpawnRequest::new("/bin/echo").arg("hello"))?;
/// let mut out = String::new();
/// child.stdout.take().unwrap().read_to_string(&mut out)?;
/// let verdict = child.wait()?;
/// assert_eq!(out, "hello\n");
/// assert!(verdict.status.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    sock: OwnedFd,
    state: Mutex<State>,
    /// Signalled whenever an event is queued or the reader role frees up.
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Events received for ids whose owners have not taken them yet.
    queued: HashMap<u64, VecDeque<(Event, Vec<OwnedFd>)>>,
    /// Ids whose `ChildProcess` was dropped: their events are discarded.
    abandoned: HashSet<u64>,
    /// A thread is blocked receiving on the socket for everyone.
    reading: bool,
    /// The connection has failed: the reason.
    broken: Option<String>,
}

impl Client {
    /// Connects to the daemon at `path` and performs the handshake.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ConnectError> {
        let fd = connect_socket(path.as_ref()).map_err(ConnectError::Unreachable)?;
        Client::handshake(fd)
    }

    /// Connects to [`default_socket_path`].
    pub fn connect_default() -> Result<Client, ConnectError> {
        Client::connect(default_socket_path())
    }

    /// Performs the handshake on an already connected `SOCK_SEQPACKET` socket (e.g. one
    /// end of a socketpair whose other end an embedded zygote serves).
    pub fn handshake(fd: OwnedFd) -> Result<Client, ConnectError> {
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: format!("hatchery {}", env!("CARGO_PKG_VERSION")),
        };
        // A daemon that turns the connection away (too many connections) answers before
        // the Hello arrives and may have closed its end already: its answer is read even
        // when the Hello could not be sent.
        let sent = protocol::send(fd.as_fd(), &hello, &[]);
        let mut buf = protocol::RecvBuffer::new();
        let reply = protocol::recv::<Event>(fd.as_fd(), &mut buf, false);
        let reply = match (sent, reply) {
            (Err(e), Ok(None) | Err(_)) => {
                return Err(ConnectError::Handshake(ClientError::Protocol(e)))
            }
            (_, reply) => reply,
        };
        match reply {
            Ok(Some((Event::Welcome { version, .. }, _))) if version != PROTOCOL_VERSION => {
                Err(ConnectError::VersionMismatch {
                    daemon: version,
                    client: PROTOCOL_VERSION,
                })
            }
            Ok(Some((Event::Welcome { .. }, _))) => Ok(Client {
                shared: Arc::new(Shared {
                    sock: fd,
                    state: Mutex::new(State::default()),
                    arrived: Condvar::new(),
                }),
            }),
            Ok(Some((
                Event::Error {
                    kind: ErrorKind::PermissionDenied,
                    message,
                    ..
                },
                _,
            ))) => Err(ConnectError::Refused(message)),
            Ok(Some((
                Event::Error {
                    kind: ErrorKind::VersionMismatch { supported },
                    ..
                },
                _,
            ))) => Err(ConnectError::VersionMismatch {
                daemon: supported,
                client: PROTOCOL_VERSION,
            }),
            Ok(Some((Event::Error { message, .. }, _))) => {
                Err(ConnectError::Handshake(ClientError::Closed(message)))
            }
            Ok(Some((other, _))) => Err(ConnectError::Handshake(ClientError::Unexpected(format!(
                "{other:?}"
            )))),
            Ok(None) => Err(ConnectError::Handshake(ClientError::Disconnected)),
            Err(e) => Err(ConnectError::Handshake(ClientError::Protocol(e))),
        }
    }

    /// Spawns a sandboxed child and returns once its program has been exec'd (or the
    /// spawn has failed, with the reason).
    pub fn spawn_child(&self, request: SpawnRequest) -> Result<ChildProcess, SpawnError> {
        let stdio = request.stdio().map(Stdio::clone);
        self.shared.start(stdio, |id| Request::Spawn {
            id,
            request: Box::new(request),
        })
    }
}

impl Shared {
    /// Takes a new request id.
    fn next_id(&self) -> u64 {
        let mut state = self.lock();
        state.next_id += 1;
        state.next_id
    }

    /// Sends the request `make` builds for a new id, with the fds of the `Stdio::Fd`
    /// streams among `stdio`, and returns the child once it runs (a spawn's or a
    /// persistent sandbox's command's).
    fn start(
        self: &Arc<Self>,
        stdio: [Stdio; 3],
        make: impl FnOnce(u64) -> Request,
    ) -> Result<ChildProcess, SpawnError> {
        let id = self.next_id();
        let passed: Vec<Arc<OwnedFd>> = stdio
            .iter()
            .filter_map(|s| match s {
                Stdio::Fd(fd) => Some(fd.0.clone().ok_or(())),
                _ => None,
            })
            .collect::<Result<_, _>>()
            .map_err(|()| SpawnError::InvalidRequest("Stdio::Fd without an fd".into()))?;
        let borrowed: Vec<BorrowedFd<'_>> = passed.iter().map(|fd| fd.as_fd()).collect();
        protocol::send(self.sock.as_fd(), &make(id), &borrowed)
            .map_err(|e| SpawnError::Connection(ClientError::Protocol(e)))?;
        drop(borrowed);
        drop(passed);

        let (event, fds) = self.next_event(id)?;
        match event {
            Event::Spawned {
                pid,
                fds: roles,
                network,
                ..
            } => {
                let mut child = ChildProcess::new(self.clone(), id, pid, roles, fds)?;
                child.network = network;
                Ok(child)
            }
            Event::Error { kind, message, .. } => Err(spawn_error(kind, message)),
            other => Err(ClientError::Unexpected(format!("{other:?}")).into()),
        }
    }
}

impl Client {
    /// Asks the daemon about itself: uptime, version, the live sandboxes this client's
    /// uid may see (all of them for root and the daemon's own uid), the warm pool, veth
    /// leases and spawn counters. Other requests on this connection go on meanwhile.
    ///
    /// ```no_run
    /// use hatchery::Client;
    ///
    /// let client = Client::connect("/run/hatchery/hatchery.sock")?;
    /// let status = client.status()?;
    /// for sandbox in &status.sandboxes {
    ///     println!("{} {} {} ms", sandbox.pid, sandbox.program, sandbox.age_ms);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> Result<DaemonStatus, ClientError> {
        let id = {
            let mut state = self.shared.lock();
            state.next_id += 1;
            state.next_id
        };
        self.shared.send(&Request::Status { id })?;
        match self.shared.next_event(id)? {
            (Event::Status { status, .. }, _) => Ok(*status),
            (Event::Error { message, .. }, _) => Err(ClientError::Closed(message)),
            (other, _) => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Spawns `request`, collects its stdout and stderr to end of file (both at once, so
    /// a child that fills one pipe while the other is read cannot deadlock) and waits
    /// for its verdict: `std::process::Command::output` for a sandbox. Its stdin is
    /// closed at once; a stream the request does not pipe comes back empty. Output is
    /// kept whole, however large: bound it with the request's limits (`wall_time_ms`,
    /// `file_size_bytes` do not bound a pipe) or read [`ChildProcess::stdout`] yourself.
    pub fn output(&self, request: SpawnRequest) -> Result<Output, SpawnError> {
        Ok(self.spawn_child(request)?.output()?)
    }
}

/// What a finished child printed, and how its sandbox ended: the result of
/// [`Client::output`] and [`ChildProcess::output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How the sandbox ended.
    pub verdict: Verdict,
    /// Everything it wrote to stdout (empty unless stdout was a pipe).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (empty unless stderr was a pipe).
    pub stderr: Vec<u8>,
}

fn spawn_error(kind: ErrorKind, message: String) -> SpawnError {
    match kind {
        ErrorKind::NotFound => SpawnError::NotFound { message },
        ErrorKind::CannotExecute { errno } => SpawnError::CannotExecute {
            errno: Errno::from_raw(errno),
            message,
        },
        ErrorKind::Setup { step, error } => SpawnError::Setup {
            step,
            errno: error.errno(),
            source: error,
            // The daemon appends its diagnosis to the message (zygote::diagnose).
            hint: message
                .split_once(" (hint: ")
                .map(|(_, hint)| hint.strip_suffix(')').unwrap_or(hint).to_string()),
        },
        ErrorKind::InvalidRequest => SpawnError::InvalidRequest(message),
        ErrorKind::Busy | ErrorKind::ShuttingDown => SpawnError::Busy(message),
        ErrorKind::UnenforceableLimits { limits } => {
            SpawnError::UnenforceableLimits { limits, message }
        }
        ErrorKind::AddressPoolExhausted => SpawnError::Network {
            exhausted: true,
            message,
        },
        ErrorKind::NetworkUnavailable => SpawnError::Network {
            exhausted: false,
            message,
        },
        ErrorKind::UnknownEntry { name } => SpawnError::UnknownEntry { name, message },
        ErrorKind::BadEntryArgs { name } => SpawnError::BadEntryArgs { name, message },
        ErrorKind::UnknownSandbox { name } => SpawnError::UnknownSandbox { name, message },
        ErrorKind::PermissionDenied => SpawnError::PermissionDenied(message),
        _ => SpawnError::Daemon(message),
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next event for `id`. One waiting thread at a time receives on the socket for
    /// all and queues what belongs to others, without holding the state lock meanwhile.
    fn next_event(&self, id: u64) -> Result<(Event, Vec<OwnedFd>), ClientError> {
        let mut state = self.lock();
        loop {
            if let Some(event) = state.queued.get_mut(&id).and_then(VecDeque::pop_front) {
                return Ok(event);
            }
            if let Some(reason) = &state.broken {
                return Err(ClientError::Closed(reason.clone()));
            }
            if state.reading {
                state = self
                    .arrived
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            state.reading = true;
            drop(state);
            let mut buf = protocol::RecvBuffer::new();
            let received = protocol::recv::<Event>(self.sock.as_fd(), &mut buf, false);
            state = self.lock();
            state.reading = false;
            self.arrived.notify_all();
            match received {
                Ok(Some((event, fds))) => state.deliver(event, fds),
                Ok(None) => {
                    state.broken = Some("the daemon closed the connection".into());
                    return Err(ClientError::Disconnected);
                }
                Err(ProtocolError::Io(e)) if e.errno() == Errno::EINTR => {}
                Err(e) => {
                    state.broken = Some(e.to_string());
                    return Err(ClientError::Protocol(e));
                }
            }
        }
    }

    /// The verdict of `id` if its `Exited` has arrived, without blocking: what is queued,
    /// and what the socket holds now (unless another thread is reading it).
    fn try_exited(&self, id: u64) -> Result<Option<Verdict>, ClientError> {
        let mut state = self.lock();
        if !state.reading && state.broken.is_none() {
            let mut buf = protocol::RecvBuffer::new();
            loop {
                match protocol::recv::<Event>(self.sock.as_fd(), &mut buf, true) {
                    Ok(Some((event, fds))) => state.deliver(event, fds),
                    Ok(None) => {
                        state.broken = Some("the daemon closed the connection".into());
                        break;
                    }
                    Err(ProtocolError::Io(e))
                        if matches!(e.errno(), Errno::EAGAIN | Errno::EINTR) =>
                    {
                        break
                    }
                    Err(e) => {
                        state.broken = Some(e.to_string());
                        return Err(ClientError::Protocol(e));
                    }
                }
            }
        }
        let Some(events) = state.queued.get_mut(&id) else {
            return Ok(None);
        };
        // Errors queued for it answer its signals; the verdict is what is asked for.
        events.retain(|(event, _)| matches!(event, Event::Exited { .. }));
        Ok(match events.pop_front() {
            Some((Event::Exited { verdict, .. }, _)) => Some(verdict),
            _ => None,
        })
    }

    fn send(&self, request: &Request) -> Result<(), ClientError> {
        protocol::send(self.sock.as_fd(), request, &[]).map_err(ClientError::Protocol)
    }
}

impl State {
    fn deliver(&mut self, event: Event, fds: Vec<OwnedFd>) {
        let id = match &event {
            Event::Spawned { id, .. }
            | Event::Exited { id, .. }
            | Event::Status { id, .. }
            | Event::SandboxCreated { id, .. }
            | Event::SandboxEnded { id, .. }
            | Event::Sandboxes { id, .. } => *id,
            Event::Error { id: Some(id), .. } => *id,
            Event::Error {
                id: None, message, ..
            } => {
                self.broken = Some(message.clone());
                return;
            }
            Event::Welcome { .. } => return,
        };
        if self.abandoned.contains(&id) {
            // The last event for its id: the id's end.
            if matches!(event, Event::Exited { .. } | Event::SandboxEnded { .. }) {
                self.abandoned.remove(&id);
            }
            return;
        }
        self.queued.entry(id).or_default().push_back((event, fds));
    }
}

/// A running sandboxed child.
///
/// Its `pid` is the sandbox's init as seen from the daemon. Dropping it does not kill the
/// child; [`ChildProcess::kill`] does, and the daemon kills every child of a client that
/// disconnects.
///
/// ```no_run
/// use std::io::{BufRead, BufReader};
/// use hatchery::{Client, SpawnRequest};
///
/// let client = Client::connect("/run/hatchery.sock")?;
/// let mut child = client.spawn_child(SpawnRequest::new("/bin/sh").args(["-c", "echo ready; sleep 60"]))?;
/// let mut line = String::new();
/// BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
/// assert_eq!(line, "ready\n");
/// child.kill()?; // the whole sandbox, whatever it started
/// assert_eq!(child.wait()?.status.code(), 137);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ChildProcess {
    /// Host pid of the sandbox (its init), as the daemon sees it.
    pub pid: i32,
    /// The write end of the child's stdin, when it is a pipe.
    pub stdin: Option<ChildStdin>,
    /// The read end of the child's stdout, when it is a pipe.
    pub stdout: Option<ChildStdout>,
    /// The read end of the child's stderr, when it is a pipe.
    pub stderr: Option<ChildStderr>,
    /// The read end of an entry's result pipe (entry calls only): one
    /// [`crate::protocol::EntryResult`] written by the child, which is untrusted. See
    /// [`Client::call`], which reads it with a bound and decodes it strictly.
    pub result: Option<std::fs::File>,
    /// The master of its terminal (a persistent sandbox's command with
    /// `ExecRequest::pty`): its output is read here, its input written here, and
    /// [`ChildProcess::resize`] sets its size.
    pub pty: Option<std::fs::File>,
    /// The sandbox's veth network (addresses, gateways, the host end's name), if it has
    /// one.
    pub network: Option<crate::protocol::NetworkFacts>,
    pidfd: Option<OwnedFd>,
    id: u64,
    shared: Arc<Shared>,
    verdict: Option<Verdict>,
}

impl ChildProcess {
    fn new(
        shared: Arc<Shared>,
        id: u64,
        pid: i32,
        roles: Vec<FdRole>,
        fds: Vec<OwnedFd>,
    ) -> Result<Self, ClientError> {
        if roles.len() != fds.len() {
            return Err(ClientError::Unexpected(format!(
                "{} fd roles for {} fds",
                roles.len(),
                fds.len()
            )));
        }
        let mut child = ChildProcess {
            pid,
            stdin: None,
            stdout: None,
            stderr: None,
            result: None,
            pty: None,
            network: None,
            pidfd: None,
            id,
            shared,
            verdict: None,
        };
        for (role, fd) in roles.into_iter().zip(fds) {
            match role {
                FdRole::Stdin => child.stdin = Some(ChildStdin::from(fd)),
                FdRole::Stdout => child.stdout = Some(ChildStdout::from(fd)),
                FdRole::Stderr => child.stderr = Some(ChildStderr::from(fd)),
                FdRole::Pidfd => child.pidfd = Some(fd),
                FdRole::Result => child.result = Some(std::fs::File::from(fd)),
                FdRole::Pty => child.pty = Some(std::fs::File::from(fd)),
            }
        }
        Ok(child)
    }

    /// The request id this child was spawned with.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A pidfd of the sandbox: poll it for readability to learn that it has exited.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// Waits for the sandbox to end and returns its verdict. Closes stdin first, so a
    /// child reading it sees end of file.
    pub fn wait(&mut self) -> Result<Verdict, ClientError> {
        drop(self.stdin.take());
        if let Some(verdict) = &self.verdict {
            return Ok(verdict.clone());
        }
        loop {
            let (event, _fds) = self.shared.next_event(self.id)?;
            match event {
                Event::Exited { verdict, .. } => {
                    self.verdict = Some(verdict.clone());
                    return Ok(verdict);
                }
                // An error for a running child answers one of our signals; the child
                // is still running, and its verdict is what we wait for.
                Event::Error { message, .. } => tracing::debug!(%message, "a signal was refused"),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        }
    }

    /// Closes stdin, reads stdout and stderr to end of file (both at once, so that
    /// neither pipe can fill up and stall the child) and waits for the verdict, as
    /// `std::process::Child::wait_with_output` does. Streams already taken from
    /// `stdout`/`stderr` come back empty. Whatever the child prints is kept in memory.
    ///
    /// ```no_run
    /// use std::io::Write;
    /// use hatchery::{Client, SpawnRequest};
    ///
    /// let client = Client::connect("/run/hatchery.sock")?;
    /// let mut child = client.spawn_child(SpawnRequest::new("/usr/bin/tr").args(["a-z", "A-Z"]))?;
    /// child.stdin.take().unwrap().write_all(b"shout\n")?;
    /// let output = child.output()?;
    /// assert_eq!(output.stdout, b"SHOUT\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn output(mut self) -> Result<Output, ClientError> {
        drop(self.stdin.take());
        let streams = [
            None,
            self.stdout
                .take()
                .map(|s| std::fs::File::from(OwnedFd::from(s))),
            self.stderr
                .take()
                .map(|s| std::fs::File::from(OwnedFd::from(s))),
        ];
        let collected = streams::collect(streams, [0, usize::MAX, usize::MAX]);
        let collected = match collected {
            Ok(collected) => collected,
            Err(e) => {
                // The output is lost; the child is of no further use.
                let _ = self.kill();
                let _ = self.wait();
                return Err(ClientError::Output(e));
            }
        };
        let verdict = self.wait()?;
        let [_, stdout, stderr] = collected.bytes;
        Ok(Output {
            verdict,
            stdout,
            stderr,
        })
    }

    /// Returns the verdict if the sandbox has ended, without blocking while it runs.
    pub fn try_wait(&mut self) -> Result<Option<Verdict>, ClientError> {
        if self.verdict.is_some() {
            return self.wait().map(Some);
        }
        let Some(pidfd) = &self.pidfd else {
            // A persistent sandbox's command has no pidfd: its Exited, if it came.
            return match self.shared.try_exited(self.id)? {
                Some(verdict) => {
                    self.verdict = Some(verdict.clone());
                    drop(self.stdin.take());
                    Ok(Some(verdict))
                }
                None => Ok(None),
            };
        };
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap_or(0);
        if ready == 0 {
            return Ok(None);
        }
        // It has exited: the daemon's Exited event follows its reap.
        self.wait().map(Some)
    }

    /// Sends `signal` to the sandbox. Its init forwards it to the workload; `SIGKILL`
    /// ends the whole sandbox at once.
    pub fn signal(&self, signal: i32) -> Result<(), ClientError> {
        if signal <= 0 || signal > libc::SIGRTMAX() || signal == libc::SIGSTOP {
            return Err(ClientError::InvalidSignal(signal));
        }
        self.shared.send(&Request::Signal {
            id: self.id,
            signal,
        })
    }

    /// Sets the window size of its terminal (`SIGWINCH` to its foreground job), when it
    /// has one ([`ChildProcess::pty`]); `Ok(false)` when it has none.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<bool, SysError> {
        match &self.pty {
            Some(master) => crate::sys::set_window_size(master.as_fd(), rows, cols).map(|()| true),
            None => Ok(false),
        }
    }

    /// Kills the whole sandbox (`SIGKILL` to its init, which takes every process in it);
    /// for a command of a persistent sandbox, that command's process group only (the
    /// sandbox lives on).
    pub fn kill(&self) -> Result<(), ClientError> {
        self.signal(libc::SIGKILL)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.verdict.is_none() {
            let mut state = self.shared.lock();
            if let Some(events) = state.queued.remove(&self.id) {
                if events
                    .iter()
                    .any(|(e, _)| matches!(e, Event::Exited { .. }))
                {
                    return;
                }
            }
            state.abandoned.insert(self.id);
        }
    }
}

impl std::fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcess")
            .field("pid", &self.pid)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
