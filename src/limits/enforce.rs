//! Enforcing each sandbox's limits from the daemon: resolving a request's limits against
//! the daemon's defaults and ceilings, the cgroup of each limited sandbox, and the
//! watchdog that ends a sandbox at its wall-time or CPU-time limit or when it runs out
//! of memory. Runs in the zygote's loop; no threads, no timers but the loop's own.

use std::time::{Duration, Instant};

use super::cgroup::{CgroupError, CgroupLimits, Cgroups, SandboxCgroup, Usage};
use super::policy::LimitPolicy;
use crate::protocol::{EndReason, ErrorKind, Limit, Limits};

/// How often a sandbox with a CPU-time or memory limit is looked at. A CPU-time limit is
/// overrun by at most this, times the number of CPUs.
const WATCH_INTERVAL: Duration = Duration::from_millis(10);

/// How often the removal of a cgroup whose last tasks are still exiting is retried.
const REMOVAL_RETRY: Duration = Duration::from_millis(50);

/// Limits that need a cgroup: they hold for the whole tree of the sandbox. The pids
/// limit is not one: `RLIMIT_NPROC` in the sandbox's own user namespace bounds its
/// processes without one (and its cgroup does too, when it has one for these).
pub(crate) const CGROUP_LIMITS: [Limit; 3] = [Limit::Memory, Limit::Cpu, Limit::CpuTime];

/// The limits' names for a message, e.g. `memory, pids`.
fn names(kinds: &[Limit]) -> String {
    kinds
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a sandbox cgroup was left by a daemon that is gone: its name is
/// `sandbox-<daemon pid>-<n>`, and no process has that pid any more. Daemons that share a
/// cgroup (an embedded zygote next to a daemon, say) share the sandboxes' parent, so a
/// live daemon's sandboxes are never touched; names of another form are not ours.
fn left_by_a_dead_daemon(name: &str) -> bool {
    let pid = name
        .strip_prefix("sandbox-")
        .and_then(|rest| rest.split_once('-'))
        .map(|(pid, _)| pid);
    match pid.and_then(|pid| pid.parse::<u32>().ok()) {
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

/// A request the daemon cannot run with the limits it asks for.
#[derive(Debug)]
pub struct Refusal {
    /// The error kind for the client.
    pub kind: ErrorKind,
    /// The explanation.
    pub message: String,
}

/// The daemon's side of limits: its policy, its cgroups, and cgroups waiting to go.
pub struct Enforcer {
    policy: LimitPolicy,
    cgroups: Option<Cgroups>,
    next_name: u64,
    leftovers: Vec<SandboxCgroup>,
}

/// The limits of one sandbox as the daemon enforces them.
pub struct Enforcement {
    /// The limits in force.
    pub limits: Limits,
    /// Requested limits that could not be enforced (allowed by the request).
    pub skipped: Vec<Limit>,
    /// The sandbox's cgroup, when a limit needs one.
    pub cgroup: Option<SandboxCgroup>,
    deadline: Option<Instant>,
    cpu_limit_ns: Option<u64>,
    watch_memory: bool,
    cgroup_counts_pids: bool,
}

impl Enforcer {
    /// An enforcer with `policy`, using the cgroups this host offers (with those a
    /// previous daemon left removed), if any.
    pub fn for_this_host(policy: LimitPolicy) -> Enforcer {
        Enforcer::new(policy, host_cgroups())
    }

    /// An enforcer with `policy`, using `cgroups` where they are available.
    pub fn new(policy: LimitPolicy, cgroups: Option<Cgroups>) -> Enforcer {
        Enforcer {
            policy,
            cgroups,
            next_name: 0,
            leftovers: Vec::new(),
        }
    }

    /// Replaces the defaults and ceilings (a reload): sandboxes admitted from now on get
    /// them; those running keep theirs.
    pub fn set_policy(&mut self, policy: LimitPolicy) {
        self.policy = policy;
    }

    /// Which limits this host cannot enforce.
    fn unenforceable(&self, limits: &Limits) -> Vec<Limit> {
        let supported = self.cgroups.as_ref().map(Cgroups::supports);
        CGROUP_LIMITS
            .into_iter()
            .filter(|&kind| limits.get(kind).is_some())
            .filter(|&kind| match (&supported, kind) {
                (None, _) => true,
                (Some(s), Limit::Memory) => !s.memory,
                (Some(s), Limit::Cpu) => !s.cpu,
                (Some(s), _) => !s.cpu_usage,
            })
            .collect()
    }

    /// Resolves a request's limits and prepares their enforcement: the cgroup is created
    /// (with its limits written) before the sandbox is cloned into it.
    pub fn prepare(
        &mut self,
        requested: &Limits,
        allow_unenforced: bool,
        started: Instant,
    ) -> Result<Enforcement, Refusal> {
        let mut limits = self.policy.resolve(requested).map_err(|e| Refusal {
            kind: ErrorKind::InvalidRequest,
            message: e.to_string(),
        })?;
        let mut skipped = self.unenforceable(&limits);
        if !skipped.is_empty() {
            if !allow_unenforced {
                let count = skipped.len();
                return Err(Refusal {
                    message: format!(
                        "this host has no cgroup controller to enforce the {} limit{}; to run \
                         without {}, the request must set allow_unenforced_limits \
                         (hatchery run --allow-unenforced-limits)",
                        names(&skipped),
                        if count > 1 { "s" } else { "" },
                        if count > 1 { "them" } else { "it" }
                    ),
                    kind: ErrorKind::UnenforceableLimits { limits: skipped },
                });
            }
            for &kind in &skipped {
                limits.set_limit(kind, None);
            }
        }
        let needs_cgroup = CGROUP_LIMITS.iter().any(|&k| limits.get(k).is_some());
        let mut cgroup_counts_pids = false;
        let cgroup = match (&self.cgroups, needs_cgroup) {
            (Some(cgroups), true) => {
                self.next_name += 1;
                let name = format!("sandbox-{}-{}", std::process::id(), self.next_name);
                let wanted = CgroupLimits {
                    memory_bytes: limits.memory_bytes,
                    // Where the host counts them, so that a refused fork is known.
                    pids: limits.pids.filter(|_| cgroups.supports().pids),
                    cpu_millicores: limits.cpu_millicores,
                };
                match cgroups.create(&name, &wanted) {
                    Ok(cgroup) => {
                        cgroup_counts_pids = wanted.pids.is_some();
                        Some(cgroup)
                    }
                    // The hierarchy is there but not ours to write (an unprivileged daemon,
                    // a read-only cgroupfs): these limits cannot be enforced by this daemon.
                    Err(e) => {
                        let unenforceable: Vec<Limit> = CGROUP_LIMITS
                            .into_iter()
                            .filter(|&k| limits.get(k).is_some())
                            .collect();
                        if !allow_unenforced {
                            return Err(Refusal {
                                message: format!(
                                    "this daemon cannot create a cgroup to enforce the {} limit \
                                     ({}); to run without, the request must set \
                                     allow_unenforced_limits",
                                    names(&unenforceable),
                                    crate::error_chain(&e)
                                ),
                                kind: ErrorKind::UnenforceableLimits {
                                    limits: unenforceable,
                                },
                            });
                        }
                        for &kind in &unenforceable {
                            limits.set_limit(kind, None);
                        }
                        skipped.extend(unenforceable);
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(Enforcement {
            deadline: limits.wall_time().map(|limit| started + limit),
            cpu_limit_ns: limits.cpu_time_ms.map(|ms| ms.saturating_mul(1_000_000)),
            watch_memory: limits.memory_bytes.is_some(),
            cgroup_counts_pids,
            limits,
            skipped,
            cgroup,
        })
    }

    /// Disposes of a reaped sandbox's cgroup: kills any straggler and removes it, or
    /// keeps it to retry while its last tasks are still exiting.
    pub fn retire(&mut self, cgroup: SandboxCgroup) {
        let _ = cgroup.kill();
        match cgroup.remove() {
            Ok(()) => {}
            Err(CgroupError::Busy) => self.leftovers.push(cgroup),
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "cannot remove a sandbox cgroup")
            }
        }
    }

    /// Retries the removal of cgroups whose tasks were still exiting.
    pub fn retry_removals(&mut self) {
        self.leftovers.retain(|cgroup| match cgroup.remove() {
            Ok(()) => false,
            Err(CgroupError::Busy) => {
                let _ = cgroup.kill();
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "cannot remove a sandbox cgroup");
                false
            }
        });
    }

    /// When the loop should wake up to retry removals, if it must.
    pub fn next_retry(&self) -> Option<Duration> {
        (!self.leftovers.is_empty()).then_some(REMOVAL_RETRY)
    }

    /// Whether cgroups of finished sandboxes remain to be removed.
    pub fn has_leftovers(&self) -> bool {
        !self.leftovers.is_empty()
    }
}

impl Enforcement {
    /// The limits the sandbox applies itself (rlimits, tmpfs options): those in force,
    /// but where its cgroup counts processes, a pids rlimit one above the cgroup's limit,
    /// so that the cgroup refuses first and the refusal is counted for the verdict (the
    /// rlimit stays as a backstop).
    pub fn sandbox_limits(&self) -> Limits {
        let mut limits = self.limits;
        if self.cgroup_counts_pids {
            limits.pids = limits.pids.map(|pids| pids.saturating_add(1));
        }
        limits
    }

    /// Why the sandbox must end now, if it must.
    pub fn overrun(&self, now: Instant) -> Option<EndReason> {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            return Some(EndReason::WallTimeout);
        }
        let usage = self.usage()?;
        if self
            .cpu_limit_ns
            .is_some_and(|limit| usage.cpu_ns.is_some_and(|used| used >= limit))
        {
            return Some(EndReason::CpuTimeout);
        }
        // cgroup v1 kills only the process that hit the limit; the whole sandbox goes.
        if self.watch_memory && usage.oom_kills > 0 {
            return Some(EndReason::OomKilled);
        }
        None
    }

    /// How long until this sandbox must be looked at again, if ever.
    pub fn next_check(&self, now: Instant) -> Option<Duration> {
        let deadline = self
            .deadline
            .map(|deadline| deadline.saturating_duration_since(now));
        let watch = (self.cpu_limit_ns.is_some() || self.watch_memory).then_some(WATCH_INTERVAL);
        match (deadline, watch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The cgroup's accounting, when there is a cgroup.
    pub fn usage(&self) -> Option<Usage> {
        self.cgroup.as_ref().map(SandboxCgroup::usage)
    }

    /// Kills every process of the cgroup (the pid namespace's end does the rest).
    pub fn kill(&self) {
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.kill();
        }
    }
}

/// The cgroups sandboxes go in, with those a previous daemon left removed; `None` where
/// this host offers none we can use (limits that need them are then refused, or skipped
/// where a request allows it).
fn host_cgroups() -> Option<Cgroups> {
    let cgroups = match Cgroups::discover() {
        Ok(cgroups) => cgroups,
        Err(e) => {
            tracing::info!(error = %crate::error_chain(&e), "no cgroups: memory, pids and CPU limits are unavailable");
            return None;
        }
    };
    match cgroups.remove_stale(left_by_a_dead_daemon) {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "removed sandbox cgroups a previous daemon left"),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "cannot remove stale sandbox cgroups")
        }
    }
    Some(cgroups)
}
