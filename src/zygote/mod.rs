//! The zygote daemon: one thread, one `poll` loop over its socket, its clients, the
//! channels of sandboxes being set up, and a signalfd (SIGCHLD, SIGTERM, SIGINT).
//!
//! Everything that can be done once is done in [`Zygote::new`] (seccomp compiled, host
//! ids checked, `/dev/null` opened). Per request the loop admits or refuses it, clones
//! the sandbox (see `crate::sandbox`) and goes back to serving; the sandbox's report of
//! its exec (or failed setup) and its reap arrive later as events of the same loop, so no
//! client ever waits on another's spawn. Runs in the daemon process only.
//!
//! The rooms, in the order a request walks through them:
//! - [`listener`]: the socket, and who may connect;
//! - `connection`: one client's outbox and the ids of its children;
//! - `server`: the poll loop and the handlers of each source (signals, clients, sandboxes);
//! - `admission`: every check a spawn request passes before anything is made for it;
//! - `spawn`: starting the sandbox, warm from the pool or fresh, and its veth network;
//! - `child`, `reports`: a sandbox as the daemon tracks it, and what its init reports, up
//!   to its reap and verdict;
//! - `warm_pool`, `entries`, `limits`: what the loop keeps between requests;
//! - `stats`: what the loop counts, and its answer to `Status`;
//! - [`diagnose`]: hints for failures a machine's setup explains;
//! - [`args`], `builder`, [`embedded`]: the ways a zygote is made and started.

mod admission;
pub mod args;
mod builder;
mod child;
mod connection;
pub mod diagnose;
pub mod embedded;
mod entries;
mod host_ids;
pub mod listener;
mod metrics;
mod reports;
mod sandboxes;
mod server;
mod spawn;
mod stats;
pub mod systemd;
mod warm_pool;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::{Enforcer, LimitPolicy};
use crate::network::{Network, NetworkError, NetworkSettings};
use crate::protocol::Layer;
pub use crate::sandbox::PrepareError;
use crate::sandbox::{Sandboxer, SpareNamespaces};
use crate::seccomp::{CompiledPolicies, SeccompError, SeccompPolicy};
use crate::sys::{self, SysError};
pub use builder::ZygoteBuilder;
use entries::Entries;
use host_ids::HostIdPool;
pub use host_ids::{HostIdError, HostIdPolicy, HostIdRange, DEFAULT_RANGE, LOCK_DIR};
pub use listener::{Access, ConnectionLimits, Listener};
pub use sandboxes::SandboxBounds;
use server::Server;
use warm_pool::WarmPool;
pub use warm_pool::{PoolError, WarmPoolConfig};

/// The most sandboxes a daemon runs at once unless configured otherwise.
pub const DEFAULT_MAX_CHILDREN: usize = 1024;

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct ZygoteConfig {
    /// Host ids the sandboxes' ids map to: each its own from a range (a root daemon's
    /// default), or fixed.
    pub host_ids: HostIdPolicy,
    /// The seccomp policy every sandbox gets unless its request picks another.
    pub seccomp: SeccompPolicy,
    /// The name a request picks [`ZygoteConfig::seccomp`] by [default: `default`].
    pub seccomp_name: String,
    /// The other policies a request may pick by name (`SandboxConfig::seccomp_policy`)
    /// [default: the built-in `strict`].
    pub more_seccomp: Vec<(String, SeccompPolicy)>,
    /// The layers a request may switch off (`SandboxConfig::opt_out`) [default: none:
    /// such a request is refused].
    pub allowed_opt_outs: Vec<Layer>,
    /// Whether a request may bind host paths with their device nodes usable
    /// (`Mount::DevBind`) [default: no].
    pub allow_dev_binds: bool,
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
    /// The most client connections at once, in all and per uid.
    pub connections: ConnectionLimits,
    /// The most persistent sandboxes at once, in all and per uid.
    pub sandboxes: SandboxBounds,
    /// How long running sandboxes may go on after SIGTERM or SIGINT before they are
    /// killed (`daemon_shutdown`) [default: zero, killed at once].
    pub shutdown_grace: Duration,
    /// What SIGHUP reloads: a fresh configuration whose limit defaults and ceilings and
    /// seccomp policies replace the running ones [default: none; SIGHUP is logged and
    /// ignored].
    pub reload: Option<Reloader>,
    /// Where to serve Prometheus metrics over HTTP (`serve --metrics`) [default: nowhere].
    pub metrics: Option<std::net::SocketAddr>,
}

/// Makes the configuration a reload (SIGHUP) applies: its limit policy and seccomp
/// policies are taken, the rest is ignored (a restart changes it).
#[derive(Clone)]
pub struct Reloader(Arc<dyn Fn() -> Result<ZygoteConfig, String> + Send + Sync>);

impl Reloader {
    /// A reloader calling `load`, which returns the new configuration or why there is
    /// none (the running one then stays).
    pub fn new(load: impl Fn() -> Result<ZygoteConfig, String> + Send + Sync + 'static) -> Self {
        Reloader(Arc::new(load))
    }

    fn load(&self) -> Result<ZygoteConfig, String> {
        (self.0)()
    }
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloader")
    }
}

impl ZygoteConfig {
    /// The default policy, ids and limits.
    pub fn new() -> Result<ZygoteConfig, ZygoteError> {
        Ok(ZygoteConfig {
            host_ids: HostIdPolicy::default_for_daemon(),
            seccomp: SeccompPolicy::default_policy().map_err(ZygoteError::Seccomp)?,
            seccomp_name: "default".to_string(),
            more_seccomp: vec![(
                "strict".to_string(),
                SeccompPolicy::strict_policy().map_err(ZygoteError::Seccomp)?,
            )],
            allowed_opt_outs: Vec::new(),
            allow_dev_binds: false,
            access: Access::default(),
            max_children: DEFAULT_MAX_CHILDREN,
            limits: LimitPolicy::default(),
            network: None,
            warm_pool: WarmPoolConfig::default(),
            connections: ConnectionLimits::for_this_process(),
            shutdown_grace: Duration::ZERO,
            reload: None,
            metrics: None,
            sandboxes: SandboxBounds::default(),
        })
    }
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    /// The seccomp policy could not be loaded or compiled.
    #[error("seccomp policy")]
    Seccomp(#[source] SeccompError),
    /// Two seccomp policies have one name.
    #[error("two seccomp policies are named {0:?}")]
    SeccompName(String),
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
    /// What every sandbox shares (the last capability, `/dev/null`, the thread
    /// counter) cannot be prepared.
    #[error("preparing the sandboxes")]
    Sandboxes(#[source] PrepareError),
    /// The sandboxes' host ids cannot be had.
    #[error("host ids")]
    HostIds(#[source] HostIdError),
    /// The socket a service manager passed cannot be served.
    #[error("socket activation")]
    Activation(#[source] systemd::ActivationError),
    /// The metrics address cannot be listened on.
    #[error("--metrics {addr}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
/// zygote.serve(std::path::Path::new("/run/hatchery/hatchery.sock"))?;
/// # Ok::<(), hatchery::zygote::ZygoteError>(())
/// ```
pub struct Zygote {
    sandboxer: Sandboxer,
    entries: Entries,
    access: Access,
    connections: ConnectionLimits,
    max_children: usize,
    sandbox_bounds: SandboxBounds,
    enforcer: Enforcer,
    network: Option<Network>,
    pool: WarmPool,
    /// The host ids of the sandboxes, live and to come.
    host_ids: HostIdPool,
    /// Layers a request may switch off.
    allowed_opt_outs: Vec<Layer>,
    /// Whether a request may bind device nodes usable.
    allow_dev_binds: bool,
    /// Network namespaces made ahead; `None` before serving, in an embedded zygote,
    /// and where they cannot be made.
    spare_namespaces: Option<SpareNamespaces>,
    /// How long sandboxes may run on after SIGTERM.
    shutdown_grace: Duration,
    /// What SIGHUP reloads.
    reload: Option<Reloader>,
    /// Where to serve metrics.
    metrics: Option<std::net::SocketAddr>,
}

impl Zygote {
    /// Prepares a daemon: compiles the seccomp policy and claims the host ids, once.
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

    fn with_entries(mut config: ZygoteConfig, entries: Entries) -> Result<Zygote, ZygoteError> {
        config.limits.check().map_err(ZygoteError::Policy)?;
        let seccomp = compile_policies(&config)?;
        let network = config
            .network
            .take()
            .map(Network::new)
            .transpose()
            .map_err(ZygoteError::Network)?;
        // Pooled veth shapes get the resolv.conf that requests of their shape get.
        if let Some(contents) = network.as_ref().and_then(Network::resolv_conf) {
            for shape in &mut config.warm_pool.shapes {
                crate::network::add_resolv_conf(shape, contents);
            }
        }
        let pool = WarmPool::new(
            &config.warm_pool,
            &config.limits,
            network.is_some(),
            &seccomp,
        )
        .map_err(ZygoteError::WarmPool)?;
        // Enough ids for every sandbox the daemon may run at once, warm ones included.
        let most_alive =
            config.max_children + config.warm_pool.size * config.warm_pool.shapes.len().max(1);
        let host_ids =
            HostIdPool::claim(config.host_ids, most_alive).map_err(ZygoteError::HostIds)?;
        let sandboxer =
            Sandboxer::new(seccomp, host_ids.shared_owner()).map_err(ZygoteError::Sandboxes)?;
        Ok(Zygote {
            spare_namespaces: None,
            pool,
            host_ids,
            sandboxer,
            entries,
            access: config.access,
            connections: config.connections,
            max_children: config.max_children,
            sandbox_bounds: config.sandboxes,
            enforcer: Enforcer::for_this_host(config.limits),
            network,
            allowed_opt_outs: config.allowed_opt_outs,
            allow_dev_binds: config.allow_dev_binds,
            shutdown_grace: config.shutdown_grace,
            reload: config.reload,
            metrics: config.metrics,
        })
    }

    /// Serves on a socket at `path` until SIGTERM or SIGINT, then kills every sandbox
    /// (after [`ZygoteConfig::shutdown_grace`]), reaps it and removes the socket file.
    ///
    /// When a service manager passed a listening socket (`LISTEN_FDS=1` with
    /// `LISTEN_PID` naming this process), that socket is served instead of `path` and
    /// left in place at the end. When it asked for notifications (`NOTIFY_SOCKET`), the
    /// daemon sends `READY=1` once it accepts, `RELOADING=1`/`READY=1` around a SIGHUP
    /// reload and `STOPPING=1` when it stops. These variables are removed from the
    /// environment as they are read.
    pub fn serve(mut self, path: &Path) -> Result<(), ZygoteError> {
        let activated = systemd::activated_socket().map_err(ZygoteError::Activation)?;
        let notifier = systemd::Notifier::from_environment();
        let metrics = self
            .metrics
            .map(|addr| {
                metrics::Metrics::bind(addr).map_err(|source| ZygoteError::Metrics { addr, source })
            })
            .transpose()?;
        copy_code_to_huge_pages();
        // A daemon (not the embedded zygote of one `hatchery run`) makes its network
        // namespaces ahead; its helper is there before the socket is.
        match self.sandboxer.start_spare_namespaces() {
            Ok(spares) => self.spare_namespaces = Some(spares),
            Err(e) => {
                tracing::info!(error = %crate::error_chain(&e), "no spare network and IPC namespaces")
            }
        }
        let listener = match activated {
            Some(fd) => Listener::activated(fd),
            None => Listener::bind(path, &self.access)?,
        };
        let activated = if listener.owns_path() {
            ""
        } else {
            " (passed by the service manager)"
        };
        tracing::info!(socket = %listener.path().display(), "serving{activated}");
        let mut server = Server::new(self, Some(listener), None)?;
        server.notifier = notifier;
        if let Some(addr) = metrics.as_ref().and_then(|m| m.local_addr()) {
            tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
        }
        server.metrics = metrics;
        server.ready();
        server.run()
    }

    /// Serves one already-connected client (the embedded zygote of `hatchery run`), and
    /// returns when it has hung up and its sandboxes are reaped. It keeps no warm pool.
    pub fn serve_connection(mut self, conn: OwnedFd) -> Result<(), ZygoteError> {
        self.pool.close();
        Server::new(self, None, Some(conn))?.run()
    }
}

/// Compiles every seccomp policy of `config`, once, the default first.
fn compile_policies(config: &ZygoteConfig) -> Result<CompiledPolicies, ZygoteError> {
    let mut named = vec![(
        config.seccomp_name.clone(),
        config.seccomp.compile().map_err(ZygoteError::Seccomp)?,
    )];
    for (name, policy) in &config.more_seccomp {
        if named.iter().any(|(own, _)| own == name) {
            return Err(ZygoteError::SeccompName(name.clone()));
        }
        named.push((
            name.clone(),
            policy.compile().map_err(ZygoteError::Seccomp)?,
        ));
    }
    CompiledPolicies::new(named)
        .ok_or_else(|| ZygoteError::SeccompName(config.seccomp_name.clone()))
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
