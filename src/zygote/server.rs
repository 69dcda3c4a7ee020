//! The daemon's loop: one thread polls the listening socket, every client connection,
//! the channel of each sandbox being set up, the spare-namespace helper and a signalfd,
//! and hands each ready source to its handler. Runs in the zygote only.
//!
//! The handlers never wait on a client or a sandbox: a spawn is admitted, cloned and
//! left to report (see `spawn` and `child`); the one wait inside a handler is a veth
//! network's carrier, bounded (see `crate::network`).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::child::{sandbox_event, Child};
use super::connection::{Connection, HANDSHAKE_DEADLINE};
use super::listener::{self, Listener};
use super::metrics::Metrics;
use super::stats::Stats;
use super::systemd::Notifier;
use super::{Zygote, ZygoteError};
use crate::protocol::{
    self, EndReason, ErrorKind, Event, Request, SandboxEndReason, PROTOCOL_VERSION,
};
use crate::sandbox::SpareNamespaces;
use crate::sys::{self, Context, SysError};

/// How long after a sandbox's exec the warm pool waits before it refills.
const REFILL_QUIET: Duration = Duration::from_millis(3);

/// How long the daemon stops accepting after it ran out of fds, so that a flood of
/// connections costs it a few wake-ups a second rather than a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A warning that may repeat on every turn of the loop (a flood makes it do so): logged
/// at most once per [`RateLimited::EVERY`], with the count of those suppressed since.
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    const EVERY: Duration = Duration::from_secs(10);

    const fn new() -> RateLimited {
        RateLimited {
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log now; if so, how many were suppressed before this one.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + Self::EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What a polled fd is.
#[derive(Clone, Copy)]
enum Source {
    Signals,
    Listener,
    Conn(u64),
    Child(i32),
    SpareNamespaces,
    Metrics,
    Scrape(u64),
}

/// The daemon while it serves: the prepared [`Zygote`] and everything the loop tracks.
pub(super) struct Server {
    pub(super) zygote: Zygote,
    listener: Option<Listener>,
    signals: SignalFd,
    pub(super) conns: HashMap<u64, Connection>,
    /// Every sandbox not yet reaped, by its init's pid.
    pub(super) children: HashMap<i32, Child>,
    /// The live persistent sandboxes' init pids, by name.
    pub(super) sandboxes: HashMap<String, i32>,
    /// The number in the last name the daemon gave a sandbox (`sandbox-N`).
    pub(super) next_sandbox_name: u64,
    next_conn: u64,
    /// The number of the last spawn request, counted over all connections (the
    /// `sandbox` field of the log).
    pub(super) next_sandbox: u64,
    pub(super) buf: protocol::RecvBuffer,
    /// Serving a single embedded client: stop when it is gone.
    embedded: bool,
    pub(super) shutting_down: bool,
    /// When a sandbox last exec'd its workload (the warm pool waits a moment after).
    pub(super) last_exec: Option<Instant>,
    /// An fd held in reserve: closed to accept (and close) a connection when the process
    /// has run out of fds, so that a full listen queue cannot wake the loop forever.
    reserve: Option<OwnedFd>,
    /// No accepting until then (after running out of fds).
    accept_paused_until: Option<Instant>,
    accept_failed: RateLimited,
    turned_away: RateLimited,
    /// What the loop counts (served, failed, ended, pool hits), for `Status`.
    pub(super) stats: Stats,
    /// The service manager to tell of readiness, reloads and the stop, if one asked.
    pub(super) notifier: Option<Notifier>,
    /// When shutting down: when the sandboxes still running are killed.
    kill_at: Option<Instant>,
    /// The metrics responder (`serve --metrics`).
    pub(super) metrics: Option<Metrics>,
}

impl Server {
    pub(super) fn new(
        mut zygote: Zygote,
        listener: Option<Listener>,
        conn: Option<OwnedFd>,
    ) -> Result<Server, SysError> {
        sys::ensure_stdio_open()?;
        zygote.sandboxer.note_signal_dispositions();
        let mut mask = SigSet::empty();
        for signal in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
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
            sandboxes: HashMap::new(),
            next_sandbox_name: 0,
            next_conn: 0,
            next_sandbox: 0,
            buf: protocol::RecvBuffer::new(),
            embedded: conn.is_some(),
            shutting_down: false,
            last_exec: None,
            reserve: Some(reserve_fd()?),
            accept_paused_until: None,
            accept_failed: RateLimited::new(),
            turned_away: RateLimited::new(),
            stats: Stats::new(),
            notifier: None,
            kill_at: None,
            metrics: None,
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

    pub(super) fn run(mut self) -> Result<(), ZygoteError> {
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
                    &mut self.zygote.host_ids,
                );
            }
            for (source, flags) in ready {
                match source {
                    Source::Signals => self.on_signals(),
                    Source::Listener => self.on_listener(),
                    Source::Conn(conn) => self.on_connection(conn, flags),
                    Source::Child(pid) => self.on_reports(pid),
                    Source::SpareNamespaces => self.on_spare_namespaces(),
                    Source::Metrics => {
                        if let Some(metrics) = &mut self.metrics {
                            metrics.accept();
                        }
                    }
                    Source::Scrape(key) => self.on_scrape(key),
                }
            }
            let quiet = !self.starting();
            if let Some(spares) = self.zygote.spare_namespaces.as_mut() {
                spares.replenish(quiet);
            }
            self.enforce_limits();
            if self.kill_at.is_some_and(|at| Instant::now() >= at) {
                self.kill_at = None;
                self.kill_all();
            }
            self.expire_handshakes();
            if let Some(metrics) = &mut self.metrics {
                metrics.expire();
            }
            self.drop_finished_connections();
        }
    }

    /// Whether a sandbox is being set up (its workload not started yet).
    fn starting(&self) -> bool {
        self.children.values().any(Child::setting_up)
    }

    /// Polls every source; returns those that are ready.
    fn wait(&mut self) -> Result<Vec<(Source, PollFlags)>, ZygoteError> {
        let mut sources = Vec::with_capacity(2 + self.conns.len() + self.children.len());
        let mut fds = Vec::with_capacity(sources.capacity());
        sources.push(Source::Signals);
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        let accepting = self
            .accept_paused_until
            .is_none_or(|until| Instant::now() >= until);
        if let Some(listener) = self.listener.as_ref().filter(|_| accepting) {
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
        if let Some(metrics) = &self.metrics {
            if let Some(fd) = metrics.accepting() {
                sources.push(Source::Metrics);
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            for (key, fd, writing) in metrics.scrapes() {
                sources.push(Source::Scrape(key));
                let flags = if writing {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                fds.push(PollFd::new(fd, flags));
            }
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
            .chain(self.next_sandbox_check(now))
            .chain(
                self.zygote
                    .network
                    .as_ref()
                    .filter(|network| network.draining())
                    .map(|_| crate::network::COLLECT_EVERY),
            )
            .chain(self.next_refill())
            .chain(self.kill_at.map(|at| at.saturating_duration_since(now)))
            .chain(
                self.conns
                    .values()
                    .filter_map(Connection::handshake_due)
                    .chain(self.accept_paused_until)
                    .chain(self.metrics.as_ref().and_then(Metrics::next_deadline))
                    .map(|at| at.saturating_duration_since(now)),
            )
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
                sandbox_event!(
                    tracing::Level::DEBUG,
                    &child.origin,
                    reason = %reason.name(),
                    "sandbox overran a limit; killing it"
                );
                child.kill(reason);
            }
        }
        self.enforce_sandboxes();
        self.zygote.enforcer.retry_removals();
        if let Some(network) = &mut self.zygote.network {
            network.collect();
        }
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(Signal::SIGHUP) => self.reload(),
                Ok(signal) => {
                    tracing::info!(%signal, "shutting down");
                    self.shut_down();
                }
                Err(_) => {}
            }
        }
    }

    /// Tells the service manager, if one asked, e.g. `READY=1`.
    fn notify(&self, state: &str) {
        if let Some(notifier) = &self.notifier {
            notifier.notify(state);
        }
    }

    /// Tells the service manager the daemon accepts: `READY=1` and a status line.
    pub(super) fn ready(&self) {
        let socket = self
            .listener
            .as_ref()
            .map(|l| l.path().display().to_string())
            .unwrap_or_default();
        self.notify(&format!("READY=1\nSTATUS=serving on {socket}"));
    }

    /// Stops accepting (a socket the daemon made is removed; one a service manager
    /// passed stays, and connections queue on it for the next daemon), then kills every
    /// sandbox, at once or after the shutdown grace; the loop ends once they are all
    /// reaped. A second SIGTERM or SIGINT during the grace kills them at once.
    fn shut_down(&mut self) {
        let again = self.shutting_down;
        self.shutting_down = true;
        self.listener = None;
        self.zygote.pool.close();
        let grace = self.zygote.shutdown_grace;
        let running = self.children.len();
        if again || grace.is_zero() || running == 0 {
            self.notify(&format!(
                "STOPPING=1\nSTATUS=stopping: killing {running} sandboxes"
            ));
            self.kill_at = None;
            self.kill_all();
            return;
        }
        tracing::info!(
            sandboxes = running,
            grace_ms = grace.as_millis() as u64,
            "letting running sandboxes finish; killing them after the grace"
        );
        self.notify(&format!(
            "STOPPING=1\nSTATUS=stopping: {running} sandboxes may run {} s more",
            grace.as_secs()
        ));
        self.kill_at = Some(Instant::now() + grace);
    }

    /// Kills every sandbox for the daemon's shutdown.
    fn kill_all(&mut self) {
        for child in self.children.values_mut() {
            if let Some(persistent) = child.persistent.as_mut() {
                persistent
                    .end
                    .get_or_insert(SandboxEndReason::DaemonShutdown);
            }
            child.kill(EndReason::DaemonShutdown);
        }
    }

    /// SIGHUP: takes the limit defaults and ceilings and the seccomp policies of a
    /// freshly loaded configuration (its files read again). Running sandboxes keep
    /// theirs; idle warm ones, forked with the old seccomp programs, are replaced. A
    /// configuration that does not load or compile changes nothing and is logged.
    fn reload(&mut self) {
        let Some(reloader) = self.zygote.reload.clone() else {
            tracing::info!("SIGHUP: this daemon has nothing to reload");
            return;
        };
        self.notify("RELOADING=1");
        let applied = reloader.load().and_then(|config| {
            config.limits.check().map_err(|e| crate::error_chain(&e))?;
            let seccomp = super::compile_policies(&config).map_err(|e| crate::error_chain(&e))?;
            self.zygote.enforcer.set_policy(config.limits);
            self.zygote.sandboxer.set_seccomp(seccomp);
            self.zygote.pool.drain_idle();
            Ok(())
        });
        match applied {
            Ok(()) => tracing::info!("SIGHUP: limits and seccomp policies reloaded"),
            Err(why) => {
                tracing::error!(error = %why, "SIGHUP: reload failed; the running configuration stays")
            }
        }
        self.notify("READY=1");
    }

    fn on_listener(&mut self) {
        // A bounded batch per wake-up: a flood of connections must not keep the loop from
        // everyone already connected.
        for _ in 0..64 {
            let Some(listener) = &self.listener else {
                return;
            };
            let fd = match listener.accept() {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(e) if matches!(e.errno(), Errno::EMFILE | Errno::ENFILE) => {
                    self.shed_connections();
                    return;
                }
                Err(e) => {
                    if let Some(suppressed) = self.accept_failed.allow() {
                        tracing::warn!(error = %e, suppressed, "cannot accept a connection");
                    }
                    return;
                }
            };
            self.admit_connection(fd);
        }
    }

    /// Out of fds: connections at the head of the listen queue (a bounded batch) are
    /// accepted with the reserve fd and closed at once (their clients see the connection
    /// end), the reserve is taken again, and accepting pauses for [`ACCEPT_BACKOFF`].
    /// Those already connected are served meanwhile.
    fn shed_connections(&mut self) {
        for _ in 0..64 {
            drop(self.reserve.take());
            let accepted = self.listener.as_ref().map(Listener::accept);
            self.reserve = reserve_fd().ok();
            match accepted {
                Some(Ok(Some(fd))) => drop(fd),
                _ => break,
            }
        }
        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
        if let Some(suppressed) = self.accept_failed.allow() {
            tracing::warn!(
                connections = self.conns.len(),
                suppressed,
                "out of file descriptors: refusing connections for a moment"
            );
        }
    }

    /// Takes a new connection: past the daemon's bounds (in all, or for its uid) it is
    /// answered `Busy` and closed; a peer that may not use the daemon is kept only until
    /// its `Hello` (answered with the refusal, so that it is read rather than lost to a
    /// reset) or the handshake deadline.
    fn admit_connection(&mut self, fd: OwnedFd) {
        let checked = self.zygote.access.check(fd.as_fd());
        let peer = match &checked {
            Ok(peer) => Some(*peer),
            Err((peer, _)) => *peer,
        };
        let limits = self.zygote.connections;
        let from_uid = |uid: u32| {
            self.conns
                .values()
                .filter(|c| c.peer.is_some_and(|p| p.uid == uid))
                .count()
        };
        let over = if self.conns.len() >= limits.total {
            Some(format!(
                "{} connections are open, the most this daemon keeps",
                self.conns.len()
            ))
        } else {
            peer.map(|p| p.uid)
                .filter(|&uid| from_uid(uid) >= limits.per_uid)
                .map(|uid| {
                    format!(
                        "uid {uid} has {} connections open, the most this daemon keeps per uid",
                        limits.per_uid
                    )
                })
        };
        if let Some(reason) = over {
            if let Some(suppressed) = self.turned_away.allow() {
                tracing::warn!(
                    client_uid = peer.map(|p| p.uid),
                    client_pid = peer.map(|p| p.pid),
                    %reason,
                    suppressed,
                    "turned a connection away"
                );
            }
            let mut conn = Connection::new(fd, peer);
            conn.send_error(None, ErrorKind::Busy, reason);
            conn.discard_unread();
            return;
        }
        match checked {
            Ok(peer) => {
                tracing::debug!(?peer, "client connected");
                self.add_connection(fd, Some(peer));
            }
            Err((peer, reason)) => {
                if let Some(suppressed) = self.turned_away.allow() {
                    tracing::warn!(
                        client_uid = peer.map(|p| p.uid),
                        client_pid = peer.map(|p| p.pid),
                        %reason,
                        suppressed,
                        "refused a client"
                    );
                }
                self.next_conn += 1;
                let mut conn = Connection::new(fd, peer);
                conn.refused = Some(reason);
                self.conns.insert(self.next_conn, conn);
            }
        }
    }

    /// Closes every connection that has not sent its `Hello` within
    /// [`HANDSHAKE_DEADLINE`], telling it why (a refused peer gets its refusal).
    fn expire_handshakes(&mut self) {
        let now = Instant::now();
        for conn in self.conns.values_mut() {
            if conn.handshake_due().is_some_and(|due| now >= due) {
                match conn.refused.take() {
                    Some(reason) => conn.send_error(None, ErrorKind::PermissionDenied, reason),
                    None => conn.send_error(
                        None,
                        ErrorKind::Protocol,
                        format!("no Hello within {} s", HANDSHAKE_DEADLINE.as_secs()),
                    ),
                }
                conn.closing = true;
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
            Request::Status { id } => self.answer_status(key, id),
            Request::CreateSandbox {
                id,
                config,
                options,
            } => self.create_sandbox(key, id, *config, options, fds),
            Request::Exec {
                id,
                sandbox,
                request,
            } => self.exec_in_sandbox(key, id, sandbox, *request, fds),
            Request::DestroySandbox { id, sandbox } => self.destroy_sandbox(key, id, sandbox),
            Request::ListSandboxes { id } => self.list_sandboxes(key, id),
            Request::Signal { id, signal } if conn.commands.contains_key(&id) => {
                let (pid, number) = conn.commands[&id];
                if !(1..=libc::SIGRTMAX()).contains(&signal) || signal == libc::SIGSTOP {
                    let message = format!("no such signal for a command: {signal}");
                    conn.send_error(Some(id), ErrorKind::InvalidRequest, message);
                    return;
                }
                let Some(child) = self.children.get_mut(&pid) else {
                    return;
                };
                if let Some(command) = child
                    .persistent
                    .as_mut()
                    .and_then(|p| p.commands.get_mut(&number))
                {
                    if signal == libc::SIGKILL {
                        command.kill_reason.get_or_insert(EndReason::KilledByClient);
                    }
                    // A failure means the sandbox is gone: its end is reported next.
                    let _ = child.channel.signal_command(number, signal);
                }
            }
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
            self.drop_commands_of(&conn);
            for pid in conn.children.values() {
                if let Some(child) = self.children.get_mut(pid) {
                    child.conn = None;
                    if child.kill_on_disconnect {
                        if let Some(persistent) = child.persistent.as_mut() {
                            persistent.end.get_or_insert(SandboxEndReason::CreatorGone);
                        }
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

/// The fd a [`Server`] keeps in reserve: `/dev/null`, close-on-exec.
fn reserve_fd() -> Result<OwnedFd, SysError> {
    nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .op_path("open", "/dev/null")
}
