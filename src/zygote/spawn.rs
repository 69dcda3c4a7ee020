//! Starting a sandbox for an admitted request: from the warm pool when an idle sandbox
//! of the request's shape is there, else fresh (a subnet reserved first for a veth
//! network, then the clone), and then the veth network of a fresh one. Runs in the
//! zygote's loop.
//!
//! Whatever a failed start had taken (a subnet, a cgroup) is given back here, and the
//! client gets exactly one answer: `Spawned` later from the child's report, or an
//! `Error` now.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::admission::{Admission, Gate};
use super::child::{forget_child, program_label, sandbox_event, Child, Origin, Phase};
use super::diagnose;
use super::sandboxes::Persistent;
use super::server::Server;
use super::Zygote;
use crate::limits::{Enforcement, Refusal};
use crate::network::{Lease, Subnet};
use crate::protocol::{EndReason, ErrorKind, NetworkConfig, SetupStep, SpawnRequest, VethConfig};
use crate::sandbox::warm::NotTaken;
use crate::sandbox::{StartError, Started, Workload};

/// A sandbox started for a request.
struct Launched {
    sandbox: Started,
    /// The veth network of a warm sandbox, up already.
    lease: Option<Lease>,
    /// The subnet reserved for a fresh sandbox's veth network, still to be built.
    subnet: Option<Subnet>,
    /// For a poolable request of a daemon that keeps a pool: whether an idle sandbox
    /// served it.
    pooled: Option<bool>,
}

/// Why no sandbox was started.
enum NotLaunched {
    /// Something the client can act on (every subnet in use).
    Refused(Refusal),
    /// The clone or a warm sandbox's handover failed.
    Failed(StartError),
}

/// What the warm pool did with a request.
enum Warm {
    /// An idle sandbox took it, with its veth network's lease if its shape has one.
    Served(Started, Option<Lease>),
    /// An idle sandbox took it and then failed.
    Failed(StartError),
    /// No idle sandbox of its shape: the passed fds come back for a fresh one.
    NoneIdle(Vec<OwnedFd>),
}

impl Server {
    /// Handles a `Spawn`: admits the request, starts its sandbox and tracks it; the
    /// client hears of it when the sandbox reports (or now, if it is refused).
    pub(super) fn spawn(&mut self, key: u64, id: u64, request: SpawnRequest, fds: Vec<OwnedFd>) {
        self.start_sandbox(key, id, request, fds, None);
    }

    /// Admits, starts and tracks a sandbox: one for a spawn's workload, or a persistent
    /// one (`persistent`: its name and options), whose init runs no workload but the
    /// commands it is sent later.
    pub(super) fn start_sandbox(
        &mut self,
        key: u64,
        id: u64,
        mut request: SpawnRequest,
        fds: Vec<OwnedFd>,
        persistent: Option<Persistent>,
    ) {
        let started = Instant::now();
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        self.next_sandbox += 1;
        let origin = Origin {
            sandbox: self.next_sandbox,
            id,
            client: conn.peer,
            program: match &persistent {
                Some(sandbox) => format!("sandbox:{}", sandbox.name),
                None => program_label(&request.command),
            },
        };
        if conn.children.contains_key(&id) || conn.commands.contains_key(&id) {
            let refusal = Refusal {
                kind: ErrorKind::InvalidRequest,
                message: format!("id {id} is already in use"),
            };
            log_refusal(&origin, &refusal);
            self.stats.failed(refusal.kind.name());
            conn.send_error(Some(id), refusal.kind, refusal.message);
            return;
        }
        let mut gate = Gate {
            live: self.children.len(),
            max_children: self.zygote.max_children,
            shutting_down: self.shutting_down,
            entries: &self.zygote.entries,
            veth_available: self.zygote.network.is_some(),
            enforcer: &mut self.zygote.enforcer,
            allowed_opt_outs: &self.zygote.allowed_opt_outs,
            allow_dev_binds: self.zygote.allow_dev_binds,
            seccomp: self.zygote.sandboxer.seccomp_policies(),
        };
        let Admission {
            workload,
            enforcement,
            seccomp_policy,
        } = match gate.admit(&request, &fds, started) {
            Ok(admission) => admission,
            Err(refusal) => {
                log_refusal(&origin, &refusal);
                self.stats.failed(refusal.kind.name());
                conn.send_error(Some(id), refusal.kind, refusal.message);
                return;
            }
        };
        // A persistent sandbox runs no workload of its own, and never one from the pool.
        let workload = match persistent {
            Some(_) => Workload::Sandbox,
            None => workload,
        };
        if !enforcement.skipped.is_empty() {
            let skipped: Vec<&str> = enforcement
                .skipped
                .iter()
                .map(|limit| limit.name())
                .collect();
            sandbox_event!(
                tracing::Level::WARN,
                &origin,
                skipped = %skipped.join(","),
                "running without limits this host cannot enforce",
            );
        }
        // The init applies the limits in force (rlimits, the /tmp size) itself.
        request.sandbox.limits = enforcement.sandbox_limits();
        request.sandbox.seccomp_policy = seccomp_policy;
        if let Some(contents) = self.zygote.network.as_ref().and_then(|n| n.resolv_conf()) {
            crate::network::add_resolv_conf(&mut request.sandbox, contents);
        }
        let launched = self.zygote.launch(&request, fds, &enforcement, workload);
        let Launched {
            sandbox,
            lease,
            subnet,
            pooled,
        } = match launched {
            Ok(launched) => launched,
            Err(failure) => {
                if let Some(cgroup) = enforcement.cgroup {
                    self.zygote.enforcer.retire(cgroup);
                }
                let (kind, message) = match failure {
                    NotLaunched::Refused(refusal) => {
                        log_refusal(&origin, &refusal);
                        (refusal.kind, refusal.message)
                    }
                    NotLaunched::Failed(e) => {
                        let error = match &e {
                            StartError::Sys(error) => Some(error.clone()),
                            StartError::NotSingleThreaded(_)
                            | StartError::Cgroup(_)
                            | StartError::MissingPassedFd => None,
                        };
                        let mut message = crate::error_chain(&e);
                        if let Some(error) = &error {
                            message = diagnose::with_hint(message, error);
                        }
                        sandbox_event!(
                            tracing::Level::ERROR,
                            &origin,
                            ?message,
                            "cannot start a sandbox"
                        );
                        (ErrorKind::Internal { error }, message)
                    }
                };
                self.stats.failed(kind.name());
                conn.send_error(Some(id), kind, message);
                return;
            }
        };
        sandbox_event!(
            tracing::Level::DEBUG,
            &origin,
            pid = sandbox.pid,
            "sandbox cloned"
        );
        let pid = sandbox.pid;
        conn.children.insert(id, pid);
        let kill_on_disconnect = request.sandbox.kill_on_disconnect;
        if let Some(hit) = pooled {
            self.stats.pool(hit);
        }
        let mut child = Child::new(
            key,
            origin,
            sandbox,
            started,
            enforcement,
            kill_on_disconnect,
            lease,
        );
        child.warm = pooled == Some(true);
        if let Some(sandbox) = persistent {
            self.sandboxes.insert(sandbox.name.clone(), pid);
            child.persistent = Some(sandbox);
        }
        self.children.insert(pid, child);
        if let (Some(subnet), NetworkConfig::Veth(veth)) = (subnet, &request.sandbox.network) {
            self.attach_network(pid, subnet, veth);
        }
    }

    /// Builds a just-cloned sandbox's veth network and releases its init to run the
    /// workload; on failure, kills it and tells its client why.
    fn attach_network(&mut self, pid: i32, subnet: Subnet, veth: &VethConfig) {
        let (Some(network), Some(child)) = (&mut self.zygote.network, self.children.get_mut(&pid))
        else {
            return;
        };
        let began = Instant::now();
        match network.attach(subnet, pid, child.pidfd.as_fd(), veth) {
            Ok(lease) => {
                let took_us = began.elapsed().as_micros() as u64;
                sandbox_event!(
                    tracing::Level::DEBUG,
                    &child.origin,
                    pid,
                    interface = lease.host_name(),
                    subnet = ?lease.subnet(),
                    took_us,
                    "veth up",
                );
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
                // Its workload waits for the network, so it cannot be running: it is
                // still setting up, or its failure has been reported already.
                if !child.setting_up() {
                    return;
                }
                child.phase = Phase::Failed;
                sandbox_event!(
                    tracing::Level::WARN,
                    &child.origin,
                    pid,
                    step = %"network",
                    error = ?crate::error_chain(&error),
                    "spawn failed",
                );
                let step = SetupStep::Network;
                self.stats.failed("setup");
                let Some(conn) = child.conn.and_then(|key| self.conns.get_mut(&key)) else {
                    return;
                };
                forget_child(conn, child.id, pid);
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
}

impl Zygote {
    /// Starts the sandbox of an admitted request: warm if it may be pooled and an idle
    /// sandbox of its shape is there, else fresh. A fresh veth sandbox gets its subnet
    /// here, before anything is cloned, so that a used-up pool is a plain refusal; the
    /// subnet is given back if the clone fails.
    fn launch(
        &mut self,
        request: &SpawnRequest,
        fds: Vec<OwnedFd>,
        enforcement: &Enforcement,
        workload: Workload,
    ) -> Result<Launched, NotLaunched> {
        // A warm-pool sandbox runs programs only, outside any cgroup; one of a veth shape
        // comes with its network up.
        let poolable = enforcement.cgroup.is_none() && matches!(workload, Workload::Exec);
        let fds = match poolable {
            true => match self.start_warm(request, fds) {
                Warm::Served(sandbox, lease) => {
                    return Ok(Launched {
                        sandbox,
                        lease,
                        subnet: None,
                        pooled: Some(true),
                    })
                }
                Warm::Failed(e) => return Err(NotLaunched::Failed(e)),
                Warm::NoneIdle(fds) => fds,
            },
            false => fds,
        };
        let subnet = match (&request.sandbox.network, &mut self.network) {
            (NetworkConfig::Veth(_), Some(network)) => {
                Some(network.reserve().ok_or_else(|| {
                    NotLaunched::Refused(Refusal {
                        kind: ErrorKind::AddressPoolExhausted,
                        message: "every subnet of the veth pool is in use".into(),
                    })
                })?)
            }
            _ => None,
        };
        let Some(host) = self.host_ids.take() else {
            if let (Some(subnet), Some(network)) = (subnet, &mut self.network) {
                network.unreserve(subnet);
            }
            return Err(NotLaunched::Refused(Refusal {
                kind: ErrorKind::Busy,
                message: "every host uid of this daemon is held by a live sandbox".into(),
            }));
        };
        let cgroup = enforcement.cgroup.as_ref();
        let spares = self.spare_namespaces.as_mut();
        match self
            .sandboxer
            .start(request, fds, cgroup, workload, spares, host)
        {
            Ok(sandbox) => {
                self.host_ids.bind(sandbox.pid, host);
                Ok(Launched {
                    sandbox,
                    lease: None,
                    subnet,
                    pooled: (poolable && self.pool.size() > 0).then_some(false),
                })
            }
            Err(e) => {
                self.host_ids.give_back(host);
                if let (Some(subnet), Some(network)) = (subnet, &mut self.network) {
                    network.unreserve(subnet);
                }
                Err(NotLaunched::Failed(e))
            }
        }
    }

    /// Hands `request` to an idle sandbox of its shape, if the pool has one.
    fn start_warm(&mut self, request: &SpawnRequest, mut fds: Vec<OwnedFd>) -> Warm {
        while let Some((idle, lease)) = self.pool.take(&request.sandbox) {
            match self.sandboxer.hand_over(idle, request, fds) {
                Ok(sandbox) => {
                    tracing::debug!(pid = sandbox.pid, "served from the warm pool");
                    return Warm::Served(sandbox, lease);
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
                        NotTaken::Failed(e) => return Warm::Failed(e),
                    }
                }
            }
        }
        Warm::NoneIdle(fds)
    }
}

/// Logs a spawn request the daemon refused, at INFO: an operator's view of who asked for
/// what and why not.
fn log_refusal(origin: &Origin, refusal: &Refusal) {
    sandbox_event!(
        tracing::Level::INFO,
        origin,
        kind = %refusal.kind.name(),
        message = ?refusal.message,
        "refused a spawn request",
    );
}
