//! Persistent sandboxes as the daemon keeps them: created under a name owned by the
//! creator's uid, sent commands to fork, watched for their idle timeout and their
//! commands' wall time, destroyed, and judged. Runs in the zygote's loop.
//!
//! A persistent sandbox is a [`Child`] like a spawn's, made by the same admission and
//! clone, whose init runs no workload but serves commands (`sandbox::commands`). Every
//! request gets one answer: `SandboxCreated` or an `Error` for a create, `Spawned` then
//! `Exited` (or an `Error`) for an exec, `SandboxEnded` for a destroy and, at its end,
//! for the create too (when its creator is still connected).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::admission::check_passed;
use super::child::{forget_child, sandbox_event, Child};
use super::connection::Connection;
use super::server::Server;
use crate::protocol::validate;
use crate::protocol::{
    EndReason, ErrorKind, Event, ExecRequest, ExitStatus, FdRole, LimitSet, Limits, SandboxConfig,
    SandboxEndReason, SandboxInfo, SandboxOptions, SandboxVerdict, SpawnRequest, Stdio, Verdict,
};
use crate::sandbox::{CommandFailure, WorkloadUsage};

/// How many persistent sandboxes may live at once, in all and per uid
/// (`serve --max-sandboxes`, `--max-sandboxes-per-uid`).
///
/// ```
/// use hatchery::zygote::SandboxBounds;
/// let bounds = SandboxBounds::default();
/// assert_eq!((bounds.total, bounds.per_uid), (64, 16));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxBounds {
    /// In all.
    pub total: usize,
    /// Per uid of the creating client.
    pub per_uid: usize,
}

impl Default for SandboxBounds {
    fn default() -> SandboxBounds {
        SandboxBounds {
            total: 64,
            per_uid: 16,
        }
    }
}

/// What the daemon keeps of a persistent sandbox beside its [`Child`].
pub(super) struct Persistent {
    /// Its name, unique among the live ones.
    pub name: String,
    /// The uid that created it (`None`: the embedded zygote's own client); only it and
    /// root may run commands in it or destroy it.
    pub owner: Option<u32>,
    /// As it was created.
    pub options: SandboxOptions,
    /// When the last command ended (or it was created): idle from then while none runs.
    pub idle_since: Instant,
    /// Its commands that have not ended, by number.
    pub commands: HashMap<u64, Command>,
    /// The number of the last command sent.
    pub next_command: u64,
    /// Commands that were exec'd.
    pub commands_run: u64,
    /// `DestroySandbox` requests to answer at its end: (connection, request id).
    pub destroyers: Vec<(u64, u64)>,
    /// Why the daemon ends it, once it does.
    pub end: Option<SandboxEndReason>,
}

/// A command in a persistent sandbox, from its request to its end.
pub(super) struct Command {
    /// The connection that asked; `None` once it is gone.
    pub conn: Option<u64>,
    /// Its request id there.
    pub id: u64,
    /// The client's ends of its pipes (stdin, stdout, stderr), handed over with
    /// `Spawned`.
    pub pipes: [Option<OwnedFd>; 3],
    /// When the request arrived.
    pub started: Instant,
    /// Its `execve` succeeded (`Spawned` was sent).
    pub running: bool,
    /// When its wall time runs out.
    pub deadline: Option<Instant>,
    /// Its own limits.
    pub limits: Limits,
    /// Why the daemon killed it, if it did.
    pub kill_reason: Option<EndReason>,
    /// It asked for a terminal: its init sends the master with its start.
    pub pty: bool,
}

/// The refusal of a request about a sandbox: its kind and message.
type Refused = (ErrorKind, String);

impl Server {
    /// Handles a `CreateSandbox`: checks the options, the name and the bounds, then
    /// starts the sandbox as a spawn's (its answer is `SandboxCreated` once it is set
    /// up).
    pub(super) fn create_sandbox(
        &mut self,
        key: u64,
        id: u64,
        config: SandboxConfig,
        options: SandboxOptions,
        fds: Vec<OwnedFd>,
    ) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let owner = conn.peer.map(|peer| peer.uid);
        let checked = self.check_create(owner, &options, &fds);
        let name = match checked {
            Ok(name) => name,
            Err((kind, message)) => {
                tracing::info!(client_uid = owner, id, %message, "refused a sandbox");
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.send_error(Some(id), kind, message);
                }
                return;
            }
        };
        let mut config = config;
        // Its lifetime is its wall-time limit, which the policy's ceiling bounds.
        config.limits.wall_time_ms = match (config.limits.wall_time_ms, options.lifetime_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        config.kill_on_disconnect = !options.survive_creator;
        // Never exec'd: the init of a persistent sandbox runs no workload. A program
        // name all the same, so that the request passes the checks of a spawn's.
        let request = SpawnRequest::new("hatchery-sandbox")
            .stdin(Stdio::Null)
            .stdout(Stdio::Null)
            .stderr(Stdio::Null)
            .sandbox(config);
        let persistent = Persistent {
            name,
            owner,
            options,
            idle_since: Instant::now(),
            commands: HashMap::new(),
            next_command: 0,
            commands_run: 0,
            destroyers: Vec::new(),
            end: None,
        };
        self.start_sandbox(key, id, request, fds, Some(persistent));
    }

    /// The checks of a `CreateSandbox` before anything is made: its name (or one the
    /// daemon picks), its options, and the bounds in all and for `owner`.
    fn check_create(
        &mut self,
        owner: Option<u32>,
        options: &SandboxOptions,
        fds: &[OwnedFd],
    ) -> Result<String, Refused> {
        if !fds.is_empty() {
            return Err((
                ErrorKind::InvalidRequest,
                format!("a sandbox takes no fds, {} came with it", fds.len()),
            ));
        }
        options
            .check()
            .map_err(|message| (ErrorKind::InvalidRequest, message))?;
        let live: Vec<&Persistent> = self
            .children
            .values()
            .filter_map(|child| child.persistent.as_ref())
            .collect();
        let bounds = self.zygote.sandbox_bounds;
        if live.len() >= bounds.total {
            return Err((
                ErrorKind::Busy,
                format!(
                    "{} sandboxes are live, the most this daemon keeps (--max-sandboxes)",
                    live.len()
                ),
            ));
        }
        if let Some(uid) = owner {
            let own = live.iter().filter(|p| p.owner == Some(uid)).count();
            if own >= bounds.per_uid {
                return Err((
                    ErrorKind::Busy,
                    format!(
                        "uid {uid} has {own} sandboxes, the most this daemon keeps per uid \
                         (--max-sandboxes-per-uid)"
                    ),
                ));
            }
        }
        match &options.name {
            Some(name) if self.sandboxes.contains_key(name) => Err((
                ErrorKind::InvalidRequest,
                format!("a sandbox named {name:?} exists"),
            )),
            Some(name) => Ok(name.clone()),
            None => loop {
                self.next_sandbox_name += 1;
                let name = format!("sandbox-{}", self.next_sandbox_name);
                if !self.sandboxes.contains_key(&name) {
                    break Ok(name);
                }
            },
        }
    }

    /// The live sandbox `name`, if the connection `key` may use it: its creator's uid
    /// or root (and anyone on the embedded zygote, which has one client).
    fn sandbox_for(&mut self, key: u64, name: &str) -> Result<i32, Refused> {
        let unknown = || {
            (
                ErrorKind::UnknownSandbox { name: name.into() },
                format!("no live sandbox is named {name:?}"),
            )
        };
        let pid = *self.sandboxes.get(name).ok_or_else(unknown)?;
        let persistent = self
            .children
            .get(&pid)
            .and_then(|child| child.persistent.as_ref())
            .ok_or_else(unknown)?;
        let uid = self
            .conns
            .get(&key)
            .and_then(|conn| conn.peer)
            .map(|p| p.uid);
        let allowed = match (uid, persistent.owner) {
            (None, _) | (_, None) | (Some(0), _) => true,
            (Some(uid), Some(owner)) => uid == owner,
        };
        if !allowed {
            return Err((
                ErrorKind::PermissionDenied,
                format!("sandbox {name:?} belongs to another uid"),
            ));
        }
        if persistent.end.is_some() {
            return Err((
                ErrorKind::UnknownSandbox { name: name.into() },
                format!("sandbox {name:?} is ending"),
            ));
        }
        Ok(pid)
    }

    /// Handles an `Exec`: checks the request, makes the command's pipes and sends it to
    /// the sandbox's init, which forks it.
    pub(super) fn exec_in_sandbox(
        &mut self,
        key: u64,
        id: u64,
        name: String,
        request: ExecRequest,
        fds: Vec<OwnedFd>,
    ) {
        let started = Instant::now();
        let sent = self.send_command(key, id, &name, &request, fds, started);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        match sent {
            Ok((pid, number)) => {
                conn.commands.insert(id, (pid, number));
            }
            Err((kind, message)) => {
                tracing::info!(
                    client_uid = conn.peer.map(|p| p.uid),
                    id,
                    sandbox = %name.escape_debug(),
                    %message,
                    "refused a command"
                );
                conn.send_error(Some(id), kind, message);
            }
        }
    }

    fn send_command(
        &mut self,
        key: u64,
        id: u64,
        name: &str,
        request: &ExecRequest,
        fds: Vec<OwnedFd>,
        started: Instant,
    ) -> Result<(i32, u64), Refused> {
        // The caller found the connection; `sandbox_for` the sandbox and its state.
        let gone = || {
            (
                ErrorKind::Internal { error: None },
                "the connection or the sandbox is gone".to_string(),
            )
        };
        let conn = self.conns.get(&key).ok_or_else(gone)?;
        if conn.children.contains_key(&id) || conn.commands.contains_key(&id) {
            return Err((
                ErrorKind::InvalidRequest,
                format!("id {id} is already in use"),
            ));
        }
        if self.shutting_down {
            return Err((
                ErrorKind::ShuttingDown,
                "the daemon is shutting down".into(),
            ));
        }
        let invalid = |message: String| (ErrorKind::InvalidRequest, message);
        validate::validate(&request.as_spawn_request()).map_err(|e| invalid(e.to_string()))?;
        if request.wall_time_ms == Some(0) || request.cpu_time_ms == Some(0) {
            return Err(invalid("a command's limits must be at least 1 ms".into()));
        }
        // A terminal replaces the three streams: no fd may come, /dev/null is sent.
        const NO_STREAMS: [&Stdio; 3] = [&Stdio::Null, &Stdio::Null, &Stdio::Null];
        let streams = match request.pty {
            Some(size) if size.rows == 0 || size.cols == 0 => {
                return Err(invalid(
                    "a terminal has at least one row and one column".into(),
                ))
            }
            Some(_) => NO_STREAMS,
            None => request.stdio(),
        };
        check_passed(streams, &fds).map_err(|r| (r.kind, r.message))?;
        let pid = self.sandbox_for(key, name)?;
        let child = self.children.get_mut(&pid).ok_or_else(gone)?;
        if child.setting_up() {
            return Err((
                ErrorKind::Busy,
                format!("sandbox {name:?} is still being set up"),
            ));
        }
        let (stdio, pipes) = self
            .zygote
            .sandboxer
            .stdio(streams, fds)
            .map_err(|e| (ErrorKind::Internal { error: None }, crate::error_chain(&e)))?;
        let [stdin, stdout, stderr] = &stdio;
        let persistent = child.persistent.as_mut().ok_or_else(gone)?;
        persistent.next_command += 1;
        let number = persistent.next_command;
        child
            .channel
            .exec(
                number,
                request,
                &[stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
            )
            .map_err(|e| {
                (
                    ErrorKind::Internal { error: None },
                    format!("sandbox {name:?} cannot take a command: {e}"),
                )
            })?;
        let [stdin, stdout, stderr, _] = pipes;
        persistent.commands.insert(
            number,
            Command {
                conn: Some(key),
                id,
                pipes: [stdin, stdout, stderr],
                started,
                running: false,
                deadline: request
                    .wall_time_ms
                    .map(|ms| started + Duration::from_millis(ms)),
                limits: request.limits(),
                kill_reason: None,
                pty: request.pty.is_some(),
            },
        );
        Ok((pid, number))
    }

    /// Handles a `DestroySandbox`: kills the sandbox; the answer, `SandboxEnded`, follows
    /// its reap.
    pub(super) fn destroy_sandbox(&mut self, key: u64, id: u64, name: String) {
        let pid = match self.sandbox_for(key, &name) {
            Ok(pid) => pid,
            Err((kind, message)) => {
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.send_error(Some(id), kind, message);
                }
                return;
            }
        };
        if let Some(child) = self.children.get_mut(&pid) {
            if let Some(persistent) = child.persistent.as_mut() {
                persistent.end.get_or_insert(SandboxEndReason::Destroyed);
                persistent.destroyers.push((key, id));
            }
            child.kill(EndReason::KilledByClient);
        }
    }

    /// Handles a `ListSandboxes`: the live sandboxes the client may use (its uid's;
    /// root's and the embedded client's: all), by name.
    pub(super) fn list_sandboxes(&mut self, key: u64, id: u64) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let uid = conn.peer.map(|peer| peer.uid);
        let mut sandboxes: Vec<SandboxInfo> = self
            .children
            .values()
            .filter(|child| !child.setting_up())
            .filter_map(|child| Some((child, child.persistent.as_ref()?)))
            .filter(|(_, p)| p.end.is_none())
            .filter(|(_, p)| match (uid, p.owner) {
                (None, _) | (_, None) | (Some(0), _) => true,
                (Some(uid), Some(owner)) => uid == owner,
            })
            .map(|(child, p)| SandboxInfo {
                name: p.name.clone(),
                owner_uid: p.owner,
                age_ms: child.started.elapsed().as_millis() as u64,
                commands_running: p.commands.values().filter(|c| c.running).count() as u64,
                memory_peak_bytes: child.enforcement.usage().and_then(|u| u.memory_peak_bytes),
            })
            .collect();
        sandboxes.sort_by(|a, b| a.name.cmp(&b.name));
        conn.send(&Event::Sandboxes { id, sandboxes }, Vec::new());
    }

    /// Handles what a persistent sandbox's init reports of a command.
    pub(super) fn on_command_started(&mut self, pid: i32, number: u64, fds: Vec<OwnedFd>) {
        let Some(child) = self.children.get_mut(&pid) else {
            return;
        };
        // A command shares its sandbox's network.
        let network = child.network.as_ref().map(crate::network::Lease::facts);
        let Some(persistent) = child.persistent.as_mut() else {
            return;
        };
        let Some(command) = persistent.commands.get_mut(&number) else {
            return;
        };
        command.running = true;
        persistent.commands_run += 1;
        let received = fds;
        let Some(conn) = command.conn.and_then(|key| self.conns.get_mut(&key)) else {
            return;
        };
        let mut roles = Vec::with_capacity(4);
        let mut fds = Vec::with_capacity(4);
        for (role, pipe) in [FdRole::Stdin, FdRole::Stdout, FdRole::Stderr]
            .into_iter()
            .zip(&mut command.pipes)
        {
            if let Some(fd) = pipe.take() {
                roles.push(role);
                fds.push(fd);
            }
        }
        // A terminal's master, from the init, for a command that asked for one.
        if command.pty {
            if let Some(master) = received.into_iter().next() {
                roles.push(FdRole::Pty);
                fds.push(master);
            }
        }
        conn.send(
            &Event::Spawned {
                id: command.id,
                pid,
                fds: roles,
                network,
            },
            fds,
        );
    }

    /// A command that did not start: its client gets the error a spawn's would.
    pub(super) fn on_command_failed(&mut self, pid: i32, number: u64, failure: CommandFailure) {
        let Some(command) = self.take_command(pid, number) else {
            return;
        };
        let Some(conn) = command.conn.and_then(|key| self.conns.get_mut(&key)) else {
            return;
        };
        conn.commands.remove(&command.id);
        let (kind, message) = match failure {
            CommandFailure::Exec(errno) => {
                let errno = Errno::from_raw(errno);
                let kind = match errno {
                    Errno::ENOENT => ErrorKind::NotFound,
                    _ => ErrorKind::CannotExecute {
                        errno: errno as i32,
                    },
                };
                let what = match errno {
                    Errno::ENOENT => "not found",
                    _ => "cannot be executed",
                };
                (
                    kind,
                    format!("program {what}: execve: {errno:?} ({})", errno.desc()),
                )
            }
            CommandFailure::Setup(error) => {
                let message = format!("{error}: {}", error.error);
                (
                    ErrorKind::Setup {
                        step: error.step,
                        error: error.error,
                    },
                    message,
                )
            }
        };
        conn.send_error(Some(command.id), kind, message);
    }

    /// A command's first process ended: its client gets its verdict.
    pub(super) fn on_command_exited(
        &mut self,
        pid: i32,
        number: u64,
        status: ExitStatus,
        usage: WorkloadUsage,
    ) {
        let Some(command) = self.take_command(pid, number) else {
            return;
        };
        let verdict = command_verdict(&command, status, usage, None);
        if let Some(conn) = command.conn.and_then(|key| self.conns.get_mut(&key)) {
            conn.commands.remove(&command.id);
            conn.send(
                &Event::Exited {
                    id: command.id,
                    verdict,
                },
                Vec::new(),
            );
        }
    }

    /// Removes a command from its sandbox, which is idle from now if none is left.
    fn take_command(&mut self, pid: i32, number: u64) -> Option<Command> {
        let persistent = self.children.get_mut(&pid)?.persistent.as_mut()?;
        let command = persistent.commands.remove(&number)?;
        if persistent.commands.is_empty() {
            persistent.idle_since = Instant::now();
        }
        Some(command)
    }

    /// Kills the commands whose wall time ran out, and ends the sandboxes idle for
    /// their idle timeout.
    pub(super) fn enforce_sandboxes(&mut self) {
        let now = Instant::now();
        for child in self.children.values_mut() {
            let Some(persistent) = child.persistent.as_mut() else {
                continue;
            };
            for (&number, command) in &mut persistent.commands {
                if command.kill_reason.is_none() && command.deadline.is_some_and(|at| now >= at) {
                    command.kill_reason = Some(EndReason::WallTimeout);
                    // Gone already if this fails: its end is reported next.
                    let _ = child.channel.signal_command(number, libc::SIGKILL);
                }
            }
            let idle = persistent.commands.is_empty()
                && persistent
                    .options
                    .idle_timeout_ms
                    .is_some_and(|ms| now >= persistent.idle_since + Duration::from_millis(ms));
            if idle && persistent.end.is_none() && child.kill_reason.is_none() {
                persistent.end = Some(SandboxEndReason::IdleTimeout);
                sandbox_event!(
                    tracing::Level::DEBUG,
                    &child.origin,
                    "sandbox idle for its idle timeout; ending it"
                );
                child.kill(EndReason::KilledByClient);
            }
        }
    }

    /// How long until a command's wall time or a sandbox's idle timeout runs out.
    pub(super) fn next_sandbox_check(&self, now: Instant) -> Option<Duration> {
        self.children
            .values()
            .filter(|child| child.kill_reason.is_none())
            .filter_map(|child| child.persistent.as_ref())
            .flat_map(|persistent| {
                let idle = match persistent.commands.is_empty() {
                    true => persistent
                        .options
                        .idle_timeout_ms
                        .map(|ms| persistent.idle_since + Duration::from_millis(ms)),
                    false => None,
                };
                let deadlines = persistent
                    .commands
                    .values()
                    .filter(|command| command.kill_reason.is_none())
                    .filter_map(|command| command.deadline);
                idle.into_iter().chain(deadlines).collect::<Vec<_>>()
            })
            .map(|at| at.saturating_duration_since(now))
            .min()
    }

    /// A connection is gone: its commands are killed (their sandboxes live on), and the
    /// sandboxes it created that are not to survive it are ended.
    pub(super) fn drop_commands_of(&mut self, conn: &Connection) {
        for (&pid, &number) in conn.commands.values().map(|(pid, number)| (pid, number)) {
            let Some(child) = self.children.get_mut(&pid) else {
                continue;
            };
            if let Some(command) = child
                .persistent
                .as_mut()
                .and_then(|p| p.commands.get_mut(&number))
            {
                command.conn = None;
                command.pipes = Default::default();
                command.kill_reason.get_or_insert(EndReason::KilledByClient);
                let _ = child.channel.signal_command(number, libc::SIGKILL);
            }
        }
    }

    /// A persistent sandbox has been reaped: its verdict to its creator and destroyers,
    /// an end to each of its commands, its name freed. `rusage` is its init's (every
    /// process it reaped).
    pub(super) fn sandbox_reaped(
        &mut self,
        pid: i32,
        child: &mut Child,
        mut persistent: Persistent,
        usage: WorkloadUsage,
    ) {
        if self.sandboxes.get(&persistent.name) == Some(&pid) {
            self.sandboxes.remove(&persistent.name);
        }
        let verdict = sandbox_verdict(child, &persistent, usage);
        sandbox_event!(
            tracing::Level::DEBUG,
            &child.origin,
            pid,
            reason = %verdict.reason.name(),
            commands_run = verdict.commands_run,
            memory_peak_bytes = verdict.memory_peak_bytes,
            "sandbox ended"
        );
        let command_reason = match verdict.reason {
            SandboxEndReason::Lifetime => EndReason::WallTimeout,
            SandboxEndReason::OomKilled => EndReason::OomKilled,
            SandboxEndReason::CpuTimeout => EndReason::CpuTimeout,
            SandboxEndReason::DaemonShutdown => EndReason::DaemonShutdown,
            _ => EndReason::KilledByClient,
        };
        for (_, command) in persistent.commands.drain() {
            let Some(conn) = command.conn.and_then(|key| self.conns.get_mut(&key)) else {
                continue;
            };
            conn.commands.remove(&command.id);
            if command.running {
                let status = ExitStatus::Signaled(libc::SIGKILL);
                let verdict = command_verdict(
                    &command,
                    status,
                    WorkloadUsage::default(),
                    Some(command_reason),
                );
                conn.send(
                    &Event::Exited {
                        id: command.id,
                        verdict,
                    },
                    Vec::new(),
                );
            } else {
                let message = format!(
                    "sandbox {:?} ended ({}) before the command started",
                    persistent.name,
                    verdict.reason.name()
                );
                conn.send_error(
                    Some(command.id),
                    ErrorKind::Internal { error: None },
                    message,
                );
            }
        }
        for (key, id) in persistent.destroyers.drain(..) {
            if let Some(conn) = self.conns.get_mut(&key) {
                let event = Event::SandboxEnded {
                    id,
                    verdict: verdict.clone(),
                };
                conn.send(&event, Vec::new());
            }
        }
        // The creator hears of the end of a sandbox it was told was created (one that
        // failed its setup was answered with that error).
        if !child.setting_up() && child.phase != super::child::Phase::Failed {
            if let Some(conn) = child.conn.and_then(|key| self.conns.get_mut(&key)) {
                forget_child(conn, child.id, pid);
                conn.send(
                    &Event::SandboxEnded {
                        id: child.id,
                        verdict,
                    },
                    Vec::new(),
                );
            }
        }
    }
}

/// A command's verdict: `reason` when its sandbox's end ended it.
fn command_verdict(
    command: &Command,
    status: ExitStatus,
    usage: WorkloadUsage,
    reason: Option<EndReason>,
) -> Verdict {
    let cpu_us = usage.user_cpu_us + usage.system_cpu_us;
    let over_cpu = command.limits.cpu_time_ms.is_some_and(|ms| {
        status == ExitStatus::Signaled(libc::SIGXCPU)
            || (status == ExitStatus::Signaled(libc::SIGKILL) && cpu_us >= ms * 1000)
    });
    let reason = match (reason.or(command.kill_reason), status) {
        (Some(reason), _) => reason,
        (None, _) if over_cpu => EndReason::CpuTimeout,
        (None, ExitStatus::Exited(_)) => EndReason::Exited,
        (None, ExitStatus::Signaled(_)) => EndReason::Signaled,
    };
    Verdict {
        status,
        reason,
        wall_time_us: command.started.elapsed().as_micros() as u64,
        user_cpu_us: usage.user_cpu_us,
        system_cpu_us: usage.system_cpu_us,
        max_rss_kib: usage.max_rss_kib,
        memory_peak_bytes: None,
        tasks_started: None,
        limits: command.limits,
        skipped_limits: Vec::new(),
        limits_reached: LimitSet::EMPTY,
    }
}

/// A persistent sandbox's verdict, from its cgroup where it has one.
fn sandbox_verdict(
    child: &mut Child,
    persistent: &Persistent,
    usage: WorkloadUsage,
) -> SandboxVerdict {
    let cgroup = child.enforcement.usage();
    let oom_killed = child.enforcement.limits.memory_bytes.is_some()
        && cgroup.as_ref().is_some_and(|u| u.oom_kills > 0);
    let reason = match (persistent.end, child.kill_reason) {
        (Some(reason), _) => reason,
        (None, Some(EndReason::WallTimeout)) => SandboxEndReason::Lifetime,
        (None, Some(EndReason::CpuTimeout)) => SandboxEndReason::CpuTimeout,
        (None, Some(EndReason::OomKilled)) => SandboxEndReason::OomKilled,
        (None, Some(EndReason::DaemonShutdown)) => SandboxEndReason::DaemonShutdown,
        (None, Some(_)) => SandboxEndReason::Destroyed,
        (None, None) => SandboxEndReason::Died,
    };
    // Under its memory limit an OOM kill ends the sandbox (cgroup v2 kills the group; on
    // v1 the watchdog does within 10 ms): a destroy that came first, from a client that
    // saw its command die, does not hide why.
    let reason = match reason {
        SandboxEndReason::Destroyed | SandboxEndReason::Died if oom_killed => {
            SandboxEndReason::OomKilled
        }
        reason => reason,
    };
    SandboxVerdict {
        name: persistent.name.clone(),
        reason,
        wall_time_us: child.started.elapsed().as_micros() as u64,
        user_cpu_us: cgroup
            .and_then(|u| u.cpu_user_ns)
            .map_or(usage.user_cpu_us, |ns| ns / 1000),
        system_cpu_us: cgroup
            .and_then(|u| u.cpu_system_ns)
            .map_or(usage.system_cpu_us, |ns| ns / 1000),
        memory_peak_bytes: cgroup.and_then(|u| u.memory_peak_bytes),
        commands_run: persistent.commands_run,
        limits: child.enforcement.limits,
    }
}
