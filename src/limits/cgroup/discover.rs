//! Finding this process's cgroups at the zygote's start: `/proc/self/cgroup` and
//! `/proc/self/mountinfo` parsed, each v1 hierarchy carrying one of our controllers and
//! the v2 unified hierarchy located, and the version that carries more of them chosen
//! ([`plan`]). Reads only; [`super::v1`] and [`super::v2`] then set the chosen one up.
//!
//! The filesystem root and the text of both `/proc` files are injectable
//! ([`Discovery`]), so that each version can be tested against a fake tree on any host.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::{CgroupError, Controller, Controllers, Place, DAEMON_LEAF, SANDBOXES_DIR};
use crate::sys::Context;

/// Where [`Cgroups::discover_with`](super::Cgroups::discover_with) looks, and what it
/// names its directories.
///
/// [`Discovery::host`] describes this process on this host; tests build one by hand
/// with the text of fake `/proc` files and a temporary directory as `root`.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The text of `/proc/self/cgroup`.
    pub proc_self_cgroup: String,
    /// The text of `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// Prepended to every mount point (`/` on the host).
    pub root: PathBuf,
    /// The parent directory for sandboxes (default [`SANDBOXES_DIR`]).
    pub sandboxes_dir: String,
    /// The process that moves into [`DAEMON_LEAF`] on v2 (default: this one).
    pub pid: u32,
}

impl Discovery {
    /// The cgroup setup of this process, as the kernel shows it.
    pub fn host() -> Result<Discovery, CgroupError> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .op_path("read", path)
                .map_err(CgroupError::Setup)
        };
        Ok(Discovery {
            proc_self_cgroup: read("/proc/self/cgroup")?,
            mountinfo: read("/proc/self/mountinfo")?,
            root: PathBuf::from("/"),
            sandboxes_dir: SANDBOXES_DIR.to_owned(),
            pid: std::process::id(),
        })
    }
}

/// This process's cgroup in one hierarchy, found from `/proc/self/cgroup` and mountinfo.
pub(super) type Found = Place;

/// The version chosen, and this process's cgroups in it.
pub(super) enum Plan {
    V2(Found),
    V1(Vec<Found>),
}

/// Chooses v2 if the unified hierarchy offers at least as many of memory, pids and cpu
/// as the v1 hierarchies do (a controller is in one hierarchy at a time), else v1.
pub(super) fn plan(discovery: &Discovery) -> Plan {
    let own = parse_proc_cgroup(&discovery.proc_self_cgroup);
    let mounts = parse_mountinfo(&discovery.mountinfo);
    let v1 = find_v1(discovery, &own, &mounts);
    let v1_count = v1
        .iter()
        .map(|found| found.controllers.limit_count())
        .sum::<usize>();
    match find_v2(discovery, &own, &mounts) {
        Some(v2) if v2.controllers.limit_count() >= v1_count => Plan::V2(v2),
        _ => Plan::V1(v1),
    }
}

/// This process's v2 cgroup, if a cgroup2 mount shows it.
fn find_v2(discovery: &Discovery, own: &[ProcCgroup], mounts: &[Mount]) -> Option<Found> {
    let line = own
        .iter()
        .find(|line| line.id == 0 && line.controllers.is_empty())?;
    // A daemon started again from inside the leaf of a previous one.
    let rel = match line.path.strip_suffix(&format!("/{DAEMON_LEAF}")) {
        Some("") => "/",
        Some(parent) => parent,
        None => &line.path,
    };
    let path = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .find_map(|m| resolve(&discovery.root, m, rel))?;
    let mut controllers = Controllers::default();
    let available = std::fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
    for name in available.split_whitespace() {
        for c in [Controller::Memory, Controller::Pids, Controller::Cpu] {
            if name == c.name() {
                controllers.add(c);
            }
        }
    }
    Some(Found {
        path,
        rel: rel.to_owned(),
        controllers,
    })
}

/// This process's cgroup in each v1 hierarchy carrying one of our controllers.
fn find_v1(discovery: &Discovery, own: &[ProcCgroup], mounts: &[Mount]) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for c in Controller::ALL {
        let Some(line) = own
            .iter()
            .find(|line| line.controllers.iter().any(|name| name == c.name()))
        else {
            continue;
        };
        let Some(path) = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == c.name()))
            .find_map(|m| resolve(&discovery.root, m, &line.path))
        else {
            continue;
        };
        // Co-mounted controllers (`cpu,cpuacct`) share one directory.
        match found.iter_mut().find(|f| f.path == path) {
            Some(f) => f.controllers.add(c),
            None => {
                let mut controllers = Controllers::default();
                controllers.add(c);
                found.push(Found {
                    path,
                    rel: line.path.clone(),
                    controllers,
                });
            }
        }
    }
    found
}

/// One line of `/proc/PID/cgroup`: `hierarchy-id:controller,list:/path`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ProcCgroup {
    pub(super) id: u32,
    /// Empty for the v2 line (`0::/path`).
    pub(super) controllers: Vec<String>,
    pub(super) path: String,
}

pub(super) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let id = fields.next()?.parse().ok()?;
            let controllers = fields
                .next()?
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            let path = fields.next()?.to_owned();
            Some(ProcCgroup {
                id,
                controllers,
                path,
            })
        })
        .collect()
}

/// One line of `/proc/PID/mountinfo`, the fields used here.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Mount {
    /// The directory of the filesystem mounted (a cgroup's path, for cgroupfs).
    pub(super) root: String,
    pub(super) point: PathBuf,
    pub(super) fstype: String,
    pub(super) super_options: Vec<String>,
}

/// Parses mountinfo: `id parent major:minor root point options [optional...] - fstype
/// source super-options`.
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = 6 + fields.get(6..)?.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            let super_options = fields.get(dash + 3)?;
            Some(Mount {
                root: String::from_utf8_lossy(&unescape(fields.get(3)?)).into_owned(),
                point: PathBuf::from(OsString::from_vec(unescape(fields.get(4)?))),
                fstype: (*fstype).to_owned(),
                super_options: super_options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal.map(|d| d.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'))) {
            Some(value) if value <= 0xff => {
                out.push(value as u8);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The directory of cgroup `own` (as `/proc/self/cgroup` shows it) through `mount`,
/// under `root`; `None` if that mount does not show it.
fn resolve(root: &Path, mount: &Mount, own: &str) -> Option<PathBuf> {
    let rest = own.strip_prefix(mount.root.trim_end_matches('/'))?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut dir = root.join(mount.point.strip_prefix("/").unwrap_or(&mount.point));
    for part in rest.split('/').filter(|part| !part.is_empty()) {
        // Outside the cgroup namespace's root: not reachable through this mount.
        if part == ".." || part == "." {
            return None;
        }
        dir.push(part);
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_lines_with_combined_controllers() {
        let text = "12:pids:/user.slice/user-1000.slice\n\
                    4:cpu,cpuacct:/user.slice\n\
                    1:name=systemd:/user.slice/session-2.scope\n\
                    0::/user.slice/session-2.scope\n";
        let lines = parse_proc_cgroup(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[1],
            ProcCgroup {
                id: 4,
                controllers: vec!["cpu".into(), "cpuacct".into()],
                path: "/user.slice".into()
            }
        );
        assert_eq!(lines[2].controllers, vec!["name=systemd".to_owned()]);
        assert_eq!(
            lines[3],
            ProcCgroup {
                id: 0,
                controllers: vec![],
                path: "/user.slice/session-2.scope".into()
            }
        );
    }

    #[test]
    fn mountinfo_lines_with_super_options() {
        let text = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 master:3 - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 /docker/abc /mnt/cgroup\\040v2 rw,relatime - cgroup2 cgroup2 rw
garbage
";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mounts[0].fstype, "cgroup");
        assert_eq!(mounts[0].super_options, vec!["rw", "memory"]);
        assert_eq!(mounts[1].super_options, vec!["rw", "cpu", "cpuacct"]);
        assert_eq!(mounts[2].root, "/docker/abc");
        assert_eq!(mounts[2].point, PathBuf::from("/mnt/cgroup v2"));
        assert_eq!(mounts[2].fstype, "cgroup2");
    }

    #[test]
    fn resolve_joins_the_mount_root_and_the_own_path() {
        let mount = |root: &str| Mount {
            root: root.into(),
            point: "/sys/fs/cgroup/memory".into(),
            fstype: "cgroup".into(),
            super_options: vec![],
        };
        let root = Path::new("/fake");
        assert_eq!(
            resolve(root, &mount("/"), "/a/b"),
            Some(PathBuf::from("/fake/sys/fs/cgroup/memory/a/b"))
        );
        assert_eq!(
            resolve(root, &mount("/"), "/"),
            Some(PathBuf::from("/fake/sys/fs/cgroup/memory"))
        );
        // A container's view: the mount shows only its own subtree.
        assert_eq!(
            resolve(root, &mount("/docker/abc"), "/docker/abc/x"),
            Some(PathBuf::from("/fake/sys/fs/cgroup/memory/x"))
        );
        assert_eq!(resolve(root, &mount("/docker/abc"), "/docker/abcd"), None);
        assert_eq!(resolve(root, &mount("/"), "/../outside"), None);
    }
}
