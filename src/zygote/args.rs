//! The flags of `hatchery serve`, in one definition that the `hatchery` command and every
//! custom zygote ([`crate::ZygoteBuilder::serve_from_args`]) share. Runs in the zygote
//! process, before it serves.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::{
    Access, ConnectionLimits, HostIdPolicy, HostIdRange, WarmPoolConfig, ZygoteConfig, ZygoteError,
    DEFAULT_MAX_CHILDREN,
};
use crate::client::default_socket_path;
use crate::limits::{DefaultPrefix, LimitFlags, LimitPolicy, MaxPrefix, SAFE_DEFAULTS};
use crate::network::{Cidr, Egress, HostPort, NetworkSettings, Policy};
use crate::protocol::{Layer, Limit, LimitSet};
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
    /// A `--seccomp-policy NAME=FILE` with an empty name.
    #[error("--seccomp-policy {spec:?}: the name before '=' is empty")]
    PolicyName {
        /// The flag's value.
        spec: PathBuf,
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
    /// A veth policy flag that would change nothing as given.
    #[error("{0}")]
    VethPolicy(String),
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
    /// Socket to listen on [default: $HATCHERY_SOCKET, else /run/hatchery/hatchery.sock as root,
    /// else $XDG_RUNTIME_DIR/hatchery.sock, else /tmp/hatchery-UID.sock]
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also allow members of this group (name or gid); the socket becomes mode 0660.
    #[arg(long)]
    pub group: Option<String>,
    /// Also allow this uid (repeatable). Root and the daemon's own uid are always allowed.
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uids: Vec<u32>,
    /// Give each live sandbox its own host uid and gid (the same number) from COUNT ids
    /// at START; checked against the host's users, groups and /etc/subuid and
    /// /etc/subgid [default, as root: 1879048192:65536].
    #[arg(long, value_name = "START:COUNT", conflicts_with_all = ["host_uid", "host_gid"])]
    pub host_uid_range: Option<HostIdRange>,
    /// Run every sandbox as this one host uid instead (files a job writes into a bind
    /// then belong to it) [default: a uid of its own per sandbox as root, else your own].
    #[arg(long)]
    pub host_uid: Option<u32>,
    /// The host gid to go with --host-uid [default: 65534 as root, else your own].
    #[arg(long)]
    pub host_gid: Option<u32>,
    /// A seccomp policy requests may pick by name (`run --seccomp-policy NAME`);
    /// repeatable, the first is the default: `default` (built in, a denylist), `strict`
    /// (built in, an allowlist), `NAME=FILE` (a policy file, picked as NAME) or the path
    /// of a policy file (picked by that path; write `./strict` for a file so named)
    /// [default: `default`, then `strict`].
    #[arg(long, value_name = "default|strict|NAME=FILE|FILE")]
    pub seccomp_policy: Vec<PathBuf>,
    /// Let requests switch off these layers (`run --unsafe-disable LAYER`): `seccomp`,
    /// `network-namespace` (comma-separated or repeated). Without it, such a request is
    /// refused.
    #[arg(
        long,
        value_name = "LAYER[,LAYER]",
        value_delimiter = ',',
        value_parser = parse_layer
    )]
    pub allow_unsafe_disable: Vec<Layer>,
    /// Let requests bind host paths with their device nodes usable (`run --dev-bind`).
    /// Without it, such a request is refused.
    #[arg(long)]
    pub allow_dev_bind: bool,
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
    /// Let requests lift these defaults (`run --pids unlimited`): comma-separated limit
    /// names, or `all` [default: none; a request asking to is refused].
    #[arg(long, value_name = "LIMIT[,LIMIT]", value_delimiter = ',', value_parser = parse_limit_kind)]
    pub allow_unlimited: Vec<LimitSet>,
    /// Give sandboxes that ask for one a veth network, each a /30 (IPv4) and a /126
    /// (IPv6) of CIDR: one IPv4 and/or one IPv6 range (repeat the flag for both).
    /// Without it, requests for a veth network are refused.
    #[arg(long = "veth-pool", value_name = "CIDR")]
    pub veth_pools: Vec<Cidr>,
    /// Name the host ends PREFIX plus a counter (at most 8 bytes of [a-z0-9_-]). Veths
    /// named so are this daemon's: it removes those a previous run left when it starts.
    #[arg(long, value_name = "PREFIX", default_value = crate::network::DEFAULT_PREFIX)]
    pub veth_prefix: String,
    /// What veth sandboxes may reach beyond their host end: `none` (nothing) or
    /// `internet` (through NAT; never private, local or multicast ranges, the host's own
    /// addresses or other sandboxes). Enforced in an nftables table of the daemon's;
    /// see docs/networking.md.
    #[arg(long, value_name = "POLICY", default_value = "none", value_parser = parse_egress)]
    pub veth_policy: Egress,
    /// A port of its own host end that a veth sandbox may reach, `PORT/tcp` or
    /// `PORT/udp` (repeatable) [default: none].
    #[arg(long = "veth-host-port", value_name = "PORT/PROTO")]
    pub veth_host_ports: Vec<HostPort>,
    /// Let `internet` sandboxes reach CIDR although the deny list has it (repeatable);
    /// never the pool or the host's own addresses.
    #[arg(long = "veth-allow", value_name = "CIDR")]
    pub veth_allow: Vec<Cidr>,
    /// Refuse `internet` sandboxes CIDR, beyond the built-in deny list (repeatable).
    #[arg(long = "veth-deny", value_name = "CIDR")]
    pub veth_deny: Vec<Cidr>,
    /// The resolver `internet` sandboxes get in their own /etc/resolv.conf (repeatable;
    /// its port 53 is reachable whatever the deny list says) [default: the host's
    /// resolvers that a sandbox can reach, if any].
    #[arg(long = "veth-dns", value_name = "IP")]
    pub veth_dns: Vec<std::net::IpAddr>,
    /// How to write the log to stderr: `text` (`key=value` fields, coloured only on a
    /// terminal) or `json` (one object per line, for log collectors). `RUST_LOG` sets
    /// the level [default: info].
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `none` or `internet`.
fn parse_egress(text: &str) -> Result<Egress, String> {
    text.parse()
}

/// A limit's command-line name (`pids`, `tmp-size`), or `all`.
fn parse_limit_kind(text: &str) -> Result<LimitSet, String> {
    if text == "all" {
        return Ok(LimitSet::all());
    }
    Limit::ALL
        .into_iter()
        .find(|kind| kind.name() == text)
        .map(|kind| [kind].into_iter().collect())
        .ok_or_else(|| {
            let names: Vec<&str> = Limit::ALL.iter().map(|kind| kind.name()).collect();
            format!(
                "no limit is called {text:?}; the limits are {}, or all",
                names.join(", ")
            )
        })
}

impl ServeArgs {
    /// The host ids these flags ask for: a range, fixed ids, or the default.
    pub fn host_id_policy(&self) -> HostIdPolicy {
        if let Some(range) = self.host_uid_range {
            return HostIdPolicy::Range(range);
        }
        if self.host_uid.is_none() && self.host_gid.is_none() {
            return HostIdPolicy::default_for_daemon();
        }
        // One given: the other is nobody's as root (it was the fixed default), else
        // the daemon's own (the only one it may map).
        let (uid, gid) = if nix::unistd::geteuid().is_root() {
            (65534, 65534)
        } else {
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        };
        HostIdPolicy::Fixed(HostIds {
            uid: self.host_uid.unwrap_or(uid),
            gid: self.host_gid.unwrap_or(gid),
        })
    }

    /// The limit policy these flags ask for: the safe defaults, with those given by
    /// `--default-*` replaced (`unlimited` removes one), the `--max-*` ceilings, and a
    /// built-in default above a ceiling lowered to it (a default the operator typed
    /// above it stays, and the zygote refuses to start).
    pub fn limit_policy(&self) -> LimitPolicy {
        let given = self.default_limits.limits;
        let mut ceilings = self.max_limits.limits;
        ceilings.unlimited = LimitSet::EMPTY;
        let mut defaults = SAFE_DEFAULTS;
        for kind in Limit::ALL {
            let value = if given.unlimited.contains(kind) {
                None
            } else if let Some(value) = given.get(kind) {
                Some(value)
            } else {
                match (defaults.get(kind), ceilings.get(kind)) {
                    (Some(builtin), Some(ceiling)) => Some(builtin.min(ceiling)),
                    (builtin, _) => builtin,
                }
            };
            defaults.set_limit(kind, value);
        }
        LimitPolicy {
            defaults,
            ceilings,
            allow_unlimited: self
                .allow_unlimited
                .iter()
                .flat_map(|set| set.iter())
                .collect(),
        }
    }

    /// The socket to listen on: `--socket`, else the default path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(default_socket_path)
    }

    /// Refuses veth policy flags that would be ignored: any without `--veth-pool`, and
    /// `--veth-allow`/`--veth-deny` under `--veth-policy none`.
    fn check_veth_policy(&self) -> Result<(), ServeArgsError> {
        let policy_flags = [
            ("--veth-host-port", !self.veth_host_ports.is_empty()),
            ("--veth-allow", !self.veth_allow.is_empty()),
            ("--veth-deny", !self.veth_deny.is_empty()),
            ("--veth-dns", !self.veth_dns.is_empty()),
            (
                "--veth-policy internet",
                self.veth_policy == Egress::Internet,
            ),
        ];
        for (flag, given) in policy_flags {
            if given && self.veth_pools.is_empty() {
                return Err(ServeArgsError::VethPolicy(format!(
                    "{flag} needs --veth-pool (without a pool no sandbox has a veth network)"
                )));
            }
        }
        for (flag, given) in &policy_flags[1..4] {
            if *given && self.veth_policy == Egress::None {
                return Err(ServeArgsError::VethPolicy(format!(
                    "{flag} applies to --veth-policy internet only (under `none` sandboxes reach nothing beyond their host end)"
                )));
            }
        }
        Ok(())
    }

    /// The daemon configuration these flags ask for.
    pub fn zygote_config(&self) -> Result<ZygoteConfig, ServeArgsError> {
        let mut config = ZygoteConfig::new()?;
        let mut policies = self
            .seccomp_policy
            .iter()
            .map(|spec| load_policy(spec))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        if let Some((name, policy)) = policies.next() {
            config.seccomp = policy;
            config.seccomp_name = name;
            config.more_seccomp = policies.collect();
        }
        config.allowed_opt_outs = self.allow_unsafe_disable.clone();
        config.allow_dev_binds = self.allow_dev_bind;
        config.host_ids = self.host_id_policy();
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
        self.check_veth_policy()?;
        if !self.veth_pools.is_empty() {
            config.network = Some(NetworkSettings {
                pool: self.veth_pools.clone(),
                prefix: self.veth_prefix.clone(),
                policy: Policy {
                    egress: self.veth_policy,
                    host_ports: self.veth_host_ports.clone(),
                    allow: self.veth_allow.clone(),
                    deny: self.veth_deny.clone(),
                    dns: self.veth_dns.clone(),
                },
                first_slot: 0,
            });
        }
        config.limits = self.limit_policy();
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

/// One `--seccomp-policy`: its name and the policy.
fn load_policy(spec: &Path) -> Result<(String, SeccompPolicy), ServeArgsError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = spec.as_os_str().as_bytes();
    let (name, path) = match bytes.iter().position(|&b| b == b'=') {
        Some(at) => (
            String::from_utf8_lossy(&bytes[..at]).into_owned(),
            PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[at + 1..])),
        ),
        None => (spec.to_string_lossy().into_owned(), spec.to_path_buf()),
    };
    let policy = match (spec.to_str(), name.is_empty()) {
        (Some(builtin @ ("default" | "strict")), _) => SeccompPolicy::builtin(builtin),
        (_, true) => {
            return Err(ServeArgsError::PolicyName {
                spec: spec.to_path_buf(),
            })
        }
        _ => {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ServeArgsError::ReadPolicy {
                    path: path.clone(),
                    source,
                })?;
            SeccompPolicy::from_json(&text)
        }
    };
    let policy = policy.map_err(|source| ServeArgsError::Policy { path, source })?;
    Ok((name, policy))
}

fn parse_layer(text: &str) -> Result<Layer, String> {
    Layer::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Layer::ALL.into_iter().map(Layer::name).collect();
        format!("expected one of: {}", names.join(", "))
    })
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
