//! The flags of `hatchery serve`, in one definition that the `hatchery` command and every
//! custom zygote ([`crate::ZygoteBuilder::serve_from_args`]) share. Runs in the zygote
//! process, before it serves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{
    Access, ConnectionLimits, HostIdPolicy, HostIdRange, Reloader, SandboxBounds, WarmPoolConfig,
    ZygoteConfig, ZygoteError, DEFAULT_MAX_CHILDREN,
};
use crate::client::default_socket_path;
use crate::limits::{DefaultPrefix, LimitFlags, LimitPolicy, MaxPrefix, SAFE_DEFAULTS};
use crate::network::{Cidr, Egress, HostPort, NetworkSettings, Policy};
use crate::protocol::{Layer, Limit, LimitSet, Limits};
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
    /// The `--limits-file` cannot be read or holds something else than limits.
    #[error("--limits-file {path:?}: {message}")]
    LimitsFile {
        /// The file, as given.
        path: PathBuf,
        /// What is wrong.
        message: String,
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
#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Socket to listen on [default: $HATCHERY_SOCKET, else /run/hatchery/hatchery.sock as root,
    /// else $XDG_RUNTIME_DIR/hatchery.sock, else /tmp/hatchery-UID.sock]
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also allow members of this group (name or gid); the socket becomes mode 0660.
    #[arg(long, env = "HATCHERY_GROUP")]
    pub group: Option<String>,
    /// Also allow this uid (repeatable). Root and the daemon's own uid are always allowed.
    #[arg(
        long = "allow-uid",
        value_name = "UID",
        value_delimiter = ',',
        env = "HATCHERY_ALLOW_UID"
    )]
    pub allow_uids: Vec<u32>,
    /// Give each live sandbox its own host uid and gid (the same number) from COUNT ids
    /// at START; checked against the host's users, groups and /etc/subuid and
    /// /etc/subgid [default, as root: 1879048192:65536].
    #[arg(long, value_name = "START:COUNT", conflicts_with_all = ["host_uid", "host_gid"], env = "HATCHERY_HOST_UID_RANGE")]
    pub host_uid_range: Option<HostIdRange>,
    /// Run every sandbox as this one host uid instead (files a job writes into a bind
    /// then belong to it) [default: a uid of its own per sandbox as root, else your own].
    #[arg(long, env = "HATCHERY_HOST_UID")]
    pub host_uid: Option<u32>,
    /// The host gid to go with --host-uid [default: 65534 as root, else your own].
    #[arg(long, env = "HATCHERY_HOST_GID")]
    pub host_gid: Option<u32>,
    /// A seccomp policy requests may pick by name (`run --seccomp-policy NAME`);
    /// repeatable, the first is the default: `default` (built in, a denylist), `strict`
    /// (built in, an allowlist), `NAME=FILE` (a policy file, picked as NAME) or the path
    /// of a policy file (picked by that path; write `./strict` for a file so named)
    /// [default: `default`, then `strict`].
    #[arg(
        long,
        value_name = "default|strict|NAME=FILE|FILE",
        env = "HATCHERY_SECCOMP_POLICY"
    )]
    pub seccomp_policy: Vec<PathBuf>,
    /// Let requests switch off these layers (`run --unsafe-disable LAYER`): `seccomp`,
    /// `network-namespace` (comma-separated or repeated). Without it, such a request is
    /// refused.
    #[arg(
        long,
        value_name = "LAYER[,LAYER]",
        value_delimiter = ',',
        value_parser = parse_layer,
        env = "HATCHERY_ALLOW_UNSAFE_DISABLE",
    )]
    pub allow_unsafe_disable: Vec<Layer>,
    /// Let requests bind host paths with their device nodes usable (`run --dev-bind`).
    /// Without it, such a request is refused.
    #[arg(long, env = "HATCHERY_ALLOW_DEV_BIND", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_dev_bind: bool,
    /// The most sandboxes alive at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CHILDREN, env = "HATCHERY_MAX_CHILDREN")]
    pub max_children: usize,
    /// The most client connections at once; more are answered Busy and closed
    /// [default: half the open-files limit, at most 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), env = "HATCHERY_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// The most client connections at once from one uid [default: a quarter of
    /// --max-connections].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), env = "HATCHERY_MAX_CONNECTIONS_PER_UID")]
    pub max_connections_per_uid: Option<u32>,
    /// The most persistent sandboxes (`hatchery sandbox create`) alive at once, in all.
    #[arg(long, value_name = "N", default_value_t = SandboxBounds::default().total, env = "HATCHERY_MAX_SANDBOXES")]
    pub max_sandboxes: usize,
    /// The most persistent sandboxes alive at once created by one uid.
    #[arg(long, value_name = "N", default_value_t = SandboxBounds::default().per_uid, env = "HATCHERY_MAX_SANDBOXES_PER_UID")]
    pub max_sandboxes_per_uid: usize,
    /// Keep N sandboxes of each pooled shape pre-created: a matching spawn skips the
    /// clone, id maps and root; the rest take the normal path.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        env = "HATCHERY_WARM_POOL"
    )]
    pub warm_pool: usize,
    /// A pooled shape: a JSON file holding the sandbox config fields that differ from
    /// the default (repeatable) [default: the default sandbox].
    #[arg(long, value_name = "FILE", env = "HATCHERY_WARM_POOL_SHAPE")]
    pub warm_pool_shape: Vec<PathBuf>,
    #[command(flatten)]
    pub default_limits: LimitFlags<DefaultPrefix>,
    #[command(flatten)]
    pub max_limits: LimitFlags<MaxPrefix>,
    /// Let requests lift these defaults (`run --pids unlimited`): comma-separated limit
    /// names, or `all` [default: none; a request asking to is refused].
    #[arg(long, value_name = "LIMIT[,LIMIT]", value_delimiter = ',', value_parser = parse_limit_kind, env = "HATCHERY_ALLOW_UNLIMITED")]
    pub allow_unlimited: Vec<LimitSet>,
    /// Read limit defaults and ceilings from FILE (TOML: `default-memory = "256M"`,
    /// `max-wall-time = "10m"`, ... as the flags), at start and again on SIGHUP; the
    /// --default-* and --max-* flags win over it.
    #[arg(long, value_name = "FILE", env = "HATCHERY_LIMITS_FILE")]
    pub limits_file: Option<PathBuf>,
    /// On SIGTERM or SIGINT, stop accepting and let running sandboxes go on this long
    /// (e.g. 30s) before killing them (`daemon_shutdown`); a second signal kills them at
    /// once.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_grace, env = "HATCHERY_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,
    /// Serve Prometheus metrics (spawns, failures by kind, spawn latency, live
    /// sandboxes, pool hits and misses, sandboxes ended by reason, the daemon's memory)
    /// over HTTP at ADDR:PORT/metrics, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, value_name = "ADDR:PORT", env = "HATCHERY_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Give sandboxes that ask for one a veth network, each a /30 (IPv4) and a /126
    /// (IPv6) of CIDR: one IPv4 and/or one IPv6 range (repeat the flag for both).
    /// Without it, requests for a veth network are refused.
    #[arg(
        long = "veth-pool",
        value_name = "CIDR",
        value_delimiter = ',',
        env = "HATCHERY_VETH_POOL"
    )]
    pub veth_pools: Vec<Cidr>,
    /// Name the host ends PREFIX plus a counter (at most 8 bytes of [a-z0-9_-]). Veths
    /// named so are this daemon's: it removes those a previous run left when it starts.
    #[arg(long, value_name = "PREFIX", default_value = crate::network::DEFAULT_PREFIX, env = "HATCHERY_VETH_PREFIX")]
    pub veth_prefix: String,
    /// What veth sandboxes may reach beyond their host end: `none` (nothing) or
    /// `internet` (through NAT; never private, local or multicast ranges, the host's own
    /// addresses or other sandboxes). Enforced in an nftables table of the daemon's;
    /// see docs/networking.md.
    #[arg(long, value_name = "POLICY", default_value = "none", value_parser = parse_egress, env = "HATCHERY_VETH_POLICY")]
    pub veth_policy: Egress,
    /// A port of its own host end that a veth sandbox may reach, `PORT/tcp` or
    /// `PORT/udp` (repeatable) [default: none].
    #[arg(
        long = "veth-host-port",
        value_name = "PORT/PROTO",
        value_delimiter = ',',
        env = "HATCHERY_VETH_HOST_PORT"
    )]
    pub veth_host_ports: Vec<HostPort>,
    /// Let `internet` sandboxes reach CIDR although the deny list has it (repeatable);
    /// never the pool or the host's own addresses.
    #[arg(
        long = "veth-allow",
        value_name = "CIDR",
        value_delimiter = ',',
        env = "HATCHERY_VETH_ALLOW"
    )]
    pub veth_allow: Vec<Cidr>,
    /// Refuse `internet` sandboxes CIDR, beyond the built-in deny list (repeatable).
    #[arg(
        long = "veth-deny",
        value_name = "CIDR",
        value_delimiter = ',',
        env = "HATCHERY_VETH_DENY"
    )]
    pub veth_deny: Vec<Cidr>,
    /// The resolver `internet` sandboxes get in their own /etc/resolv.conf (repeatable;
    /// its port 53 is reachable whatever the deny list says) [default: the host's
    /// resolvers that a sandbox can reach, if any].
    #[arg(
        long = "veth-dns",
        value_name = "IP",
        value_delimiter = ',',
        env = "HATCHERY_VETH_DNS"
    )]
    pub veth_dns: Vec<std::net::IpAddr>,
    /// How to write the log to stderr: `text` (`key=value` fields, coloured only on a
    /// terminal) or `json` (one object per line, for log collectors). `RUST_LOG` sets
    /// the level [default: info].
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text, env = "HATCHERY_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `--shutdown-grace`: a duration as the limits take it (`30s`, `2m`, `0`).
fn parse_grace(text: &str) -> Result<Duration, String> {
    crate::limits::parse_duration_ms(text)
        .map(Duration::from_millis)
        .map_err(|e| e.to_string())
}

/// The `--limits-file`: `default-LIMIT` and `max-LIMIT` keys, each a value as its flag
/// takes it (a string, or a number for counts), or `"unlimited"`.
fn read_limits_file(path: &Path) -> Result<(Limits, Limits), ServeArgsError> {
    let fail = |message: String| ServeArgsError::LimitsFile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let (mut defaults, mut ceilings) = (Limits::default(), Limits::default());
    for (key, value) in table {
        let (slot, name) = match (key.strip_prefix("default-"), key.strip_prefix("max-")) {
            (Some(name), _) => (&mut defaults, name),
            (_, Some(name)) => (&mut ceilings, name),
            _ => {
                return Err(fail(format!(
                    "{key:?} is neither default-LIMIT nor max-LIMIT"
                )))
            }
        };
        let kind = Limit::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| fail(format!("{key:?}: no limit is called {name:?}")))?;
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            other => {
                return Err(fail(format!(
                    "{key:?}: a {} is not a limit",
                    other.type_str()
                )))
            }
        };
        match crate::limits::parse_limit_or_unlimited(kind, &text) {
            Ok(Some(value)) => slot.set_limit(kind, Some(value)),
            Ok(None) => slot.unlimited.insert(kind),
            Err(e) => return Err(fail(format!("{key:?}: {e}"))),
        }
    }
    Ok((defaults, ceilings))
}

/// `flags` over `file`: a limit the flags give (or lift) wins.
fn flags_over(file: Limits, flags: Limits) -> Limits {
    let mut merged = file;
    for kind in Limit::ALL {
        if flags.unlimited.contains(kind) {
            merged.set_limit(kind, None);
            merged.unlimited.insert(kind);
        } else if let Some(value) = flags.get(kind) {
            merged.set_limit(kind, Some(value));
            merged.unlimited.remove(kind);
        }
    }
    merged
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
        self.policy_from(self.default_limits.limits, self.max_limits.limits)
    }

    /// The limit policy of `--limits-file` (read now) with the flags over it.
    pub fn limit_policy_with_file(&self) -> Result<LimitPolicy, ServeArgsError> {
        let Some(path) = &self.limits_file else {
            return Ok(self.limit_policy());
        };
        let (defaults, ceilings) = read_limits_file(path)?;
        Ok(self.policy_from(
            flags_over(defaults, self.default_limits.limits),
            flags_over(ceilings, self.max_limits.limits),
        ))
    }

    fn policy_from(&self, given: Limits, ceilings: Limits) -> LimitPolicy {
        let mut ceilings = ceilings;
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

    /// What a reload (SIGHUP) takes: the seccomp policies (their files read again) and
    /// the limit policy (`--limits-file` read again, the flags over it).
    fn reloadable(&self) -> Result<ZygoteConfig, ServeArgsError> {
        let mut config = ZygoteConfig::new()?;
        self.load_policies(&mut config)?;
        config.limits = self.limit_policy_with_file()?;
        Ok(config)
    }

    fn load_policies(&self, config: &mut ZygoteConfig) -> Result<(), ServeArgsError> {
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
        Ok(())
    }

    /// The daemon configuration these flags ask for; SIGHUP reloads its seccomp policy
    /// files and `--limits-file`.
    pub fn zygote_config(&self) -> Result<ZygoteConfig, ServeArgsError> {
        let mut config = ZygoteConfig::new()?;
        self.load_policies(&mut config)?;
        let again = self.clone();
        config.reload = Some(Reloader::new(move || {
            again.reloadable().map_err(|e| crate::error_chain(&e))
        }));
        config.shutdown_grace = self.shutdown_grace;
        config.metrics = self.metrics;
        config.allowed_opt_outs = self.allow_unsafe_disable.clone();
        config.allow_dev_binds = self.allow_dev_bind;
        config.host_ids = self.host_id_policy();
        config.access = Access {
            extra_uids: self.allow_uids.clone(),
            group: self.group.as_deref().map(resolve_group).transpose()?,
        };
        config.max_children = self.max_children;
        config.sandboxes = SandboxBounds {
            total: self.max_sandboxes,
            per_uid: self.max_sandboxes_per_uid,
        };
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
        config.limits = self.limit_policy_with_file()?;
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
