//! What a sandbox's init reports (its exec, a failed setup or exec, its workload's end)
//! and its reap, each turned into the one answer its client gets for that stage:
//! `Spawned`, an `Error`, or `Exited` with the verdict. Runs in the zygote's loop.

use std::os::fd::AsFd;
use std::time::Instant;

use nix::errno::Errno;

use super::child::{forget_child, log_end, sandbox_event, send_exited, verdict, Phase};
use super::diagnose;
use super::server::Server;
use crate::protocol::{ErrorKind, Event, ExitStatus, FdRole};
use crate::sandbox::{FromSandbox, Pending, WorkloadUsage};
use crate::sys;

impl Server {
    /// Handles what a sandbox's init has reported so far.
    pub(super) fn on_reports(&mut self, pid: i32) {
        loop {
            let Some(child) = self.children.get_mut(&pid) else {
                return;
            };
            let (report, fds) = match child.channel.try_report(&mut self.buf) {
                Ok(Pending::Report(report, fds)) => (report, fds),
                Ok(Pending::Nothing) => return,
                Ok(Pending::Closed) => {
                    child.channel_closed = true;
                    return;
                }
                Err(e) => {
                    sandbox_event!(
                        tracing::Level::WARN,
                        &child.origin,
                        pid,
                        error = %crate::error_chain(&e),
                        "unreadable report from a sandbox; killing it",
                    );
                    let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
                    child.enforcement.kill();
                    return;
                }
            };
            self.on_report(pid, report, fds);
        }
    }

    fn on_report(&mut self, pid: i32, report: FromSandbox, fds: Vec<std::os::fd::OwnedFd>) {
        let Some(child) = self.children.get_mut(&pid) else {
            return;
        };
        let conn = child.conn.and_then(|key| self.conns.get_mut(&key));
        match report {
            FromSandbox::Execed(setup) if child.setting_up() => {
                sandbox_event!(
                    tracing::Level::DEBUG,
                    &child.origin,
                    pid,
                    %setup,
                    "sandbox running; its setup, in µs",
                );
                child.phase = Phase::Running;
                self.last_exec = Some(Instant::now());
                self.stats.served(child.warm, child.age());
                let Some(conn) = conn else { return };
                if let Some(persistent) = &child.persistent {
                    let name = persistent.name.clone();
                    conn.send(
                        &Event::SandboxCreated {
                            id: child.id,
                            name,
                            pid,
                        },
                        Vec::new(),
                    );
                    return;
                }
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
                        network: child.network.as_ref().map(crate::network::Lease::facts),
                    },
                    fds,
                );
            }
            FromSandbox::ExecFailed(errno) if child.setting_up() => {
                child.phase = Phase::Failed;
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
                sandbox_event!(
                    tracing::Level::INFO,
                    &child.origin,
                    pid,
                    step = %"exec",
                    kind = %kind.name(),
                    errno = ?errno,
                    "spawn failed",
                );
                self.stats.failed(kind.name());
                let Some(conn) = conn else { return };
                // The id is free again at once, though the init is reaped later.
                forget_child(conn, child.id, pid);
                conn.send_error(
                    Some(child.id),
                    kind,
                    format!("program {what}: execve: {errno:?} ({})", errno.desc()),
                );
            }
            FromSandbox::SetupFailed(error) if child.setting_up() => {
                child.phase = Phase::Failed;
                let plain = format!("{error}: {}", error.error);
                let message = match error.error.sys_error() {
                    Some(sys) => diagnose::with_hint(plain.clone(), sys),
                    None => plain,
                };
                sandbox_event!(
                    tracing::Level::INFO,
                    &child.origin,
                    pid,
                    step = ?error.step.name(),
                    error = ?message,
                    "spawn failed",
                );
                self.stats.failed("setup");
                let Some(conn) = conn else { return };
                forget_child(conn, child.id, pid);
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
                if child.phase == Phase::Running {
                    let verdict = verdict(child, status, usage);
                    log_end(&child.origin, pid, &verdict);
                    self.stats.ended(verdict.reason);
                    let Some(conn) = conn else { return };
                    send_exited(conn, child.id, pid, verdict);
                }
            }
            FromSandbox::CommandStarted { command } => self.on_command_started(pid, command, fds),
            FromSandbox::CommandFailed { command, failure } => {
                self.on_command_failed(pid, command, failure)
            }
            FromSandbox::CommandExited {
                command,
                status,
                usage,
            } => self.on_command_exited(pid, command, status, usage),
            other => {
                sandbox_event!(
                    tracing::Level::WARN,
                    &child.origin,
                    pid,
                    ?other,
                    "out-of-order report from a sandbox"
                )
            }
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
            // Every process of a sandbox is gone with its init: its host ids are free.
            self.zygote.host_ids.reaped(reaped.pid);
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
            let persistent = child.persistent.take();
            let was_persistent = persistent.is_some();
            if let Some(persistent) = persistent {
                let usage = WorkloadUsage::from(&reaped.rusage);
                self.sandbox_reaped(reaped.pid, &mut child, persistent, usage);
            }
            // A sandbox whose init reported the workload's exit had its `Exited` sent
            // then; one whose init was killed first is judged by the init's own status and
            // usage (which counts the processes it reaped), for its client and the log
            // (making the verdict reads the cgroup).
            let unreported =
                child.phase == Phase::Running && child.workload.is_none() && !was_persistent;
            let verdict = unreported
                .then(|| verdict(&mut child, init_status, WorkloadUsage::from(&reaped.rusage)));
            if let Some(verdict) = &verdict {
                log_end(&child.origin, reaped.pid, verdict);
                self.stats.ended(verdict.reason);
            }
            if child.setting_up() {
                self.stats.failed("internal");
                sandbox_event!(
                    tracing::Level::INFO,
                    &child.origin,
                    pid = reaped.pid,
                    status = ?init_status,
                    "spawn failed: the sandbox ended during setup",
                );
            }
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
                send_exited(conn, child.id, reaped.pid, verdict);
            } else if child.setting_up() {
                forget_child(conn, child.id, reaped.pid);
                let message = format!("the sandbox ended during setup ({init_status:?})");
                conn.send_error(Some(child.id), ErrorKind::Internal { error: None }, message);
            }
        }
    }
}
