//! A sandbox as the daemon tracks it from its clone to its reap: the phase it is in, what
//! it holds (pidfd, channel, pipes, cgroup, network), and its verdict. Its reports move it
//! through its phases (see `reports`). Runs in the zygote's loop.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::connection::Connection;
use super::listener::Peer;
use super::sandboxes::Persistent;
use crate::limits::Enforcement;
use crate::network::Lease;
use crate::protocol::{Command, EndReason, Event, ExitStatus, Limit, LimitSet, Verdict};
use crate::sandbox::{Started, WorkloadUsage, ZygoteEnd};
use crate::sys;

/// Where a sandbox is in its life; each report moves it forward at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Cloned; its init is setting it up and its workload has not started.
    SettingUp,
    /// Its workload runs: `Spawned` has been sent (or its client is gone).
    Running,
    /// Its setup or exec failed, and its client has been told so.
    Failed,
}

/// Who asked for a sandbox and what it runs: the fields of every log line about it.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    /// The daemon-wide number of the spawn request (counted over all connections; the
    /// request id is per connection).
    pub(super) sandbox: u64,
    /// The request id on its connection.
    pub(super) id: u64,
    /// The client that asked (`None` for the embedded zygote's own client).
    pub(super) client: Option<Peer>,
    /// What it runs, printable (see [`program_label`]).
    pub(super) program: String,
}

/// The most characters of a program's name a log line carries.
const PROGRAM_LABEL_MAX: usize = 200;

/// A request's program (or `entry:NAME`) as a log field: control characters and quotes
/// escaped, so that a client's bytes cannot forge a log line, and at most
/// [`PROGRAM_LABEL_MAX`] characters.
pub(super) fn program_label(command: &Command) -> String {
    let text = match command {
        Command::Exec { program, .. } => program.to_string(),
        Command::Entry { name, .. } => format!("entry:{name}"),
    };
    let mut label: String = text.escape_debug().take(PROGRAM_LABEL_MAX).collect();
    if text.escape_debug().nth(PROGRAM_LABEL_MAX).is_some() {
        label.push('…');
    }
    label
}

/// Logs an event about a sandbox at `$level`, with its origin's fields (`sandbox`, `id`,
/// `client_uid`, `client_pid`, `program`) before the event's own.
macro_rules! sandbox_event {
    ($level:expr, $origin:expr, $($rest:tt)+) => {{
        let origin: &$crate::zygote::child::Origin = $origin;
        tracing::event!(
            $level,
            sandbox = origin.sandbox,
            id = origin.id,
            client_uid = origin.client.map(|peer| peer.uid),
            client_pid = origin.client.map(|peer| peer.pid),
            program = %origin.program,
            $($rest)+
        )
    }};
}
pub(super) use sandbox_event;

/// Logs how a sandbox ended, its verdict as fields: at INFO when the daemon ended it (a
/// limit, its own shutdown), at DEBUG when the workload ended by itself or its client
/// killed it.
pub(super) fn log_end(origin: &Origin, pid: i32, verdict: &Verdict) {
    let (exit_code, signal) = match verdict.status {
        ExitStatus::Exited(code) => (Some(code), None),
        ExitStatus::Signaled(signal) => (None, Some(signal)),
    };
    macro_rules! end {
        ($level:expr, $message:literal) => {
            sandbox_event!(
                $level,
                origin,
                pid,
                reason = %verdict.reason.name(),
                exit_code,
                signal,
                wall_time_ms = verdict.wall_time_us / 1000,
                cpu_ms = (verdict.user_cpu_us + verdict.system_cpu_us) / 1000,
                memory_peak_bytes = verdict.memory_peak_bytes,
                max_rss_kib = verdict.max_rss_kib,
                tasks_started = verdict.tasks_started,
                $message
            )
        };
    }
    match verdict.reason {
        EndReason::OomKilled
        | EndReason::WallTimeout
        | EndReason::CpuTimeout
        | EndReason::DaemonShutdown => end!(tracing::Level::INFO, "sandbox killed"),
        EndReason::Exited | EndReason::Signaled | EndReason::KilledByClient => {
            end!(tracing::Level::DEBUG, "sandbox ended")
        }
    }
}

/// A sandbox the daemon is responsible for until it is reaped.
pub(super) struct Child {
    /// The connection that spawned it; `None` once that client is gone.
    pub(super) conn: Option<u64>,
    /// Its request id on that connection.
    pub(super) id: u64,
    /// Who asked for it and what it runs, for the log.
    pub(super) origin: Origin,
    /// Its init's pid, as the daemon sees it.
    pid: i32,
    /// Whether the warm pool served it.
    pub(super) warm: bool,
    pub(super) pidfd: OwnedFd,
    pub(super) channel: ZygoteEnd,
    /// The client's pipe ends (stdio, then an entry's result), handed over with
    /// `Spawned`.
    pub(super) pipes: [Option<OwnedFd>; 4],
    pub(super) started: Instant,
    pub(super) phase: Phase,
    /// How its workload ended, as the init reported.
    pub(super) workload: Option<ExitStatus>,
    /// Processes and threads its pid namespace started, as the init reported.
    pub(super) tasks_started: Option<u64>,
    /// The init has closed its channel: nothing more to poll for.
    pub(super) channel_closed: bool,
    /// Its limits, cgroup and watchdog.
    pub(super) enforcement: Enforcement,
    /// Why the daemon killed it, if it did.
    pub(super) kill_reason: Option<EndReason>,
    /// Kill it when its client disconnects.
    pub(super) kill_on_disconnect: bool,
    /// Its veth network, if it has one.
    pub(super) network: Option<Lease>,
    /// A persistent sandbox's name, options and commands; `None` for a spawn's.
    pub(super) persistent: Option<Persistent>,
}

impl Child {
    /// A sandbox just started for request `id` of connection `conn`, in its setup.
    pub(super) fn new(
        conn: u64,
        origin: Origin,
        sandbox: Started,
        started: Instant,
        enforcement: Enforcement,
        kill_on_disconnect: bool,
        network: Option<Lease>,
    ) -> Child {
        Child {
            conn: Some(conn),
            id: origin.id,
            origin,
            pid: sandbox.pid,
            warm: false,
            pidfd: sandbox.pidfd,
            channel: sandbox.channel,
            pipes: sandbox.pipes,
            started,
            phase: Phase::SettingUp,
            workload: None,
            tasks_started: None,
            channel_closed: false,
            enforcement,
            kill_reason: None,
            kill_on_disconnect,
            network,
            persistent: None,
        }
    }

    /// Its init's pid, as the daemon sees it.
    pub(super) fn pid(&self) -> i32 {
        self.pid
    }

    /// How long ago its request arrived.
    pub(super) fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Whether its init is still setting it up (its workload not started yet).
    pub(super) fn setting_up(&self) -> bool {
        self.phase == Phase::SettingUp
    }

    /// Ends the whole sandbox, remembering why (the first reason wins).
    pub(super) fn kill(&mut self, reason: EndReason) {
        self.kill_reason.get_or_insert(reason);
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        self.enforcement.kill();
    }
}

/// The verdict of a sandbox whose workload ended with `status`, having used `usage`.
pub(super) fn verdict(child: &mut Child, status: ExitStatus, usage: WorkloadUsage) -> Verdict {
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
        limits_reached: match cgroup {
            Some(usage) if usage.pids_refused > 0 => [Limit::Pids].into_iter().collect(),
            _ => LimitSet::EMPTY,
        },
    }
}

/// Sends a child's `Exited`, which frees its id.
pub(super) fn send_exited(conn: &mut Connection, id: u64, pid: i32, verdict: Verdict) {
    forget_child(conn, id, pid);
    conn.send(&Event::Exited { id, verdict }, Vec::new());
}

/// Frees a request id, unless a newer child has taken it already.
pub(super) fn forget_child(conn: &mut Connection, id: u64, pid: i32) {
    if conn.children.get(&id) == Some(&pid) {
        conn.children.remove(&id);
    }
}
