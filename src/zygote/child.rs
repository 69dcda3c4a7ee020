//! A sandbox's life as the daemon sees it, from its clone to its reap: the phase it is
//! in, the reports of its init (exec, failed setup, the workload's exit), the verdict,
//! and the one answer its client gets for each stage (`Spawned`, an `Error`, `Exited`).
//! Runs in the zygote's loop.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;

use super::connection::Connection;
use super::diagnose;
use super::limits::Enforcement;
use super::server::Server;
use crate::network::Lease;
use crate::protocol::{EndReason, ErrorKind, Event, ExitStatus, FdRole, Verdict};
use crate::sandbox::{FromSandbox, Pending, Started, WorkloadUsage, ZygoteEnd};
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
    workload: Option<ExitStatus>,
    /// Processes and threads its pid namespace started, as the init reported.
    tasks_started: Option<u64>,
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

impl Server {
    /// Handles what a sandbox's init has reported so far.
    pub(super) fn on_reports(&mut self, pid: i32) {
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
            FromSandbox::Execed(setup) if child.setting_up() => {
                tracing::debug!(pid, %setup, "sandbox running; its setup, in µs");
                child.phase = Phase::Running;
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
            FromSandbox::ExecFailed(errno) if child.setting_up() => {
                child.phase = Phase::Failed;
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
            FromSandbox::SetupFailed(error) if child.setting_up() => {
                child.phase = Phase::Failed;
                let Some(conn) = conn else { return };
                forget_child(conn, child.id, pid);
                let plain = format!("{error}: {}", error.error);
                let message = diagnose::with_hint(plain.clone(), &error.error);
                if message != plain {
                    tracing::warn!(%message, "a sandbox could not be set up");
                }
                conn.send_error(
                    Some(child.id),
                    ErrorKind::Setup {
                        step: error.step.name().to_string(),
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
                if child.phase == Phase::Running {
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
    pub(super) fn reap(&mut self) {
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
            let unreported =
                child.phase == Phase::Running && child.workload.is_none() && child.conn.is_some();
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
            } else if child.setting_up() {
                forget_child(conn, child.id, reaped.pid);
                let message = format!("the sandbox ended during setup ({init_status:?})");
                conn.send_error(Some(child.id), ErrorKind::Internal { error: None }, message);
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
