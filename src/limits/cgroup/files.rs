//! Reading and writing cgroupfs: control files written in one `write`, flat-keyed files,
//! and directory trees removed deepest first. Runs in the zygote only.
//!
//! cgroupfs differs from a plain filesystem in two directory operations ([`DirOps`]),
//! which the tests swap for imitations on a temporary directory.

use std::io::Write;
use std::path::Path;

use nix::errno::Errno;

use super::CgroupError;
use crate::sys::{Context, SysError};

/// The two directory operations in which cgroupfs differs from a plain filesystem: its
/// `mkdir` populates the control files, its `rmdir` removes a directory full of them.
/// Tests swap in functions that imitate that on a temporary directory.
#[derive(Debug, Clone, Copy)]
pub(super) struct DirOps {
    pub(super) mkdir: fn(&Path) -> std::io::Result<()>,
    pub(super) rmdir: fn(&Path) -> std::io::Result<()>,
}

fn real_mkdir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir(path)
}

fn real_rmdir(path: &Path) -> std::io::Result<()> {
    std::fs::remove_dir(path)
}

pub(super) const CGROUPFS: DirOps = DirOps {
    mkdir: real_mkdir,
    rmdir: real_rmdir,
};

/// `mkdir` that accepts an existing directory: a second daemon start reuses it.
pub(super) fn ensure_dir(ops: DirOps, path: &Path) -> Result<(), CgroupError> {
    match (ops.mkdir)(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(CgroupError::Setup(
            SysError::from_io("mkdir", Some(path), &e),
        )),
        _ => Ok(()),
    }
}

/// Removes `path` and every cgroup below it, deepest first. Gone already is fine.
pub(super) fn remove_tree(ops: DirOps, path: &Path) -> Result<(), SysError> {
    let children = match subdirectories(path) {
        Err(e) if e.errno() == Errno::ENOENT => return Ok(()),
        result => result?,
    };
    for child in children {
        remove_tree(ops, &path.join(child))?;
    }
    match (ops.rmdir)(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        result => result.op_path("rmdir", path),
    }
}

/// The names of the directories in `path` (child cgroups, on cgroupfs).
pub(super) fn subdirectories(path: &Path) -> Result<Vec<String>, SysError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).op_path("read_dir", path)? {
        let entry = entry.op_path("read_dir", path)?;
        if entry.file_type().op_path("stat", entry.path())?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `value` to a cgroup file in one `write` (cgroupfs takes each write as one
/// whole value), naming the file in the error.
pub(super) fn write_value(path: &Path, value: &str) -> Result<(), SysError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .op_path("open", path)?;
    let written = file.write(value.as_bytes()).op_path("write", path)?;
    if written != value.len() {
        return Err(SysError::with_path("write", path, Errno::EIO));
    }
    Ok(())
}

/// A file holding one number (`max` reads as `None`).
pub(super) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file of `key value` lines.
pub(super) fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed_value(&std::fs::read_to_string(path).ok()?, key)
}

pub(super) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_oom_control_and_keyed_files() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(oom_control, "oom_kill"), Some(3));
        assert_eq!(keyed_value(oom_control, "oom_kill_disable"), Some(0));
        assert_eq!(keyed_value(oom_control, "oom"), None);
        assert_eq!(keyed_value("usage_usec 17\n", "usage_usec"), Some(17));
    }
}
