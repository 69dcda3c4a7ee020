//! `hatchery run --profile FILE`: the options of `run` kept in a file, TOML or JSON (by
//! the extension), with the flags' names as keys. Flags given on the command line
//! override the profile's values; list flags (`--ro-bind`, `--bind`, `--env`,
//! `--unsafe-disable`) add to its lists, after them (a later bind mounts over an earlier
//! one), and an `--env KEY=..` replaces the profile's `KEY`. The schema is in
//! docs/profiles/README.md; every key is checked (an unknown one is an error naming it
//! and the file).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use std::ffi::OsString;

use hatchery::limits::parse_limit_or_unlimited;
use hatchery::protocol::{Layer, Limit, Limits};

use super::values::{self, Net};
use super::{Failure, RunArgs};

/// Every option of `run` but the socket, the verdict file and the command: the profile's,
/// then the flags' over them. `None` is the default.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Options {
    pub chroot: Option<PathBuf>,
    /// `(SRC[:DST], writable)` in the order they mount.
    pub binds: Vec<(String, bool)>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub hostname: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub net: Net,
    pub net_mtu: Option<u32>,
    pub net_interface: Option<String>,
    pub disable: Vec<Layer>,
    pub limits: Limits,
    pub allow_unenforced_limits: bool,
    /// `(SRC[:DST], writable)` of `--ro-bind-try`, `--bind-try`.
    pub try_binds: Vec<(String, bool)>,
    pub dev_binds: Vec<String>,
    pub tmpfs: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    /// `(points to, where)`.
    pub symlinks: Vec<(OsString, OsString)>,
    /// `(fd, where)` of `--file` (not in a profile: an fd is this process's).
    pub files: Vec<(OsString, OsString)>,
    /// `(host path, where)`.
    pub files_from: Vec<(OsString, OsString)>,
    pub seccomp_policy: Option<String>,
}

/// A profile file as written: every key optional, none unknown.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Profile {
    chroot: Option<PathBuf>,
    #[serde(default)]
    ro_bind: Vec<String>,
    #[serde(default)]
    bind: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    cwd: Option<PathBuf>,
    hostname: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    net: Option<String>,
    net_mtu: Option<u32>,
    net_interface: Option<String>,
    #[serde(default)]
    unsafe_disable: Vec<String>,
    allow_unenforced_limits: Option<bool>,
    #[serde(default)]
    ro_bind_try: Vec<String>,
    #[serde(default)]
    bind_try: Vec<String>,
    #[serde(default)]
    dev_bind: Vec<String>,
    #[serde(default)]
    tmpfs: Vec<PathBuf>,
    #[serde(default)]
    dir: Vec<PathBuf>,
    /// `[SRC, DST]` pairs.
    #[serde(default)]
    symlink: Vec<[String; 2]>,
    /// `[PATH, DST]` pairs.
    #[serde(default)]
    file_from: Vec<[String; 2]>,
    seccomp_policy: Option<String>,
    memory: Option<Value>,
    pids: Option<Value>,
    cpus: Option<Value>,
    cpu_time: Option<Value>,
    wall_time: Option<Value>,
    file_size: Option<Value>,
    nofile: Option<Value>,
    tmp_size: Option<Value>,
    tmp_inodes: Option<Value>,
}

/// A limit as written: `"256M"`, `64`, `0.5`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Value {
    Text(String),
    Whole(i64),
    Decimal(f64),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Text(text) => text.clone(),
            Value::Whole(n) => n.to_string(),
            Value::Decimal(x) => x.to_string(),
        }
    }
}

/// Reads the profile at `path` (as typed, from the current directory).
pub fn load(path: &Path) -> Result<Options, Failure> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::hatchery(format!(
            "--profile {shown}: cannot read it: {}",
            super::report::io_reason(&e)
        ))
    })?;
    let json = path.extension().is_some_and(|ext| ext == "json");
    let profile: Profile = if json {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str(&text).map_err(|e| e.message().to_string())
    }
    .map_err(|e| Failure::hatchery(format!("--profile {shown}: {e}")))?;
    profile
        .options()
        .map_err(|e| Failure::hatchery(format!("--profile {shown}: {e}")))
}

impl Profile {
    fn options(self) -> Result<Options, String> {
        let mut limits = Limits::default();
        for (kind, value) in [
            (Limit::Memory, &self.memory),
            (Limit::Pids, &self.pids),
            (Limit::Cpu, &self.cpus),
            (Limit::CpuTime, &self.cpu_time),
            (Limit::WallTime, &self.wall_time),
            (Limit::FileSize, &self.file_size),
            (Limit::OpenFiles, &self.nofile),
            (Limit::TmpSize, &self.tmp_size),
            (Limit::TmpInodes, &self.tmp_inodes),
        ] {
            if let Some(value) = value {
                let text = value.text();
                match parse_limit_or_unlimited(kind, &text)
                    .map_err(|e| format!("{} = {text:?}: {e}", kind))?
                {
                    Some(parsed) => limits.set_limit(kind, Some(parsed)),
                    None => limits.unlimited.insert(kind),
                }
            }
        }
        let net = match &self.net {
            Some(text) => values::parse_net(text).map_err(|e| format!("net = {text:?}: {e}"))?,
            None => Net::None,
        };
        let disable = self
            .unsafe_disable
            .iter()
            .map(|text| {
                values::parse_layer(text).map_err(|e| format!("unsafe-disable {text:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let binds = (self.ro_bind.into_iter().map(|b| (b, false)))
            .chain(self.bind.into_iter().map(|b| (b, true)))
            .collect();
        Ok(Options {
            chroot: self.chroot,
            binds,
            env: self.env,
            cwd: self.cwd,
            hostname: self.hostname,
            uid: self.uid,
            gid: self.gid,
            net,
            net_mtu: self.net_mtu,
            net_interface: self.net_interface,
            disable,
            limits,
            allow_unenforced_limits: self.allow_unenforced_limits.unwrap_or(false),
            try_binds: (self.ro_bind_try.into_iter().map(|b| (b, false)))
                .chain(self.bind_try.into_iter().map(|b| (b, true)))
                .collect(),
            dev_binds: self.dev_bind,
            tmpfs: self.tmpfs,
            dirs: self.dir,
            symlinks: pairs(self.symlink),
            files: Vec::new(),
            files_from: pairs(self.file_from),
            seccomp_policy: self.seccomp_policy,
        })
    }
}

fn pairs(pairs: Vec<[String; 2]>) -> Vec<(OsString, OsString)> {
    pairs
        .into_iter()
        .map(|[a, b]| (a.into(), b.into()))
        .collect()
}

/// `--symlink SRC DST`-style flags, two values each, as pairs.
fn flag_pairs(values: &[OsString]) -> impl Iterator<Item = (OsString, OsString)> + '_ {
    values
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
}

impl Options {
    /// These options with the flags of `args` over them.
    pub fn overridden_by(mut self, args: &RunArgs) -> Options {
        fn take<T: Clone>(slot: &mut Option<T>, flag: &Option<T>) {
            if flag.is_some() {
                slot.clone_from(flag);
            }
        }
        take(&mut self.chroot, &args.chroot);
        take(&mut self.cwd, &args.cwd);
        take(&mut self.hostname, &args.hostname);
        take(&mut self.uid, &args.uid);
        take(&mut self.gid, &args.gid);
        take(&mut self.net_mtu, &args.net_mtu);
        take(&mut self.net_interface, &args.net_interface);
        if let Some(net) = args.net {
            self.net = net;
        }
        self.binds
            .extend(args.ro_binds.iter().map(|b| (b.clone(), false)));
        self.binds
            .extend(args.binds.iter().map(|b| (b.clone(), true)));
        for entry in &args.env {
            self.set_env(entry);
        }
        for layer in &args.disable {
            if !self.disable.contains(layer) {
                self.disable.push(*layer);
            }
        }
        self.set_limits(&args.limits.limits);
        self.allow_unenforced_limits |= args.allow_unenforced_limits;
        self.try_binds
            .extend(args.ro_bind_tries.iter().map(|b| (b.clone(), false)));
        self.try_binds
            .extend(args.bind_tries.iter().map(|b| (b.clone(), true)));
        self.dev_binds.extend(args.dev_binds.iter().cloned());
        self.tmpfs.extend(args.tmpfs.iter().cloned());
        self.dirs.extend(args.dirs.iter().cloned());
        self.symlinks.extend(flag_pairs(&args.symlinks));
        self.files.extend(flag_pairs(&args.files));
        self.files_from.extend(flag_pairs(&args.files_from));
        take(&mut self.seccomp_policy, &args.seccomp_policy);
        self
    }

    /// Sets `KEY=VALUE`, replacing an earlier `KEY` (as `--env` over a profile does).
    pub fn set_env(&mut self, entry: &str) {
        let key = entry.split_once('=').map_or(entry, |(key, _)| key);
        self.env
            .retain(|old| old.split_once('=').map_or(old.as_str(), |(k, _)| k) != key);
        self.env.push(entry.to_string());
    }

    /// The limits given in `flags` (a value, or `unlimited`) over these.
    pub fn set_limits(&mut self, flags: &Limits) {
        for kind in Limit::ALL {
            if let Some(value) = flags.get(kind) {
                self.limits.set_limit(kind, Some(value));
                self.limits.unlimited.remove(kind);
            } else if flags.unlimited.contains(kind) {
                self.limits.set_limit(kind, None);
                self.limits.unlimited.insert(kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_toml(text: &str) -> Result<Options, String> {
        toml::from_str::<Profile>(text)
            .map_err(|e| e.message().to_string())?
            .options()
    }

    #[test]
    fn keys_are_the_flags_names() {
        let options = parse_toml(
            r#"
            memory = "64M"
            pids = 32
            cpus = 0.5
            wall-time = "2s"
            ro-bind = ["/srv:/data"]
            bind = ["/tmp/out:/out"]
            env = ["PATH=/usr/bin"]
            cwd = "/data"
            net = "veth"
            net-mtu = 1400
            unsafe-disable = ["seccomp"]
            allow-unenforced-limits = true
            "#,
        )
        .unwrap();
        assert_eq!(options.limits.memory_bytes, Some(64 << 20));
        assert_eq!(options.limits.pids, Some(32));
        assert_eq!(options.limits.cpu_millicores, Some(500));
        assert_eq!(options.limits.wall_time_ms, Some(2000));
        assert_eq!(
            options.binds,
            [("/srv:/data".into(), false), ("/tmp/out:/out".into(), true)]
        );
        assert_eq!(options.net, Net::Veth);
        assert_eq!(options.net_mtu, Some(1400));
        assert_eq!(options.disable, [Layer::Seccomp]);
        assert!(options.allow_unenforced_limits);
    }

    /// Every profile shipped in docs/profiles/ loads and makes a request the daemon's
    /// checks accept (tests/cli.rs runs those that need no veth pool).
    #[test]
    fn an_unknown_key_is_named() {
        let error = parse_toml("memroy = \"64M\"").err().unwrap();
        assert!(error.contains("memroy"), "{error}");
        let error = parse_toml("memory = \"64\"").err().unwrap();
        assert!(error.contains("did you mean 64M?"), "{error}");
        let error = parse_toml("wall-time = -1").err().unwrap();
        assert!(error.contains("cannot be negative"), "{error}");
    }
}
