//! The zygote daemon: one thread, one `poll` loop over its socket, its clients, the
//! channels of sandboxes being set up, and a signalfd (SIGCHLD, SIGTERM, SIGINT).
//!
//! Everything that can be done once is done in [`Zygote::new`] (seccomp compiled, host
//! ids checked, `/dev/null` opened). Per request the loop validates, clones the sandbox
//! (see [`crate::sandbox`]) and goes back to serving; the sandbox's report of its exec
//! (or failed setup) and its reap arrive later as events of the same loop, so no client
//! ever waits on another's spawn. Runs in the daemon process only.

mod builder;
mod connection;
pub mod diagnose;
mod entries;
mod limits;
pub mod listener;
mod pool;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::limits::LimitPolicy;
use crate::network::{Lease, Network, NetworkError, NetworkSettings};
use crate::protocol::{
    self, EndReason, ErrorKind, Event, ExitStatus, FdRole, NetworkConfig, Request, SpawnRequest,
    Stdio, Verdict, PROTOCOL_VERSION,
};
use crate::sandbox::warm::NotTaken;
use crate::sandbox::{
    validate, Cgroups, FromSandbox, HostIds, Pending, Sandboxer, SpareNamespaces, StartError,
    Started, WorkloadUsage, ZygoteEnd,
};
use crate::seccomp::{SeccompError, SeccompPolicy};
use crate::sys::{self, Context, SysError};
pub use builder::ZygoteBuilder;
use connection::Connection;
use entries::Entries;
use limits::{Enforcement, Enforcer};
pub use listener::{Access, Listener};
use pool::WarmPool;
pub use pool::{PoolError, WarmPoolConfig};

/// How long after a sandbox's exec the warm pool waits before it refills.
const REFILL_QUIET: Duration = Duration::from_millis(3);

/// The most sandboxes a daemon runs at once unless configured otherwise.
pub const DEFAULT_MAX_CHILDREN: usize = 1024;

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct ZygoteConfig {
    /// Host ids the sandboxes' ids map to.
    pub host_ids: HostIds,
    /// The seccomp policy every sandbox gets.
    pub seccomp: SeccompPolicy,
    /// Who may connect.
    pub access: Access,
    /// The most live sandboxes at once; more spawns get a `Busy` error.
    pub max_children: usize,
    /// Default and maximum resource limits of a sandbox.
    pub limits: LimitPolicy,
    /// Veth networking; without it, requests for a veth network are refused.
    pub network: Option<NetworkSettings>,
    /// Sandboxes kept pre-created, per shape (none by default).
    pub warm_pool: WarmPoolConfig,
}

impl ZygoteConfig {
    /// The default policy, ids and limits.
    pub fn new() -> Result<ZygoteConfig, ZygoteError> {
        Ok(ZygoteConfig {
            host_ids: HostIds::default_for_daemon(),
            seccomp: SeccompPolicy::default_policy().map_err(ZygoteError::Seccomp)?,
            access: Access::default(),
            max_children: DEFAULT_MAX_CHILDREN,
            limits: LimitPolicy::default(),
            network: None,
            warm_pool: WarmPoolConfig::default(),
        })
    }
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    /// The seccomp policy could not be loaded or compiled.
    #[error("seccomp policy")]
    Seccomp(#[source] SeccompError),
    /// A system call failed.
    #[error("zygote")]
    Sys(#[source] SysError),
    /// The limit defaults and ceilings make no sense.
    #[error("limit policy")]
    Policy(#[source] crate::limits::BadPolicy),
    /// Veth networking cannot be set up.
    #[error("network")]
    Network(#[source] NetworkError),
    /// A pooled shape cannot be kept warm.
    #[error("warm pool")]
    WarmPool(#[source] PoolError),
}

impl From<SysError> for ZygoteError {
    fn from(e: SysError) -> Self {
        ZygoteError::Sys(e)
    }
}

/// A zygote daemon, prepared and ready to serve.
///
/// ```no_run
/// use hatchery::zygote::{Zygote, ZygoteConfig};
/// let zygote = Zygote::new(ZygoteConfig::new()?)?;
/// zygote.serve(std::path::Path::new("/run/hatchery.sock"))?;
/// # Ok::<(), hatchery::zygote::ZygoteError>(())
/// ```
pub struct Zygote {
    sandboxer: Sandboxer,
    entries: Entries,
    access: Access,
    max_children: usize,
    enforcer: Enforcer,
    network: Option<Network>,
    pool: WarmPool,
    /// Network namespaces made ahead; `None` before serving, in an embedded zygote,
    /// and where they cannot be made.
    spare_namespaces: Option<SpareNamespaces>,
}

/// A sandbox the daemon is responsible for until it is reaped.
struct Child {
    /// The connection that spawned it; `None` once that client is gone.
    conn: Option<u64>,
    id: u64,
    pidfd: OwnedFd,
    channel: ZygoteEnd,
    /// The client's pipe ends (stdio, then an entry's result), handed over with
    /// `Spawned`.
    pipes: [Option<OwnedFd>; 4],
    started: Instant,
    /// `Spawned` has been sent (or the client is gone).
    running: bool,
    /// A report already settled the outcome (failed setup or exec).
    failed: bool,
    workload: Option<ExitStatus>,
    /// Processes and threads its pid namespace started, as the init reported.
    tasks_started: Option<u64>,
    /// The init has closed its channel: nothing more to poll for.
    channel_closed: bool,
    /// Its limits, cgroup and watchdog.
    enforcement: Enforcement,
    /// Why the daemon killed it, if it did.
    kill_reason: Option<EndReason>,
    /// Kill it when its client disconnects.
    kill_on_disconnect: bool,
    /// Its veth network, if it has one.
    network: Option<Lease>,
}

impl Child {
    /// Ends the whole sandbox, remembering why (the first reason wins).
    fn kill(&mut self, reason: EndReason) {
        self.kill_reason.get_or_insert(reason);
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        self.enforcement.kill();
    }
}

impl Zygote {
    /// Prepares a daemon: compiles the seccomp policy and checks the host ids, once.
    /// It runs programs and has no entries, as `hatchery serve` does; see
    /// [`Zygote::builder`] for one with entries.
    pub fn new(config: ZygoteConfig) -> Result<Zygote, ZygoteError> {
        Zygote::with_entries(config, Entries::exec_only())
    }

    /// A zygote of this program, serving named Rust entries that run in children forked
    /// from it (see [`ZygoteBuilder`]).
    pub fn builder() -> ZygoteBuilder {
        ZygoteBuilder::new()
    }

    fn with_entries(config: ZygoteConfig, entries: Entries) -> Result<Zygote, ZygoteError> {
        config.limits.check().map_err(ZygoteError::Policy)?;
        let seccomp = config.seccomp.compile().map_err(ZygoteError::Seccomp)?;
        let sandboxer = Sandboxer::new(seccomp, config.host_ids)?;
        let pool = WarmPool::new(&config.warm_pool, &config.limits, config.network.is_some())
            .map_err(ZygoteError::WarmPool)?;
        let network = config
            .network
            .map(Network::new)
            .transpose()
            .map_err(ZygoteError::Network)?;
        Ok(Zygote {
            spare_namespaces: None,
            pool,
            sandboxer,
            entries,
            access: config.access,
            max_children: config.max_children,
            enforcer: Enforcer::new(config.limits, find_cgroups()),
            network,
        })
    }

    /// Serves on a socket at `path` until SIGTERM or SIGINT, then kills every sandbox,
    /// reaps it and removes the socket file.
    pub fn serve(mut self, path: &Path) -> Result<(), ZygoteError> {
        copy_code_to_huge_pages();
        // A daemon (not the embedded zygote of one `hatchery run`) makes its network
        // namespaces ahead; its helper is there before the socket is.
        match self.sandboxer.start_spare_namespaces() {
            Ok(spares) => self.spare_namespaces = Some(spares),
            Err(e) => {
                tracing::info!(error = %crate::error_chain(&e), "no spare network and IPC namespaces")
            }
        }
        let listener = Listener::bind(path, &self.access)?;
        tracing::info!(socket = %path.display(), "serving");
        Server::new(self, Some(listener), None)?.run()
    }

    /// Serves one already-connected client (the embedded zygote of `hatchery run`), and
    /// returns when it has hung up and its sandboxes are reaped. It keeps no warm pool.
    pub fn serve_connection(mut self, conn: OwnedFd) -> Result<(), ZygoteError> {
        self.pool.close();
        Server::new(self, None, Some(conn))?.run()
    }
}

/// Set to `0`, [`Zygote::serve`] leaves its code file-mapped (for a profiler that finds
/// symbols through the executable's mapping).
const CODE_HUGE_PAGES_ENV: &str = "HATCHERY_CODE_HUGE_PAGES";

/// Moves the whole huge pages of the daemon's code into anonymous huge pages, which
/// every sandbox's init (a fork of the daemon) inherits mapped: it then runs that code
/// without faulting it in page by page (see [`sys::copy_own_code_to_huge_pages`]).
/// Where the kernel refuses (no transparent huge pages, `MADV_COLLAPSE` missing, a
/// policy that forbids executable anonymous memory), the code stays as it was.
fn copy_code_to_huge_pages() {
    if std::env::var(CODE_HUGE_PAGES_ENV).is_ok_and(|v| v == "0") {
        return;
    }
    match sys::copy_own_code_to_huge_pages() {
        Ok(bytes) => tracing::debug!(bytes, "own code copied to huge pages"),
        Err(e) => tracing::debug!(error = %e, "own code left file-mapped"),
    }
}

impl Zygote {
    /// Hands `request` to an idle sandbox of its shape, if the pool has one; gives the
    /// passed fds back when a fresh sandbox must serve it. A sandbox served comes with
    /// its veth network's lease if its shape has one.
    #[allow(clippy::type_complexity)]
    fn start_warm(
        &mut self,
        request: &SpawnRequest,
        mut fds: Vec<OwnedFd>,
    ) -> Result<Result<(Started, Option<Lease>), StartError>, Vec<OwnedFd>> {
        while let Some((idle, lease)) = self.pool.take(&request.sandbox) {
            match self.sandboxer.hand_over(idle, request, fds) {
                Ok(sandbox) => {
                    tracing::debug!(pid = sandbox.pid, "served from the warm pool");
                    return Ok(Ok((sandbox, lease)));
                }
                Err(not_taken) => {
                    // Killed by the handover: its subnet comes back once the pair is gone.
                    if let (Some(lease), Some(network)) = (lease, &mut self.network) {
                        network.release(lease);
                    }
                    match not_taken {
                        // It died while idle (its reap is on the way): the next one, or
                        // fresh.
                        NotTaken::Gone { passed, error } => {
                            tracing::debug!(error = %crate::error_chain(&error), "a warm sandbox was gone");
                            fds = passed;
                        }
                        NotTaken::Failed(e) => return Ok(Err(e)),
                    }
                }
            }
        }
        Err(fds)
    }
}

/// The cgroups sandboxes go in, with those a previous daemon left removed; `None` where
/// this host offers none we can use (limits that need them are then refused, or skipped
/// where a request allows it).
fn find_cgroups() -> Option<Cgroups> {
    let cgroups = match Cgroups::discover() {
        Ok(cgroups) => cgroups,
        Err(e) => {
            tracing::info!(error = %crate::error_chain(&e), "no cgroups: memory, pids and CPU limits are unavailable");
            return None;
        }
    };
    match cgroups.remove_stale(limits::left_by_a_dead_daemon) {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "removed sandbox cgroups a previous daemon left"),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "cannot remove stale sandbox cgroups")
        }
    }
    Some(cgroups)
}

/// What a polled fd is.
#[derive(Clone, Copy)]
enum Source {
    Signals,
    Listener,
    Conn(u64),
    Child(i32),
    SpareNamespaces,
}

struct Server {
    zygote: Zygote,
    listener: Option<Listener>,
    signals: SignalFd,
    conns: HashMap<u64, Connection>,
    children: HashMap<i32, Child>,
    next_conn: u64,
    buf: protocol::RecvBuffer,
    /// Serving a single embedded client: stop when it is gone.
    embedded: bool,
    shutting_down: bool,
    /// When a sandbox last exec'd its workload (the warm pool waits a moment after).
    last_exec: Option<Instant>,
}

impl Server {
    fn new(
        mut zygote: Zygote,
        listener: Option<Listener>,
        conn: Option<OwnedFd>,
    ) -> Result<Server, SysError> {
        sys::ensure_stdio_open()?;
        zygote.sandboxer.note_signal_dispositions();
        let mut mask = SigSet::empty();
        for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
            mask.add(signal);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .op("sigprocmask")?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .op("signalfd")?;
        let mut server = Server {
            zygote,
            listener,
            signals,
            conns: HashMap::new(),
            children: HashMap::new(),
            next_conn: 0,
            buf: protocol::RecvBuffer::new(),
            embedded: conn.is_some(),
            shutting_down: false,
            last_exec: None,
        };
        if let Some(fd) = conn {
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .op("fcntl(O_NONBLOCK)")?;
            server.add_connection(fd, None);
        }
        Ok(server)
    }

    fn run(mut self) -> Result<(), ZygoteError> {
        // Once there is nothing left to serve, cgroups of the last sandboxes still get
        // this long to be removed (their last tasks may still be exiting).
        let mut finishing: Option<Instant> = None;
        loop {
            if self.children.is_empty()
                && self.zygote.pool.is_empty()
                && (self.shutting_down || (self.embedded && self.conns.is_empty()))
            {
                let since = *finishing.get_or_insert_with(Instant::now);
                if self.zygote.enforcer.has_leftovers() && since.elapsed() < Duration::from_secs(2)
                {
                    std::thread::sleep(Duration::from_millis(5));
                    self.zygote.enforcer.retry_removals();
                    continue;
                }
                for conn in self.conns.values_mut() {
                    conn.send_error(None, ErrorKind::ShuttingDown, "the daemon is shutting down");
                    conn.flush();
                }
                if let Some(network) = &mut self.zygote.network {
                    network.finish(Duration::from_secs(2));
                }
                return Ok(());
            }
            let ready = self.wait()?;
            if ready.is_empty() && self.next_refill() == Some(Duration::ZERO) {
                // Nothing else to do: the pool refills, one sandbox per idle turn.
                self.zygote.pool.refill_one(
                    &self.zygote.sandboxer,
                    self.zygote.network.as_mut(),
                    self.zygote.spare_namespaces.as_mut(),
                );
            }
            for (source, flags) in ready {
                match source {
                    Source::Signals => self.on_signals(),
                    Source::Listener => self.on_listener(),
                    Source::Conn(conn) => self.on_connection(conn, flags),
                    Source::Child(pid) => self.on_reports(pid),
                    Source::SpareNamespaces => self.on_spare_namespaces(),
                }
            }
            let quiet = !self.starting();
            if let Some(spares) = self.zygote.spare_namespaces.as_mut() {
                spares.replenish(quiet);
            }
            self.enforce_limits();
            self.drop_finished_connections();
        }
    }

    /// Whether a sandbox is being set up (its workload not started yet).
    fn starting(&self) -> bool {
        self.children
            .values()
            .any(|child| !child.running && !child.failed)
    }

    /// Polls every source; returns those that are ready.
    fn wait(&mut self) -> Result<Vec<(Source, PollFlags)>, ZygoteError> {
        let mut sources = Vec::with_capacity(2 + self.conns.len() + self.children.len());
        let mut fds = Vec::with_capacity(sources.capacity());
        sources.push(Source::Signals);
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        if let Some(listener) = &self.listener {
            sources.push(Source::Listener);
            fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        }
        for (&key, conn) in &self.conns {
            let mut flags = PollFlags::POLLIN;
            if conn.wants_write() {
                flags |= PollFlags::POLLOUT;
            }
            sources.push(Source::Conn(key));
            fds.push(PollFd::new(conn.as_fd(), flags));
        }
        for (&pid, child) in self.children.iter().filter(|(_, c)| !c.channel_closed) {
            sources.push(Source::Child(pid));
            fds.push(PollFd::new(child.channel.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = self
            .zygote
            .spare_namespaces
            .as_ref()
            .and_then(SpareNamespaces::awaited)
        {
            sources.push(Source::SpareNamespaces);
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let timeout = match self.next_check() {
            None => PollTimeout::NONE,
            Some(Duration::ZERO) => PollTimeout::ZERO,
            Some(wait) => PollTimeout::try_from(wait.as_millis().clamp(1, 60_000) as u32)
                .unwrap_or(PollTimeout::MAX),
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(SysError::new("poll", e).into()),
        }
        Ok(fds
            .iter()
            .zip(sources)
            .filter_map(|(fd, source)| fd.revents().filter(|r| !r.is_empty()).map(|r| (source, r)))
            .collect())
    }

    /// How long the loop may sleep before a limit must be checked or a cgroup removal
    /// retried.
    fn next_check(&self) -> Option<Duration> {
        let now = Instant::now();
        self.children
            .values()
            .filter(|child| child.kill_reason.is_none())
            .filter_map(|child| child.enforcement.next_check(now))
            .chain(self.zygote.enforcer.next_retry())
            .chain(
                self.zygote
                    .network
                    .as_ref()
                    .filter(|network| network.draining())
                    .map(|_| crate::network::COLLECT_EVERY),
            )
            .chain(self.next_refill())
            .min()
    }

    /// When the warm pool may clone its next sandbox: `Some(ZERO)` for now.
    ///
    /// Never while a sandbox is in its setup, and not until [`REFILL_QUIET`] after the
    /// last exec: a refill (a `clone3` of about a millisecond on this thread, then the
    /// new sandbox's setup on the CPU) would otherwise slow the spawn in flight, or
    /// delay the reap of a short job that has just started.
    fn next_refill(&self) -> Option<Duration> {
        let now = Instant::now();
        if self.starting() {
            return None;
        }
        let quiet = self.last_exec.map_or(Duration::ZERO, |at| {
            (at + REFILL_QUIET).saturating_duration_since(now)
        });
        self.zygote
            .pool
            .next_refill(now)
            .map(|wait| wait.max(quiet))
    }

    /// Takes the spare namespaces the helper has made; without a helper that can
    /// make them, sandboxes make their own from now on.
    fn on_spare_namespaces(&mut self) {
        let Some(spares) = &mut self.zygote.spare_namespaces else {
            return;
        };
        if let Err(why) = spares.receive(&mut self.buf) {
            tracing::info!(%why, "no spare network and IPC namespaces: each sandbox makes its own");
            self.zygote.spare_namespaces = None;
        }
    }

    /// Ends every sandbox that has overrun a limit, retries pending cgroup removals, and
    /// frees the subnets of veth pairs that are gone.
    fn enforce_limits(&mut self) {
        let now = Instant::now();
        for child in self
            .children
            .values_mut()
            .filter(|child| child.kill_reason.is_none())
        {
            if let Some(reason) = child.enforcement.overrun(now) {
                tracing::debug!(id = child.id, ?reason, "sandbox overran a limit");
                child.kill(reason);
            }
        }
        self.zygote.enforcer.retry_removals();
        if let Some(network) = &mut self.zygote.network {
            network.collect();
        }
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(signal) => {
                    tracing::info!(%signal, "shutting down");
                    self.shut_down();
                }
                Err(_) => {}
            }
        }
    }

    /// Stops accepting, removes the socket and kills every sandbox; the loop ends once
    /// they are all reaped.
    fn shut_down(&mut self) {
        self.shutting_down = true;
        self.listener = None;
        self.zygote.pool.close();
        for child in self.children.values_mut() {
            child.kill(EndReason::DaemonShutdown);
        }
    }

    fn on_listener(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let fd = match listener.accept() {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(e) => {
                    // EMFILE and the like: keep serving those already connected.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    return;
                }
            };
            match self.zygote.access.check(fd.as_fd()) {
                Ok(peer) => {
                    tracing::debug!(?peer, "client connected");
                    self.add_connection(fd, Some(peer));
                }
                Err((peer, reason)) => {
                    // Answered when its Hello arrives, so that the refusal is read
                    // rather than lost to a connection reset.
                    tracing::warn!(?peer, %reason, "refused a client");
                    self.next_conn += 1;
                    let mut conn = Connection::new(fd, peer);
                    conn.refused = Some(reason);
                    self.conns.insert(self.next_conn, conn);
                }
            }
        }
    }

    fn add_connection(&mut self, fd: OwnedFd, peer: Option<listener::Peer>) {
        self.next_conn += 1;
        self.conns.insert(self.next_conn, Connection::new(fd, peer));
    }

    fn on_connection(&mut self, key: u64, flags: PollFlags) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if flags.contains(PollFlags::POLLOUT) {
            conn.flush();
        }
        if !flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            return;
        }
        // A bounded batch per wake-up, so one busy client cannot starve the others.
        for _ in 0..32 {
            let Some(conn) = self.conns.get_mut(&key) else {
                return;
            };
            if conn.finished() || conn.closing {
                return;
            }
            match protocol::recv::<Request>(conn.as_fd(), &mut self.buf, true) {
                Ok(Some((request, fds))) => self.on_request(key, request, fds),
                Ok(None) => {
                    tracing::debug!(peer = ?conn.peer, "client hung up");
                    conn.dead = true;
                    return;
                }
                Err(protocol::ProtocolError::Io(e)) if e.errno() == Errno::EAGAIN => return,
                Err(protocol::ProtocolError::Io(e)) => {
                    tracing::debug!(error = %e, "client connection failed");
                    conn.dead = true;
                    return;
                }
                Err(e) if conn.refused.is_some() => {
                    let reason = conn.refused.take().unwrap_or_default();
                    conn.send_error(None, ErrorKind::PermissionDenied, reason);
                    conn.closing = true;
                    tracing::debug!(error = %crate::error_chain(&e), "refused client sent a malformed message");
                    return;
                }
                Err(e) => {
                    tracing::warn!(peer = ?conn.peer, error = %crate::error_chain(&e), "malformed message; closing the connection");
                    conn.send_error(None, ErrorKind::Protocol, e.to_string());
                    conn.closing = true;
                    return;
                }
            }
        }
    }

    fn on_request(&mut self, key: u64, request: Request, fds: Vec<OwnedFd>) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if let Some(reason) = conn.refused.take() {
            conn.send_error(None, ErrorKind::PermissionDenied, reason);
            conn.closing = true;
            return;
        }
        match request {
            Request::Hello { version, client } if !conn.greeted => {
                if version != PROTOCOL_VERSION {
                    conn.send_error(
                        None,
                        ErrorKind::VersionMismatch {
                            supported: PROTOCOL_VERSION,
                        },
                        format!(
                            "client speaks protocol version {version}, this daemon speaks {PROTOCOL_VERSION}"
                        ),
                    );
                    conn.closing = true;
                    return;
                }
                tracing::debug!(%client, "handshake");
                conn.greeted = true;
                conn.send(
                    &Event::Welcome {
                        version: PROTOCOL_VERSION,
                        server: format!("hatchery {}", env!("CARGO_PKG_VERSION")),
                    },
                    Vec::new(),
                );
            }
            _ if !conn.greeted => {
                conn.send_error(None, ErrorKind::Protocol, "the first message must be Hello");
                conn.closing = true;
            }
            Request::Hello { .. } => {
                conn.send_error(None, ErrorKind::Protocol, "Hello sent twice");
                conn.closing = true;
            }
            Request::Spawn { id, request } => self.spawn(key, id, *request, fds),
            Request::Signal { id, signal } => {
                let pid = conn.children.get(&id).copied();
                match pid.and_then(|pid| self.children.get_mut(&pid)) {
                    Some(_) if !(1..=libc::SIGRTMAX()).contains(&signal) => {
                        conn.send_error(
                            Some(id),
                            ErrorKind::InvalidRequest,
                            format!("no such signal: {signal}"),
                        );
                    }
                    Some(_) if signal == libc::SIGSTOP => {
                        let message = "SIGSTOP would stop only the sandbox's init; send SIGTSTP";
                        conn.send_error(Some(id), ErrorKind::InvalidRequest, message);
                    }
                    Some(child) if signal == libc::SIGKILL => child.kill(EndReason::KilledByClient),
                    Some(child) => {
                        if let Err(e) = sys::pidfd_send_signal(child.pidfd.as_fd(), signal) {
                            // ESRCH: it is exiting; its Exited event follows.
                            tracing::debug!(error = %e, id, "signal not delivered");
                        }
                    }
                    None => conn.send_error(
                        Some(id),
                        ErrorKind::UnknownId,
                        format!("no live child with id {id}"),
                    ),
                }
            }
        }
    }

    fn spawn(&mut self, key: u64, id: u64, mut request: SpawnRequest, fds: Vec<OwnedFd>) {
        let started = Instant::now();
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.children.contains_key(&id) {
            conn.send_error(
                Some(id),
                ErrorKind::InvalidRequest,
                format!("id {id} is already in use"),
            );
            return;
        }
        if self.shutting_down {
            conn.send_error(
                Some(id),
                ErrorKind::ShuttingDown,
                "the daemon is shutting down",
            );
            return;
        }
        if self.children.len() >= self.zygote.max_children {
            conn.send_error(
                Some(id),
                ErrorKind::Busy,
                format!(
                    "{} sandboxes are running, the most this daemon allows",
                    self.children.len()
                ),
            );
            return;
        }
        if let Err(e) = validate::validate(&request) {
            conn.send_error(Some(id), ErrorKind::InvalidRequest, e.to_string());
            return;
        }
        // Unknown entries and arguments that do not decode fail here, before any cgroup,
        // pipe or process exists.
        let workload = match self.zygote.entries.prepare(&request.command, &request.env) {
            Ok(workload) => workload,
            Err((kind, message)) => {
                conn.send_error(Some(id), kind, message);
                return;
            }
        };
        let wanted = request
            .stdio()
            .iter()
            .filter(|s| matches!(s, Stdio::Fd(_)))
            .count();
        if fds.len() != wanted {
            conn.send_error(
                Some(id),
                ErrorKind::InvalidRequest,
                format!(
                    "the request names {wanted} passed fds but {} came with it",
                    fds.len()
                ),
            );
            return;
        }
        if matches!(request.sandbox.network, NetworkConfig::Veth(_))
            && self.zygote.network.is_none()
        {
            let message = "this daemon has no veth network (start it with --veth-pool)";
            conn.send_error(Some(id), ErrorKind::NetworkUnavailable, message);
            return;
        }
        let config = &request.sandbox;
        let enforcement = match self.zygote.enforcer.prepare(
            &config.limits,
            config.allow_unenforced_limits,
            started,
        ) {
            Ok(enforcement) => enforcement,
            Err(refusal) => {
                conn.send_error(Some(id), refusal.kind, refusal.message);
                return;
            }
        };
        if !enforcement.skipped.is_empty() {
            tracing::warn!(id, skipped = ?enforcement.skipped, "running without limits this host cannot enforce");
        }
        // The init applies the limits in force (rlimits, the /tmp size) itself.
        request.sandbox.limits = enforcement.limits;
        let kill_on_disconnect = request.sandbox.kill_on_disconnect;
        // A warm-pool sandbox runs programs only, outside any cgroup; one of a veth shape
        // comes with its network up.
        let poolable =
            enforcement.cgroup.is_none() && matches!(workload, crate::sandbox::Workload::Exec);
        let warm = match poolable {
            true => self.zygote.start_warm(&request, fds),
            false => Err(fds),
        };
        let mut subnet = None;
        let result = match warm {
            Ok(started) => started,
            Err(fds) => {
                // A subnet before anything is cloned: a used-up pool is a plain refusal.
                if let (NetworkConfig::Veth(_), Some(network)) =
                    (&request.sandbox.network, &mut self.zygote.network)
                {
                    subnet = network.reserve();
                    if subnet.is_none() {
                        if let Some(cgroup) = enforcement.cgroup {
                            self.zygote.enforcer.retire(cgroup);
                        }
                        let message = "every subnet of the veth pool is in use";
                        conn.send_error(Some(id), ErrorKind::AddressPoolExhausted, message);
                        return;
                    }
                }
                self.zygote
                    .sandboxer
                    .start(
                        &request,
                        fds,
                        enforcement.cgroup.as_ref(),
                        workload,
                        self.zygote.spare_namespaces.as_mut(),
                    )
                    .map(|sandbox| (sandbox, None))
            }
        };
        match result {
            Ok((sandbox, lease)) => {
                tracing::debug!(id, pid = sandbox.pid, "sandbox cloned");
                let pid = sandbox.pid;
                conn.children.insert(id, sandbox.pid);
                self.children.insert(
                    sandbox.pid,
                    Child {
                        conn: Some(key),
                        id,
                        pidfd: sandbox.pidfd,
                        channel: sandbox.channel,
                        pipes: sandbox.pipes,
                        started,
                        running: false,
                        failed: false,
                        workload: None,
                        tasks_started: None,
                        channel_closed: false,
                        enforcement,
                        kill_reason: None,
                        kill_on_disconnect,
                        network: lease,
                    },
                );
                if let (Some(subnet), NetworkConfig::Veth(veth)) =
                    (subnet, &request.sandbox.network)
                {
                    self.attach_network(pid, subnet, veth);
                }
            }
            Err(e) => {
                if let (Some(subnet), Some(network)) = (subnet, &mut self.zygote.network) {
                    network.unreserve(subnet);
                }
                if let Some(cgroup) = enforcement.cgroup {
                    self.zygote.enforcer.retire(cgroup);
                }
                let error = match &e {
                    StartError::Sys(error) => Some(error.clone()),
                    StartError::NotSingleThreaded(_) | StartError::Cgroup(_) => None,
                };
                let mut message = crate::error_chain(&e);
                if let Some(error) = &error {
                    message = diagnose::with_hint(message, error);
                }
                tracing::error!(%message, "cannot start a sandbox");
                conn.send_error(Some(id), ErrorKind::Internal { error }, message);
            }
        }
    }

    /// Builds a just-cloned sandbox's veth network and releases its init to run the
    /// workload; on failure, kills it and tells its client why.
    fn attach_network(
        &mut self,
        pid: i32,
        subnet: crate::network::Subnet,
        veth: &crate::protocol::VethConfig,
    ) {
        let (Some(network), Some(child)) = (&mut self.zygote.network, self.children.get_mut(&pid))
        else {
            return;
        };
        let began = Instant::now();
        match network.attach(subnet, pid, child.pidfd.as_fd(), veth) {
            Ok(lease) => {
                let took_us = began.elapsed().as_micros() as u64;
                tracing::debug!(id = child.id, pid, interface = lease.host_name(), subnet = ?lease.subnet(), took_us, "veth up");
                child.network = Some(lease);
                if child.channel.network_ready().is_err() {
                    // It died already; its reap reports the failure.
                    tracing::debug!(pid, "sandbox gone before its network was up");
                }
            }
            Err(error) => {
                // A setup failure the init may have reported meanwhile explains more.
                self.on_reports(pid);
                let Some(child) = self.children.get_mut(&pid) else {
                    return;
                };
                child.kill(EndReason::KilledByClient);
                if child.failed {
                    return;
                }
                child.failed = true;
                tracing::warn!(pid, %error, "cannot set up a veth network");
                let Some(conn) = child.conn.and_then(|key| self.conns.get_mut(&key)) else {
                    return;
                };
                forget_child(conn, child.id, pid);
                let step = crate::protocol::SetupStep::Network;
                let message = diagnose::with_hint(
                    format!("sandbox setup step \"{step}\" failed: {error}"),
                    &error,
                );
                conn.send_error(
                    Some(child.id),
                    ErrorKind::Setup {
                        step,
                        error: error.into(),
                    },
                    message,
                );
            }
        }
    }

    /// Handles what a sandbox's init has reported so far.
    fn on_reports(&mut self, pid: i32) {
        loop {
            let Some(child) = self.children.get_mut(&pid) else {
                return;
            };
            let report = match child.channel.try_report(&mut self.buf) {
                Ok(Pending::Report(report)) => report,
                Ok(Pending::Nothing) => return,
                Ok(Pending::Closed) => {
                    child.channel_closed = true;
                    return;
                }
                Err(e) => {
                    tracing::warn!(pid, error = %crate::error_chain(&e), "unreadable report from a sandbox; killing it");
                    let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
                    child.enforcement.kill();
                    return;
                }
            };
            self.on_report(pid, report);
        }
    }

    fn on_report(&mut self, pid: i32, report: FromSandbox) {
        let Some(child) = self.children.get_mut(&pid) else {
            return;
        };
        let conn = child.conn.and_then(|key| self.conns.get_mut(&key));
        match report {
            FromSandbox::Execed(setup) if !child.running && !child.failed => {
                tracing::debug!(pid, %setup, "sandbox running; its setup, in µs");
                child.running = true;
                self.last_exec = Some(Instant::now());
                let Some(conn) = conn else { return };
                let mut roles = Vec::with_capacity(4);
                let mut fds = Vec::with_capacity(4);
                let roles_in_order = [
                    FdRole::Stdin,
                    FdRole::Stdout,
                    FdRole::Stderr,
                    FdRole::Result,
                ];
                for (role, pipe) in roles_in_order.into_iter().zip(&mut child.pipes) {
                    if let Some(fd) = pipe.take() {
                        roles.push(role);
                        fds.push(fd);
                    }
                }
                match child.pidfd.try_clone() {
                    Ok(pidfd) => {
                        roles.push(FdRole::Pidfd);
                        fds.push(pidfd);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot duplicate a pidfd for the client"),
                }
                conn.send(
                    &Event::Spawned {
                        id: child.id,
                        pid,
                        fds: roles,
                    },
                    fds,
                );
            }
            FromSandbox::ExecFailed(errno) if !child.running && !child.failed => {
                child.failed = true;
                let Some(conn) = conn else { return };
                // The id is free again at once, though the init is reaped later.
                forget_child(conn, child.id, pid);
                let errno = Errno::from_raw(errno);
                let (kind, what) = match errno {
                    Errno::ENOENT => (ErrorKind::NotFound, "not found"),
                    _ => (
                        ErrorKind::CannotExecute {
                            errno: errno as i32,
                        },
                        "cannot be executed",
                    ),
                };
                conn.send_error(
                    Some(child.id),
                    kind,
                    format!("program {what}: execve: {errno:?} ({})", errno.desc()),
                );
            }
            FromSandbox::SetupFailed(error) if !child.running && !child.failed => {
                child.failed = true;
                let Some(conn) = conn else { return };
                forget_child(conn, child.id, pid);
                let plain = format!("{error}: {}", error.error);
                let message = match error.error.sys_error() {
                    Some(sys) => diagnose::with_hint(plain.clone(), sys),
                    None => plain.clone(),
                };
                if message != plain {
                    tracing::warn!(%message, "a sandbox could not be set up");
                }
                conn.send_error(
                    Some(child.id),
                    ErrorKind::Setup {
                        step: error.step,
                        error: error.error,
                    },
                    message,
                );
            }
            FromSandbox::WorkloadExited {
                status,
                tasks_started,
                usage,
            } => {
                child.workload = Some(status);
                child.tasks_started = tasks_started;
                // Nothing the workload started runs any more (the init has killed and
                // reaped it all): the client learns of the end now, not after the init's
                // own exit and the namespaces' teardown.
                if child.running {
                    let Some(conn) = conn else { return };
                    let verdict = verdict(child, status, usage);
                    tracing::debug!(id = child.id, pid, ?verdict, "sandbox ended");
                    send_exited(conn, child.id, pid, verdict);
                }
            }
            other => tracing::warn!(pid, ?other, "out-of-order report from a sandbox"),
        }
    }

    /// Reaps every exited sandbox and reports its verdict.
    fn reap(&mut self) {
        loop {
            let reaped = match sys::wait4_any_nohang() {
                Ok(Some(reaped)) => reaped,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "wait4 failed");
                    return;
                }
            };
            if self
                .zygote
                .pool
                .reaped(reaped.pid, &mut self.buf, self.zygote.network.as_mut())
            {
                continue;
            }
            // Reports written before the exit are still queued on the channel.
            self.on_reports(reaped.pid);
            let Some(mut child) = self.children.remove(&reaped.pid) else {
                continue;
            };
            let init_status = ExitStatus::from_wait_status(reaped.status);
            // A sandbox whose init reported the workload's exit had its `Exited` sent
            // then; one whose init was killed first is judged by the init's own status and
            // usage (which counts the processes it reaped), if a client is there to get
            // the verdict (making it reads the cgroup).
            let unreported = child.running && child.workload.is_none() && child.conn.is_some();
            let verdict = unreported
                .then(|| verdict(&mut child, init_status, WorkloadUsage::from(&reaped.rusage)));
            if let Some(cgroup) = child.enforcement.cgroup.take() {
                self.zygote.enforcer.retire(cgroup);
            }
            // Its subnet comes back once the pair is gone with the namespace.
            if let (Some(lease), Some(network)) = (child.network.take(), &mut self.zygote.network) {
                network.release(lease);
            }
            let conn = child.conn.and_then(|key| self.conns.get_mut(&key));
            let Some(conn) = conn else { continue };
            if let Some(verdict) = verdict {
                tracing::debug!(id = child.id, pid = reaped.pid, ?verdict, "sandbox reaped");
                send_exited(conn, child.id, reaped.pid, verdict);
            } else if !child.running && !child.failed {
                forget_child(conn, child.id, reaped.pid);
                let message = format!("the sandbox ended during setup ({init_status:?})");
                conn.send_error(Some(child.id), ErrorKind::Internal { error: None }, message);
            }
        }
    }

    /// Drops finished connections and kills the sandboxes they leave behind (those whose
    /// request allows it run on, unreported).
    fn drop_finished_connections(&mut self) {
        let finished: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.finished())
            .map(|(&k, _)| k)
            .collect();
        for key in finished {
            let Some(conn) = self.conns.remove(&key) else {
                continue;
            };
            conn.discard_unread();
            for pid in conn.children.values() {
                if let Some(child) = self.children.get_mut(pid) {
                    child.conn = None;
                    if child.kill_on_disconnect {
                        tracing::debug!(pid, "client gone; killing its sandbox");
                        child.kill(EndReason::KilledByClient);
                    }
                    // Pipe ends never handed over would keep its stdin open forever.
                    child.pipes = Default::default();
                }
            }
        }
    }
}

/// The verdict of a sandbox whose workload ended with `status`, having used `usage`.
fn verdict(child: &mut Child, status: ExitStatus, usage: WorkloadUsage) -> Verdict {
    let cgroup = child.enforcement.usage();
    // Only an OOM kill under the sandbox's own limit is its doing.
    let oom_killed = child.enforcement.limits.memory_bytes.is_some()
        && cgroup.as_ref().is_some_and(|u| u.oom_kills > 0);
    let reason = match (child.kill_reason, status) {
        (Some(reason), _) => reason,
        (None, _) if oom_killed => EndReason::OomKilled,
        (None, ExitStatus::Exited(_)) => EndReason::Exited,
        (None, ExitStatus::Signaled(_)) => EndReason::Signaled,
    };
    Verdict {
        status,
        reason,
        wall_time_us: child.started.elapsed().as_micros() as u64,
        // The cgroup counts every process that ran, also any the init did not reap.
        user_cpu_us: cgroup
            .and_then(|u| u.cpu_user_ns)
            .map_or(usage.user_cpu_us, |ns| ns / 1000),
        system_cpu_us: cgroup
            .and_then(|u| u.cpu_system_ns)
            .map_or(usage.system_cpu_us, |ns| ns / 1000),
        max_rss_kib: usage.max_rss_kib,
        memory_peak_bytes: cgroup.and_then(|u| u.memory_peak_bytes),
        tasks_started: child.tasks_started,
        limits: child.enforcement.limits,
        skipped_limits: std::mem::take(&mut child.enforcement.skipped),
    }
}

/// Sends a child's `Exited`, which frees its id.
fn send_exited(conn: &mut Connection, id: u64, pid: i32, verdict: Verdict) {
    forget_child(conn, id, pid);
    conn.send(&Event::Exited { id, verdict }, Vec::new());
}

/// Frees a request id, unless a newer child has taken it already.
fn forget_child(conn: &mut Connection, id: u64, pid: i32) {
    if conn.children.get(&id) == Some(&pid) {
        conn.children.remove(&id);
    }
}
