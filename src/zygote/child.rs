//! A sandbox as the daemon tracks it from its clone to its reap: the phase it is in, what
//! it holds (pidfd, channel, pipes, cgroup, network), and its verdict. Its reports move it
//! through its phases (see `reports`). Runs in the zygote's loop.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::connection::Connection;
use crate::limits::Enforcement;
use crate::network::Lease;
use crate::protocol::{EndReason, Event, ExitStatus, Limit, LimitSet, Verdict};
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

/// A sandbox the daemon is responsible for until it is reaped.
pub(super) struct Child {
    /// The connection that spawned it; `None` once that client is gone.
    pub(super) conn: Option<u64>,
    /// Its request id on that connection.
    pub(super) id: u64,
    pub(super) pidfd: OwnedFd,
    pub(super) channel: ZygoteEnd,
    /// The client's pipe ends (stdio, then an entry's result), handed over with
    /// `Spawned`.
    pub(super) pipes: [Option<OwnedFd>; 4],
    started: Instant,
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
}

impl Child {
    /// A sandbox just started for request `id` of connection `conn`, in its setup.
    pub(super) fn new(
        conn: u64,
        id: u64,
        sandbox: Started,
        started: Instant,
        enforcement: Enforcement,
        kill_on_disconnect: bool,
        network: Option<Lease>,
    ) -> Child {
        Child {
            conn: Some(conn),
            id,
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
        }
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
