//! The contract of a spawn request beyond its encoding: what each field may hold. Runs
//! in the zygote, which checks every request here before anything is cloned, so that a
//! bad one gets a clear error naming the field rather than a failed setup step; the
//! daemon's limit policy is checked against the same rules at start-up. Pure logic, no
//! I/O: it lives beside the wire types because it is part of what they mean.

use std::path::{Component, Path};

use crate::protocol::{Command, Limit, Limits, Mount, OsBytes, SpawnRequest};

/// The longest hostname the kernel accepts.
const HOST_NAME_MAX: usize = 64;

/// The smallest MTU a request may ask for (IPv6's minimum).
pub const MIN_MTU: u32 = 1280;
/// The largest MTU a request may ask for (veth's maximum).
pub const MAX_MTU: u32 = 65535;

/// The most entries of [`SandboxConfig::mounts`](crate::protocol::SandboxConfig::mounts)
/// a request may have.
pub const MAX_MOUNTS: usize = 256;
/// The most bytes a request's [`Mount::File`]s may hold together.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// The longest symlink target the kernel takes, less its NUL.
const MAX_SYMLINK_BYTES: usize = 4095;

/// Why a request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// The program is empty.
    #[error("the program is empty")]
    EmptyProgram,
    /// A string holds a NUL byte, which no system call can take.
    #[error("{field} contains a NUL byte")]
    NulByte {
        /// Which field.
        field: &'static str,
    },
    /// A path must be absolute and free of `..`.
    #[error("{field} must be an absolute path without \"..\": {path}")]
    BadPath {
        /// Which field.
        field: &'static str,
        /// The offending path.
        path: OsBytes,
    },
    /// A bind may not cover the whole root.
    #[error("a bind cannot target \"/\"; use chroot_dir for a different root")]
    BindOverRoot,
    /// Nothing else may be mounted or made at the root either.
    #[error("{0} cannot target \"/\"")]
    MountOverRoot(&'static str),
    /// More mounts than [`MAX_MOUNTS`].
    #[error("{0} mounts, more than the {MAX_MOUNTS} a request may have")]
    TooManyMounts(usize),
    /// The files' contents are larger than [`MAX_FILE_BYTES`] together.
    #[error("the files hold {0} bytes, more than the {MAX_FILE_BYTES} a request may carry")]
    FilesTooLarge(usize),
    /// A symlink must point somewhere.
    #[error("a symlink's target must be 1 to {MAX_SYMLINK_BYTES} bytes")]
    BadSymlink,
    /// An environment entry has an empty name or a `=` in its name.
    #[error("invalid environment variable name {0:?}")]
    BadEnvName(OsBytes),
    /// The hostname is empty or too long.
    #[error("the hostname must be 1 to {HOST_NAME_MAX} bytes")]
    BadHostname,
    /// A limit of zero (only a file size may be 0).
    #[error("the {0} limit must be above zero")]
    ZeroLimit(crate::protocol::Limit),
    /// A limit both given a value and asked to be lifted.
    #[error("the {0} limit is both set and asked to be unlimited")]
    LimitAndUnlimited(crate::protocol::Limit),
    /// Fewer open files than the workload's stdio needs.
    #[error("the nofile limit must be at least 3 (stdin, stdout and stderr)")]
    TooFewOpenFiles,
    /// The sandbox ids must not be root (0) or the invalid id (`u32::MAX`).
    #[error("sandbox uid and gid must be neither 0 nor {}", u32::MAX)]
    BadIds,
    /// A veth network needs the sandbox's own network namespace.
    #[error("a veth network needs the network namespace layer, which the request switches off")]
    VethWithoutNamespace,
    /// The sandbox's interface name is not one the kernel takes, or is `lo`.
    #[error(
        "invalid interface name {0:?}: 1 to 15 bytes, no '/', ':', whitespace or NUL, not \"lo\""
    )]
    BadInterfaceName(String),
    /// The MTU is out of range.
    #[error("the veth MTU must be {MIN_MTU} to {MAX_MTU}, not {0}")]
    BadMtu(u32),
}

/// Checks every field of `request` that the sandbox would trip over.
///
/// ```
/// use hatchery::protocol::SpawnRequest;
/// use hatchery::protocol::validate::{validate, InvalidRequest};
/// assert!(validate(&SpawnRequest::new("/bin/true")).is_ok());
/// assert_eq!(validate(&SpawnRequest::new("")), Err(InvalidRequest::EmptyProgram));
/// ```
pub fn validate(request: &SpawnRequest) -> Result<(), InvalidRequest> {
    match &request.command {
        Command::Exec { program, argv } => {
            if program.as_bytes().is_empty() {
                return Err(InvalidRequest::EmptyProgram);
            }
            no_nul("program", program)?;
            for arg in argv {
                no_nul("an argument", arg)?;
            }
        }
        // Whether the zygote has it, and whether the arguments decode, is the zygote's
        // to say: it knows its entries.
        Command::Entry { .. } => {}
    }
    for (key, value) in &request.env {
        if key.as_bytes().is_empty() || key.as_bytes().contains(&b'=') {
            return Err(InvalidRequest::BadEnvName(key.clone()));
        }
        no_nul("an environment variable", key)?;
        no_nul("an environment variable", value)?;
    }
    absolute_path("cwd", &request.cwd)?;

    let sandbox = &request.sandbox;
    if let Some(dir) = &sandbox.chroot_dir {
        absolute_path("chroot_dir", dir)?;
    }
    for bind in &sandbox.binds {
        absolute_path("a bind source", &bind.source)?;
        absolute_path("a bind target", &bind.target)?;
        if is_root(&bind.target) {
            return Err(InvalidRequest::BindOverRoot);
        }
    }
    check_mounts(&sandbox.mounts)?;
    if let Some(name) = &sandbox.seccomp_policy {
        if name.contains('\0') {
            return Err(InvalidRequest::NulByte {
                field: "seccomp_policy",
            });
        }
    }
    if sandbox.hostname.is_empty() || sandbox.hostname.len() > HOST_NAME_MAX {
        return Err(InvalidRequest::BadHostname);
    }
    if sandbox.hostname.contains('\0') {
        return Err(InvalidRequest::NulByte { field: "hostname" });
    }
    check_limits(&sandbox.limits)?;
    for id in [sandbox.uid, sandbox.gid] {
        if id == 0 || id == u32::MAX {
            return Err(InvalidRequest::BadIds);
        }
    }
    check_network(sandbox)
}

/// The extra mounts: a bounded number, absolute paths without `..`, none at the root,
/// symlinks that point somewhere, files of bounded size.
fn check_mounts(mounts: &[Mount]) -> Result<(), InvalidRequest> {
    if mounts.len() > MAX_MOUNTS {
        return Err(InvalidRequest::TooManyMounts(mounts.len()));
    }
    let mut file_bytes = 0;
    for mount in mounts {
        let kind = match mount {
            Mount::BindIfExists(bind) => {
                absolute_path("a bind source", &bind.source)?;
                "a bind"
            }
            Mount::DevBind { source, .. } => {
                absolute_path("a dev-bind source", source)?;
                "a dev-bind"
            }
            Mount::Tmpfs { .. } => "a tmpfs",
            Mount::Dir { .. } => "a dir",
            Mount::Symlink { points_to, .. } => {
                no_nul("a symlink's target", points_to)?;
                if !(1..=MAX_SYMLINK_BYTES).contains(&points_to.as_bytes().len()) {
                    return Err(InvalidRequest::BadSymlink);
                }
                "a symlink"
            }
            Mount::File { contents, .. } => {
                file_bytes += contents.len();
                "a file"
            }
        };
        let target = mount.target();
        absolute_path(target_field(kind), target)?;
        if is_root(target) {
            return Err(InvalidRequest::MountOverRoot(kind));
        }
    }
    if file_bytes > MAX_FILE_BYTES {
        return Err(InvalidRequest::FilesTooLarge(file_bytes));
    }
    Ok(())
}

/// The field name of a mount's target, for [`InvalidRequest::BadPath`].
fn target_field(kind: &'static str) -> &'static str {
    match kind {
        "a bind" => "a bind target",
        "a dev-bind" => "a dev-bind target",
        "a tmpfs" => "a tmpfs target",
        "a dir" => "a dir target",
        "a symlink" => "a symlink's path",
        _ => "a file target",
    }
}

fn is_root(path: &OsBytes) -> bool {
    path.as_path().components().all(|c| c == Component::RootDir)
}

/// A veth network: in the sandbox's own namespace, a name the kernel takes, a sane MTU.
fn check_network(sandbox: &crate::protocol::SandboxConfig) -> Result<(), InvalidRequest> {
    let crate::protocol::NetworkConfig::Veth(veth) = &sandbox.network else {
        return Ok(());
    };
    if sandbox
        .opt_out
        .contains(&crate::protocol::Layer::NetworkNamespace)
    {
        return Err(InvalidRequest::VethWithoutNamespace);
    }
    if let Some(name) = &veth.interface {
        if !valid_interface_name(name) || name == "lo" {
            return Err(InvalidRequest::BadInterfaceName(name.clone()));
        }
    }
    if let Some(mtu) = veth.mtu {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(InvalidRequest::BadMtu(mtu));
        }
    }
    Ok(())
}

/// Checks limit values: none zero (but a file size), at least 3 open files, none both
/// set and unlimited.
pub fn check_limits(limits: &Limits) -> Result<(), InvalidRequest> {
    for kind in limits.set() {
        if limits.get(kind) == Some(0) && kind != Limit::FileSize {
            return Err(InvalidRequest::ZeroLimit(kind));
        }
        if limits.unlimited.contains(kind) {
            return Err(InvalidRequest::LimitAndUnlimited(kind));
        }
    }
    if limits.open_files.is_some_and(|files| files < 3) {
        return Err(InvalidRequest::TooFewOpenFiles);
    }
    Ok(())
}

/// Whether `name` is an interface name the kernel takes: 1 to 15 bytes, none of them
/// `/`, `:`, whitespace or NUL, and not `.` or `..`.
///
/// ```
/// use hatchery::protocol::validate::valid_interface_name;
/// assert!(valid_interface_name("eth0"));
/// assert!(!valid_interface_name("a/b"));
/// assert!(!valid_interface_name("sixteen-bytes-xx"));
/// ```
pub fn valid_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

fn no_nul(field: &'static str, bytes: &OsBytes) -> Result<(), InvalidRequest> {
    if bytes.as_bytes().contains(&0) {
        return Err(InvalidRequest::NulByte { field });
    }
    Ok(())
}

fn absolute_path(field: &'static str, path: &OsBytes) -> Result<(), InvalidRequest> {
    no_nul(field, path)?;
    let p = Path::new(path.as_os_str());
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(InvalidRequest::BadPath {
            field,
            path: path.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Bind, SandboxConfig};

    fn with_sandbox(sandbox: SandboxConfig) -> SpawnRequest {
        SpawnRequest::new("/bin/true").sandbox(sandbox)
    }

    #[test]
    fn accepts_a_plain_request() {
        let request = SpawnRequest::new("echo")
            .arg("hi")
            .env("A", "b=c")
            .cwd("/tmp");
        assert_eq!(validate(&request), Ok(()));
    }

    #[test]
    fn refuses_nul_bytes_anywhere() {
        assert_eq!(
            validate(&SpawnRequest::new("/bin/t\0rue")),
            Err(InvalidRequest::NulByte { field: "program" })
        );
        assert_eq!(
            validate(&SpawnRequest::new("/bin/true").arg("a\0b")),
            Err(InvalidRequest::NulByte {
                field: "an argument"
            })
        );
        assert_eq!(
            validate(&SpawnRequest::new("/bin/true").env("A", "\0")),
            Err(InvalidRequest::NulByte {
                field: "an environment variable"
            })
        );
    }

    #[test]
    fn refuses_bad_environment_names() {
        for name in ["", "A=B"] {
            assert!(matches!(
                validate(&SpawnRequest::new("/bin/true").env(name, "x")),
                Err(InvalidRequest::BadEnvName(_))
            ));
        }
    }

    #[test]
    fn refuses_relative_and_escaping_paths() {
        assert!(matches!(
            validate(&SpawnRequest::new("/bin/true").cwd("tmp")),
            Err(InvalidRequest::BadPath { field: "cwd", .. })
        ));
        let chroot = SandboxConfig {
            chroot_dir: Some("/srv/../etc".into()),
            ..Default::default()
        };
        assert!(matches!(
            validate(&with_sandbox(chroot)),
            Err(InvalidRequest::BadPath {
                field: "chroot_dir",
                ..
            })
        ));
        let bind = SandboxConfig {
            binds: vec![Bind::read_only("/srv", "data")],
            ..Default::default()
        };
        assert!(matches!(
            validate(&with_sandbox(bind)),
            Err(InvalidRequest::BadPath {
                field: "a bind target",
                ..
            })
        ));
    }

    #[test]
    fn refuses_a_bind_over_the_root() {
        let bind = SandboxConfig {
            binds: vec![Bind::writable("/srv", "//")],
            ..Default::default()
        };
        assert_eq!(
            validate(&with_sandbox(bind)),
            Err(InvalidRequest::BindOverRoot)
        );
    }

    #[test]
    fn checks_every_kind_of_mount() {
        use crate::protocol::Mount;
        let with_mounts = |mounts: Vec<Mount>| {
            with_sandbox(SandboxConfig {
                mounts,
                ..Default::default()
            })
        };
        let good = vec![
            Mount::BindIfExists(Bind::read_only("/maybe", "/maybe")),
            Mount::DevBind {
                source: "/dev/fuse".into(),
                target: "/dev/fuse".into(),
            },
            Mount::Tmpfs {
                target: "/scratch".into(),
            },
            Mount::Dir {
                target: "/a/b".into(),
            },
            Mount::Symlink {
                points_to: "../relative".into(),
                target: "/link".into(),
            },
            Mount::File {
                contents: b"x".to_vec(),
                target: "/etc/x".into(),
            },
        ];
        assert_eq!(validate(&with_mounts(good)), Ok(()));
        assert!(matches!(
            validate(&with_mounts(vec![Mount::Tmpfs {
                target: "scratch".into()
            }])),
            Err(InvalidRequest::BadPath {
                field: "a tmpfs target",
                ..
            })
        ));
        assert!(matches!(
            validate(&with_mounts(vec![Mount::DevBind {
                source: "/dev/../etc".into(),
                target: "/x".into()
            }])),
            Err(InvalidRequest::BadPath {
                field: "a dev-bind source",
                ..
            })
        ));
        assert_eq!(
            validate(&with_mounts(vec![Mount::Dir { target: "/".into() }])),
            Err(InvalidRequest::MountOverRoot("a dir"))
        );
        assert_eq!(
            validate(&with_mounts(vec![Mount::Symlink {
                points_to: "".into(),
                target: "/l".into()
            }])),
            Err(InvalidRequest::BadSymlink)
        );
        let many = (0..=MAX_MOUNTS)
            .map(|i| Mount::Dir {
                target: format!("/d{i}").as_str().into(),
            })
            .collect();
        assert_eq!(
            validate(&with_mounts(many)),
            Err(InvalidRequest::TooManyMounts(MAX_MOUNTS + 1))
        );
        let big = vec![
            Mount::File {
                contents: vec![0; MAX_FILE_BYTES],
                target: "/a".into(),
            },
            Mount::File {
                contents: vec![0; 1],
                target: "/b".into(),
            },
        ];
        assert_eq!(
            validate(&with_mounts(big)),
            Err(InvalidRequest::FilesTooLarge(MAX_FILE_BYTES + 1))
        );
    }

    #[test]
    fn refuses_zero_limits_but_a_zero_file_size() {
        use crate::protocol::Limits;
        let zero_memory = SandboxConfig {
            limits: Limits {
                memory_bytes: Some(0),
                ..Limits::default()
            },
            ..Default::default()
        };
        assert_eq!(
            validate(&with_sandbox(zero_memory)),
            Err(InvalidRequest::ZeroLimit(Limit::Memory))
        );
        let zero_fsize = SandboxConfig {
            limits: Limits {
                file_size_bytes: Some(0),
                ..Limits::default()
            },
            ..Default::default()
        };
        assert_eq!(validate(&with_sandbox(zero_fsize)), Ok(()));
        let both = SandboxConfig {
            limits: Limits {
                pids: Some(8),
                unlimited: [Limit::Pids].into_iter().collect(),
                ..Limits::default()
            },
            ..Default::default()
        };
        assert_eq!(
            validate(&with_sandbox(both)),
            Err(InvalidRequest::LimitAndUnlimited(Limit::Pids))
        );
    }

    #[test]
    fn refuses_root_ids_and_bad_hostnames() {
        let root = SandboxConfig {
            uid: 0,
            ..Default::default()
        };
        assert_eq!(validate(&with_sandbox(root)), Err(InvalidRequest::BadIds));
        let invalid = SandboxConfig {
            gid: u32::MAX,
            ..Default::default()
        };
        assert_eq!(
            validate(&with_sandbox(invalid)),
            Err(InvalidRequest::BadIds)
        );
        for hostname in [String::new(), "x".repeat(65)] {
            let config = SandboxConfig {
                hostname,
                ..Default::default()
            };
            assert_eq!(
                validate(&with_sandbox(config)),
                Err(InvalidRequest::BadHostname)
            );
        }
    }

    #[test]
    fn interface_names_follow_the_kernel() {
        for good in ["eth0", "a", "veth-1_x", "fifteen-bytes-x"] {
            assert!(valid_interface_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "a:b",
            "sixteen-bytes-xx",
            "a\0",
        ] {
            assert!(!valid_interface_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn checks_veth_networks() {
        use crate::protocol::{Layer, NetworkConfig, VethConfig};
        let veth = |interface: Option<&str>, mtu: Option<u32>| SandboxConfig {
            network: NetworkConfig::Veth(VethConfig {
                interface: interface.map(str::to_string),
                mtu,
            }),
            ..Default::default()
        };
        assert_eq!(validate(&with_sandbox(veth(None, None))), Ok(()));
        assert_eq!(
            validate(&with_sandbox(veth(Some("net0"), Some(9000)))),
            Ok(())
        );
        for name in ["lo", "", "a b", "a/b", "sixteen-bytes-xx"] {
            assert_eq!(
                validate(&with_sandbox(veth(Some(name), None))),
                Err(InvalidRequest::BadInterfaceName(name.to_string()))
            );
        }
        for mtu in [0, 1279, 65536] {
            assert_eq!(
                validate(&with_sandbox(veth(None, Some(mtu)))),
                Err(InvalidRequest::BadMtu(mtu))
            );
        }
        let shared = SandboxConfig {
            opt_out: vec![Layer::NetworkNamespace],
            ..veth(None, None)
        };
        assert_eq!(
            validate(&with_sandbox(shared)),
            Err(InvalidRequest::VethWithoutNamespace)
        );
    }
}
