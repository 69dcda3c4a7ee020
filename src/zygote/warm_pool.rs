//! The warm pool's bookkeeping in the daemon: which sandbox shapes are pooled, the idle
//! sandboxes of each, matching a request to a shape, and the refill, one sandbox at a
//! time, when the loop has nothing else to do. Runs in the zygote's loop.
//!
//! Matching is exact: a request is served from the pool only if its sandbox config,
//! with its limits resolved, equals a pooled shape in everything that is set up before
//! the request arrives. What the sandbox applies per request (rlimits) or the daemon
//! enforces from outside (wall time, disconnect policy) may differ; a request that needs
//! a cgroup (memory, CPU, CPU-time limits) never matches.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::admission::pick_seccomp_policy;
use super::host_ids::HostIdPool;
use crate::limits::{LimitPolicy, CGROUP_LIMITS};
use crate::network::{Lease, Network};
use crate::protocol::{
    validate, Limit, LimitSet, Limits, NetworkConfig, SandboxConfig, SpawnRequest,
};
use crate::sandbox::warm::Idle;
use crate::sandbox::{FromSandbox, Pending, Sandboxer, SpareNamespaces};
use crate::seccomp::CompiledPolicies;

/// How long a shape's refill pauses after one of its sandboxes died while idle (a bind
/// source removed, say), so that a broken shape does not keep the loop cloning.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How long a veth shape's refill waits when every subnet is in use (subnets come back
/// as sandboxes are reaped and their pairs are gone).
const PAUSE_WITHOUT_SUBNET: Duration = Duration::from_millis(100);

/// Which sandboxes the daemon keeps warm.
///
/// ```
/// use hatchery::protocol::SandboxConfig;
/// use hatchery::zygote::WarmPoolConfig;
/// let pool = WarmPoolConfig { size: 4, shapes: vec![SandboxConfig::default()] };
/// assert_eq!(pool.shapes.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WarmPoolConfig {
    /// Idle sandboxes kept ready per shape; 0 turns the pool off.
    pub size: usize,
    /// The sandbox configs to keep warm.
    pub shapes: Vec<SandboxConfig>,
}

impl WarmPoolConfig {
    /// A shape from JSON: an object with the [`SandboxConfig`] fields to change from the
    /// default, e.g. `{"hostname": "judge", "binds": [{"source": "/srv/tests",
    /// "target": "/tests", "writable": false}]}`; paths are strings.
    ///
    /// ```
    /// use hatchery::zygote::WarmPoolConfig;
    /// let shape = WarmPoolConfig::shape_from_json(r#"{"hostname": "judge"}"#).unwrap();
    /// assert_eq!(shape.hostname, "judge");
    /// assert_eq!(shape.uid, 1000);
    /// ```
    pub fn shape_from_json(text: &str) -> Result<SandboxConfig, serde_json::Error> {
        let mut merged = serde_json::to_value(SandboxConfig::default())?;
        let changes: serde_json::Value = serde_json::from_str(text)?;
        if !changes.is_object() {
            return Err(serde::de::Error::custom(
                "a pooled shape is a JSON object of sandbox config fields",
            ));
        }
        merge(&mut merged, changes)?;
        serde_json::from_value(merged)
    }
}

/// Overlays `changes` on `base`, object by object; a field `base` lacks is an error (a
/// misspelt field must not leave a default in place unnoticed).
fn merge(
    base: &mut serde_json::Value,
    changes: serde_json::Value,
) -> Result<(), serde_json::Error> {
    match (base, changes) {
        (serde_json::Value::Object(base), serde_json::Value::Object(changes)) => {
            for (key, value) in changes {
                let slot = base.get_mut(&key).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown sandbox config field {key:?}"))
                })?;
                merge(slot, value)?;
            }
        }
        (base, changes) => *base = changes,
    }
    Ok(())
}

/// A pooled shape that the daemon cannot keep warm.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The shape is not a valid sandbox config.
    #[error("pooled shape {index} is invalid")]
    Invalid {
        /// Its position in the configuration.
        index: usize,
        /// What is wrong with it.
        #[source]
        error: validate::InvalidRequest,
    },
    /// The shape's limits (or the daemon's defaults) exceed the daemon's ceilings.
    #[error("pooled shape {index}: {message}")]
    Limits {
        /// Its position in the configuration.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Its sandboxes would need a cgroup, which is created per request.
    #[error(
        "pooled shape {index} has the {limits} limit(s), which need a cgroup per sandbox; \
         a warm pool cannot serve them"
    )]
    NeedsCgroup {
        /// Its position in the configuration.
        index: usize,
        /// The limits' names.
        limits: String,
    },
    /// It has a veth network but the daemon has no veth pool.
    #[error(
        "pooled shape {index} has a veth network, but this daemon has none (start it with \
         --veth-pool)"
    )]
    NoVethPool {
        /// Its position in the configuration.
        index: usize,
    },
}

/// The part of a sandbox config that is set up before the request arrives; what is left
/// out is applied per request or by the daemon.
fn shape_of(config: &SandboxConfig) -> SandboxConfig {
    SandboxConfig {
        limits: Limits {
            wall_time_ms: None,
            file_size_bytes: None,
            open_files: None,
            pids: None,
            unlimited: LimitSet::EMPTY,
            ..config.limits
        },
        allow_unenforced_limits: false,
        kill_on_disconnect: false,
        ..config.clone()
    }
}

/// An idle sandbox with its veth network, if its shape has one.
struct Warm {
    idle: Idle,
    lease: Option<Lease>,
}

struct Shape {
    shape: SandboxConfig,
    idle: VecDeque<Warm>,
    paused_until: Option<Instant>,
}

/// The daemon's warm pool.
pub struct WarmPool {
    size: usize,
    shapes: Vec<Shape>,
    /// No more refills: the daemon is shutting down.
    closed: bool,
}

impl WarmPool {
    /// The pool of `config`, its shapes' limits resolved against the daemon's `policy`
    /// and their seccomp policy's name against the daemon's `seccomp` as a request's
    /// are. `networked`: whether the daemon has a veth pool.
    pub fn new(
        config: &WarmPoolConfig,
        policy: &LimitPolicy,
        networked: bool,
        seccomp: &CompiledPolicies,
    ) -> Result<WarmPool, PoolError> {
        let mut shapes = Vec::new();
        if config.size > 0 {
            for (index, shape) in config.shapes.iter().enumerate() {
                let mut shape = shape.clone();
                validate::validate(&SpawnRequest::new("/").sandbox(shape.clone()))
                    .map_err(|error| PoolError::Invalid { index, error })?;
                shape.limits = policy
                    .resolve(&shape.limits)
                    .map_err(|e| PoolError::Limits {
                        index,
                        message: e.to_string(),
                    })?;
                if shape.network != NetworkConfig::None && !networked {
                    return Err(PoolError::NoVethPool { index });
                }
                shape.seccomp_policy = pick_seccomp_policy(&shape, seccomp)
                    .map_err(|message| PoolError::Limits { index, message })?;
                let needs_cgroup: Vec<&str> = CGROUP_LIMITS
                    .into_iter()
                    .filter(|&kind| shape.limits.get(kind).is_some())
                    .map(Limit::name)
                    .collect();
                if !needs_cgroup.is_empty() {
                    return Err(PoolError::NeedsCgroup {
                        index,
                        limits: needs_cgroup.join(", "),
                    });
                }
                shapes.push(Shape {
                    shape: shape_of(&shape),
                    idle: VecDeque::with_capacity(config.size),
                    paused_until: None,
                });
            }
        }
        Ok(WarmPool {
            size: config.size,
            shapes,
            closed: false,
        })
    }

    /// An idle sandbox whose shape is exactly `config`'s (limits already resolved), if
    /// one is ready, with its veth network's lease if it has one.
    pub fn take(&mut self, config: &SandboxConfig) -> Option<(Idle, Option<Lease>)> {
        if self.shapes.iter().all(|s| s.idle.is_empty()) {
            return None;
        }
        let wanted = shape_of(config);
        self.shapes
            .iter_mut()
            .find(|s| s.shape == wanted)
            .and_then(|s| s.idle.pop_front())
            .map(|warm| (warm.idle, warm.lease))
    }

    /// The shape that most needs a sandbox now, if any does.
    fn next_to_fill(&self, now: Instant) -> Option<usize> {
        if self.closed {
            return None;
        }
        self.shapes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.idle.len() < self.size)
            .filter(|(_, s)| s.paused_until.is_none_or(|until| until <= now))
            .min_by_key(|(_, s)| s.idle.len())
            .map(|(i, _)| i)
    }

    /// When the pool next wants to refill: now (`Some(ZERO)`), after a pause, or never.
    pub fn next_refill(&self, now: Instant) -> Option<Duration> {
        if self.closed {
            return None;
        }
        self.shapes
            .iter()
            .filter(|s| s.idle.len() < self.size)
            .map(|s| {
                s.paused_until
                    .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
            })
            .min()
    }

    /// Clones one idle sandbox for the shape that most needs one, and builds its veth
    /// network if the shape has one. Called when the loop has nothing else to do, so a
    /// refill never delays a spawn already waiting.
    pub fn refill_one(
        &mut self,
        sandboxer: &Sandboxer,
        network: Option<&mut Network>,
        spares: Option<&mut SpareNamespaces>,
        host_ids: &mut HostIdPool,
    ) {
        let now = Instant::now();
        let Some(index) = self.next_to_fill(now) else {
            return;
        };
        let shape = &mut self.shapes[index];
        // A subnet before anything is cloned; none free is no error: the refill waits.
        let (subnet, network) = match (&shape.shape.network, network) {
            (NetworkConfig::None, _) => (None, None),
            (NetworkConfig::Veth(_), Some(network)) => match network.reserve() {
                Some(subnet) => (Some(subnet), Some(network)),
                None => {
                    shape.paused_until = Some(now + PAUSE_WITHOUT_SUBNET);
                    return;
                }
            },
            // Refused when the pool was made.
            (NetworkConfig::Veth(_), None) => return,
        };
        let Some(host) = host_ids.take() else {
            if let (Some(subnet), Some(network)) = (subnet, network) {
                network.unreserve(subnet);
            }
            shape.paused_until = Some(now + PAUSE_WITHOUT_SUBNET);
            return;
        };
        let idle = match sandboxer.start_idle(&shape.shape, spares, host) {
            Ok(idle) => {
                host_ids.bind(idle.pid, host);
                idle
            }
            Err(e) => {
                host_ids.give_back(host);
                if let (Some(subnet), Some(network)) = (subnet, network) {
                    network.unreserve(subnet);
                }
                tracing::warn!(error = %crate::error_chain(&e), shape = index, "cannot clone a warm sandbox");
                shape.paused_until = Some(now + PAUSE_AFTER_FAILURE);
                return;
            }
        };
        let mut lease = None;
        if let (Some(subnet), Some(network), NetworkConfig::Veth(veth)) =
            (subnet, network, &shape.shape.network)
        {
            match network.attach(subnet, idle.pid, idle.pidfd(), veth) {
                Ok(attached) => {
                    // Its init waits for this before it goes idle; if it died already,
                    // its reap releases the lease.
                    let _ = idle.channel().network_ready();
                    lease = Some(attached);
                }
                Err(error) => {
                    // The subnet is taken care of by `attach`; the sandbox is reaped as
                    // any child that is not the pool's.
                    idle.kill();
                    tracing::warn!(shape = index, %error, "cannot set up a warm sandbox's veth network");
                    shape.paused_until = Some(now + PAUSE_AFTER_FAILURE);
                    return;
                }
            }
        }
        tracing::debug!(pid = idle.pid, shape = index, "warm sandbox cloned");
        shape.idle.push_back(Warm { idle, lease });
    }

    /// Takes note of a reaped child; `true` if it was an idle sandbox of the pool (which
    /// died before any request: its shape's refill pauses, and its lease goes back to
    /// `network` to be drained as a reaped child's).
    pub fn reaped(
        &mut self,
        pid: i32,
        buf: &mut crate::protocol::RecvBuffer,
        network: Option<&mut Network>,
    ) -> bool {
        let closed = self.closed;
        for (index, shape) in self.shapes.iter_mut().enumerate() {
            let Some(at) = shape.idle.iter().position(|warm| warm.idle.pid == pid) else {
                continue;
            };
            let Warm { idle, lease } = shape.idle.remove(at).expect("the position was just found");
            if let (Some(lease), Some(network)) = (lease, network) {
                network.release(lease);
            }
            if !closed {
                match idle.channel().try_report(buf) {
                    Ok(Pending::Report(FromSandbox::SetupFailed(error), _)) => {
                        tracing::warn!(shape = index, error = %crate::error_chain(&error), "a warm sandbox failed its setup")
                    }
                    _ => tracing::warn!(shape = index, pid, "a warm sandbox died while idle"),
                }
                shape.paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
            }
            return true;
        }
        false
    }

    /// Stops refilling and kills every idle sandbox; they are reaped as they exit.
    pub fn close(&mut self) {
        self.closed = true;
        for warm in self.shapes.iter().flat_map(|s| &s.idle) {
            warm.idle.kill();
        }
    }

    /// Kills every idle sandbox (forked with what the daemon held then, e.g. its seccomp
    /// programs before a reload); the pool refills with new ones as they are reaped.
    pub fn drain_idle(&mut self) {
        for warm in self.shapes.iter().flat_map(|s| &s.idle) {
            warm.idle.kill();
        }
    }

    /// Idle sandboxes kept per shape.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The pooled shapes.
    pub fn shape_count(&self) -> usize {
        self.shapes.len()
    }

    /// Idle sandboxes now, all shapes together.
    pub fn idle(&self) -> usize {
        self.shapes.iter().map(|s| s.idle.len()).sum()
    }

    /// Veth leases the idle sandboxes hold.
    pub fn leases(&self) -> usize {
        self.shapes
            .iter()
            .flat_map(|s| &s.idle)
            .filter(|warm| warm.lease.is_some())
            .count()
    }

    /// Whether no idle sandbox is left (after [`WarmPool::close`], once all are reaped).
    pub fn is_empty(&self) -> bool {
        self.shapes.iter().all(|s| s.idle.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Bind, Layer};
    use crate::seccomp::SeccompPolicy;

    fn pool_of(shapes: Vec<SandboxConfig>, policy: &LimitPolicy) -> Result<WarmPool, PoolError> {
        WarmPool::new(
            &WarmPoolConfig { size: 2, shapes },
            policy,
            true,
            &policies(),
        )
    }

    /// The built-in policies, `default` first.
    fn policies() -> CompiledPolicies {
        let compiled = |policy: Result<SeccompPolicy, _>| policy.unwrap().compile().unwrap();
        CompiledPolicies::new(vec![
            ("default".into(), compiled(SeccompPolicy::default_policy())),
            ("strict".into(), compiled(SeccompPolicy::strict_policy())),
        ])
        .unwrap()
    }

    #[test]
    fn a_shape_keeps_its_seccomp_policy_and_names_only_loaded_ones() {
        // Requests are matched with their limits resolved, as the daemon does.
        let defaults = LimitPolicy::default().defaults;
        let strict = SandboxConfig {
            seccomp_policy: Some("strict".into()),
            limits: defaults,
            ..SandboxConfig::default()
        };
        let named_default = SandboxConfig {
            seccomp_policy: Some("default".into()),
            ..SandboxConfig::default()
        };
        let plain = SandboxConfig {
            limits: defaults,
            ..SandboxConfig::default()
        };
        let pool = pool_of(vec![strict.clone()], &LimitPolicy::default()).unwrap();
        assert!(shape_matches(&pool, &strict));
        // A request of the default policy is not served by a strict sandbox.
        assert!(!shape_matches(&pool, &plain));
        // The default named is the default: one shape, normalised.
        let pool = pool_of(vec![named_default], &LimitPolicy::default()).unwrap();
        assert!(shape_matches(&pool, &plain));
        let unknown = SandboxConfig {
            seccomp_policy: Some("lax".into()),
            ..SandboxConfig::default()
        };
        let err = pool_of(vec![unknown], &LimitPolicy::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("default, strict"), "{err}");
    }

    fn shape_matches(pool: &WarmPool, config: &SandboxConfig) -> bool {
        let wanted = shape_of(config);
        pool.shapes.iter().any(|s| s.shape == wanted)
    }

    #[test]
    fn the_default_shape_matches_a_default_request() {
        let policy = LimitPolicy::default();
        let pool = pool_of(vec![SandboxConfig::default()], &policy).unwrap();
        let mut request = SandboxConfig::default();
        request.limits = policy.resolve(&request.limits).unwrap();
        assert!(shape_matches(&pool, &request));
    }

    #[test]
    fn per_request_limits_and_the_disconnect_policy_do_not_change_the_shape() {
        let policy = LimitPolicy::default();
        let pool = pool_of(vec![SandboxConfig::default()], &policy).unwrap();
        let mut request = SandboxConfig {
            limits: Limits {
                wall_time_ms: Some(1000),
                open_files: Some(64),
                file_size_bytes: Some(1 << 20),
                pids: Some(1000),
                ..Limits::default()
            },
            kill_on_disconnect: false,
            allow_unenforced_limits: true,
            ..SandboxConfig::default()
        };
        request.limits = policy.resolve(&request.limits).unwrap();
        assert!(shape_matches(&pool, &request));
    }

    #[test]
    fn anything_set_up_before_the_request_must_match() {
        let pool = pool_of(vec![SandboxConfig::default()], &LimitPolicy::default()).unwrap();
        let differing = [
            SandboxConfig {
                hostname: "other".into(),
                ..SandboxConfig::default()
            },
            SandboxConfig {
                uid: 1001,
                ..SandboxConfig::default()
            },
            SandboxConfig {
                gid: 1001,
                ..SandboxConfig::default()
            },
            SandboxConfig {
                binds: vec![Bind::read_only("/usr", "/data")],
                ..SandboxConfig::default()
            },
            SandboxConfig {
                chroot_dir: Some("/srv/root".into()),
                ..SandboxConfig::default()
            },
            SandboxConfig {
                opt_out: vec![Layer::Seccomp],
                ..SandboxConfig::default()
            },
            SandboxConfig {
                opt_out: vec![Layer::NetworkNamespace],
                ..SandboxConfig::default()
            },
            SandboxConfig {
                limits: Limits {
                    tmp_size_bytes: Some(1 << 20),
                    ..Limits::default()
                },
                ..SandboxConfig::default()
            },
            SandboxConfig {
                limits: Limits {
                    memory_bytes: Some(1 << 30),
                    ..Limits::default()
                },
                ..SandboxConfig::default()
            },
        ];
        for config in differing {
            assert!(!shape_matches(&pool, &config), "{config:?} matched");
        }
    }

    #[test]
    fn a_shape_that_needs_a_cgroup_is_refused() {
        let shape = SandboxConfig {
            limits: Limits {
                cpu_millicores: Some(500),
                ..Limits::default()
            },
            ..SandboxConfig::default()
        };
        let err = pool_of(vec![shape], &LimitPolicy::default()).err().unwrap();
        assert!(matches!(err, PoolError::NeedsCgroup { .. }), "{err}");
        // The same through a daemon default that every request would get.
        let policy = LimitPolicy {
            defaults: Limits {
                memory_bytes: Some(1 << 30),
                ..Limits::default()
            },
            ..LimitPolicy::default()
        };
        let err = pool_of(vec![SandboxConfig::default()], &policy)
            .err()
            .unwrap();
        assert!(matches!(err, PoolError::NeedsCgroup { .. }), "{err}");
    }

    #[test]
    fn a_veth_shape_is_refused_without_a_veth_pool() {
        let shape = SandboxConfig {
            network: NetworkConfig::Veth(Default::default()),
            ..SandboxConfig::default()
        };
        let config = WarmPoolConfig {
            size: 2,
            shapes: vec![shape.clone()],
        };
        let err = WarmPool::new(&config, &LimitPolicy::default(), false, &policies())
            .err()
            .unwrap();
        assert!(matches!(err, PoolError::NoVethPool { index: 0 }), "{err}");
        assert!(err.to_string().contains("--veth-pool"), "{err}");
        assert!(WarmPool::new(&config, &LimitPolicy::default(), true, &policies()).is_ok());
    }

    #[test]
    fn a_veth_shape_matches_only_the_same_veth_config() {
        let policy = LimitPolicy::default();
        let veth = crate::protocol::VethConfig {
            interface: Some("net0".into()),
            mtu: Some(1400),
        };
        let shape = SandboxConfig {
            network: NetworkConfig::Veth(veth.clone()),
            ..SandboxConfig::default()
        };
        let pool = pool_of(vec![shape.clone()], &policy).unwrap();
        let mut request = shape.clone();
        request.limits = policy.resolve(&request.limits).unwrap();
        assert!(shape_matches(&pool, &request));
        for other in [
            NetworkConfig::None,
            NetworkConfig::Veth(Default::default()),
            NetworkConfig::Veth(crate::protocol::VethConfig {
                mtu: Some(1500),
                ..veth.clone()
            }),
            NetworkConfig::Veth(crate::protocol::VethConfig {
                interface: Some("eth0".into()),
                ..veth.clone()
            }),
        ] {
            let request = SandboxConfig {
                network: other,
                ..request.clone()
            };
            assert!(!shape_matches(&pool, &request), "{:?}", request.network);
        }
    }

    #[test]
    fn an_invalid_shape_is_refused() {
        let shape = SandboxConfig {
            uid: 0,
            ..SandboxConfig::default()
        };
        let err = pool_of(vec![shape], &LimitPolicy::default()).err().unwrap();
        assert!(matches!(err, PoolError::Invalid { .. }), "{err}");
    }

    #[test]
    fn a_shape_from_json_changes_only_what_it_names() {
        let shape = WarmPoolConfig::shape_from_json(
            r#"{"hostname": "judge", "limits": {"tmp_size_bytes": 1048576},
                "binds": [{"source": "/srv", "target": "/data", "writable": false}],
                "opt_out": ["Seccomp"]}"#,
        )
        .unwrap();
        let expected = SandboxConfig {
            hostname: "judge".into(),
            limits: Limits {
                tmp_size_bytes: Some(1 << 20),
                ..Limits::default()
            },
            binds: vec![Bind::read_only("/srv", "/data")],
            opt_out: vec![Layer::Seccomp],
            ..SandboxConfig::default()
        };
        assert_eq!(shape, expected);
        // What serde_json writes reads back the same.
        let text = serde_json::to_string(&expected).unwrap();
        assert_eq!(WarmPoolConfig::shape_from_json(&text).unwrap(), expected);
    }

    #[test]
    fn a_shape_from_json_refuses_unknown_fields_and_non_objects() {
        let err = WarmPoolConfig::shape_from_json(r#"{"hostnme": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("hostnme"), "{err}");
        let err = WarmPoolConfig::shape_from_json(r#"{"limits": {"memory": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
        assert!(WarmPoolConfig::shape_from_json("[1]").is_err());
        assert!(WarmPoolConfig::shape_from_json(r#"{"uid": "x"}"#).is_err());
    }

    #[test]
    fn the_daemons_default_tmp_size_is_part_of_the_shape() {
        let policy = LimitPolicy {
            defaults: Limits {
                tmp_size_bytes: Some(8 << 20),
                ..Limits::default()
            },
            ..LimitPolicy::default()
        };
        let pool = pool_of(vec![SandboxConfig::default()], &policy).unwrap();
        let mut request = SandboxConfig::default();
        assert!(!shape_matches(&pool, &request), "unresolved limits differ");
        request.limits = policy.resolve(&request.limits).unwrap();
        assert!(shape_matches(&pool, &request));
    }
}
