//! The flags of `hatchery serve`, in one definition that the `hatchery` command and every
//! custom zygote ([`crate::ZygoteBuilder::serve_from_args`]) share. Runs in the zygote
//! process, before it serves.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{
    Access, ConnectionLimits, WarmPoolConfig, ZygoteConfig, ZygoteError, DEFAULT_MAX_CHILDREN,
};
use crate::client::default_socket_path;
use crate::limits::{DefaultPrefix, LimitFlags, LimitPolicy, MaxPrefix};
use crate::network::{Cidr, NetworkSettings};
use crate::sandbox::HostIds;
use crate::seccomp::{SeccompError, SeccompPolicy};

/// Why the flags do not make a zygote.
#[derive(Debug, thiserror::Error)]
pub enum ServeArgsError {
    /// The seccomp policy file cannot be read.
    #[error("cannot read the seccomp policy {path:?}")]
    ReadPolicy {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The seccomp policy file is not a valid policy.
    #[error("seccomp policy {path:?}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: SeccompError,
    },
    /// A `--warm-pool-shape` file cannot be read or is not a sandbox config.
    #[error("warm pool shape {path:?}")]
    ReadShape {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `--group` names no group.
    #[error("no such group: {0}")]
    NoSuchGroup(String),
    /// The zygote could not be prepared or stopped with an error.
    #[error(transparent)]
    Zygote(#[from] ZygoteError),
}

/// How the daemon writes its log to stderr (`serve --log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event: time, level, message, then `key=value` fields. Coloured only
    /// when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, the other
    /// fields), for log collectors.
    Json,
}

impl LogFormat {
    /// Installs this format as the process's log subscriber, writing to stderr, with
    /// `RUST_LOG`'s filter or else `default_filter` (e.g. `"info"`). Returns `false`
    /// when the program has installed a subscriber of its own already (which then stays).
    pub fn install(self, default_filter: &str) -> bool {
        use std::io::IsTerminal;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self {
            // Escape codes belong on a terminal, not in a file or the journal.
            LogFormat::Text => builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init()
                .is_ok(),
            LogFormat::Json => builder.json().try_init().is_ok(),
        }
    }
}

/// The flags of `hatchery serve`, shared by every zygote ([`crate::ZygoteBuilder::serve_from_args`]).
#[derive(Args)]
pub struct ServeArgs {
    /// Socket to listen on [default: $HATCHERY_SOCKET, else /run/hatchery.sock as root,
    /// else $XDG_RUNTIME_DIR/hatchery.sock, else /tmp/hatchery-UID.sock]
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also allow members of this group (name or gid); the socket becomes mode 0660.
    #[arg(long)]
    pub group: Option<String>,
    /// Also allow this uid (repeatable). Root and the daemon's own uid are always allowed.
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uids: Vec<u32>,
    /// Host uid the sandboxes' uid maps to [default: 65534 as root, else your own].
    #[arg(long)]
    pub host_uid: Option<u32>,
    /// Host gid the sandboxes' gid maps to [default: 65534 as root, else your own].
    #[arg(long)]
    pub host_gid: Option<u32>,
    /// The sandboxes' seccomp policy: `default` (built in, a denylist), `strict` (built in,
    /// an allowlist) or the path of a policy file (write `./strict` for a file so named).
    #[arg(long, value_name = "default|strict|FILE")]
    pub seccomp_policy: Option<PathBuf>,
    /// The most sandboxes alive at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CHILDREN)]
    pub max_children: usize,
    /// The most client connections at once; more are answered Busy and closed
    /// [default: half the open-files limit, at most 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// The most client connections at once from one uid [default: a quarter of
    /// --max-connections].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_uid: Option<u32>,
    /// Keep N sandboxes of each pooled shape pre-created: a matching spawn skips the
    /// clone, id maps and root; the rest take the normal path.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warm_pool: usize,
    /// A pooled shape: a JSON file holding the sandbox config fields that differ from
    /// the default (repeatable) [default: the default sandbox].
    #[arg(long, value_name = "FILE")]
    pub warm_pool_shape: Vec<PathBuf>,
    #[command(flatten)]
    pub default_limits: LimitFlags<DefaultPrefix>,
    #[command(flatten)]
    pub max_limits: LimitFlags<MaxPrefix>,
    /// Give sandboxes that ask for one a veth network, each a /30 (IPv4) and a /126
    /// (IPv6) of CIDR: one IPv4 and/or one IPv6 range (repeat the flag for both).
    /// Without it, requests for a veth network are refused.
    #[arg(long = "veth-pool", value_name = "CIDR")]
    pub veth_pools: Vec<Cidr>,
    /// Name the host ends PREFIX plus a counter (at most 8 bytes of [a-z0-9_-]). Veths
    /// named so are this daemon's: it removes those a previous run left when it starts.
    #[arg(long, value_name = "PREFIX", default_value = crate::network::DEFAULT_PREFIX)]
    pub veth_prefix: String,
    /// Let the kernel forward packets from sandboxes beyond their host end (for the
    /// operator's NAT; see docs/networking.md). Without it they reach their host end only.
    #[arg(long)]
    pub veth_forwarding: bool,
    /// How to write the log to stderr: `text` (`key=value` fields, coloured only on a
    /// terminal) or `json` (one object per line, for log collectors). `RUST_LOG` sets
    /// the level [default: info].
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The socket to listen on: `--socket`, else the default path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(default_socket_path)
    }

    /// The daemon configuration these flags ask for.
    pub fn zygote_config(&self) -> Result<ZygoteConfig, ServeArgsError> {
        let mut config = ZygoteConfig::new()?;
        if let Some(path) = &self.seccomp_policy {
            let policy = match path.to_str() {
                Some(name @ ("default" | "strict")) => SeccompPolicy::builtin(name),
                _ => {
                    let text = std::fs::read_to_string(path).map_err(|source| {
                        ServeArgsError::ReadPolicy {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    SeccompPolicy::from_json(&text)
                }
            };
            config.seccomp = policy.map_err(|source| ServeArgsError::Policy {
                path: path.clone(),
                source,
            })?;
        }
        let defaults = HostIds::default_for_daemon();
        config.host_ids = HostIds {
            uid: self.host_uid.unwrap_or(defaults.uid),
            gid: self.host_gid.unwrap_or(defaults.gid),
        };
        config.access = Access {
            extra_uids: self.allow_uids.clone(),
            group: self.group.as_deref().map(resolve_group).transpose()?,
        };
        config.max_children = self.max_children;
        let defaults = ConnectionLimits::for_this_process();
        let total = self.max_connections.map_or(defaults.total, |n| n as usize);
        config.connections = ConnectionLimits {
            total,
            per_uid: self
                .max_connections_per_uid
                .map_or((total / 4).max(1), |n| n as usize),
        };
        if !self.veth_pools.is_empty() {
            config.network = Some(NetworkSettings {
                pool: self.veth_pools.clone(),
                prefix: self.veth_prefix.clone(),
                forwarding: self.veth_forwarding,
                first_slot: 0,
            });
        }
        config.limits = LimitPolicy {
            defaults: self.default_limits.limits,
            ceilings: self.max_limits.limits,
        };
        config.warm_pool.shapes = if self.warm_pool_shape.is_empty() {
            vec![crate::protocol::SandboxConfig::default()]
        } else {
            self.warm_pool_shape
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path).map_err(|source| {
                        ServeArgsError::ReadShape {
                            path: path.clone(),
                            source: source.into(),
                        }
                    })?;
                    WarmPoolConfig::shape_from_json(&text).map_err(|source| {
                        ServeArgsError::ReadShape {
                            path: path.clone(),
                            source: source.into(),
                        }
                    })
                })
                .collect::<Result<_, _>>()?
        };
        config.warm_pool.size = self.warm_pool;
        Ok(config)
    }
}

fn resolve_group(group: &str) -> Result<u32, ServeArgsError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(ServeArgsError::NoSuchGroup(group.to_string())),
    }
}
