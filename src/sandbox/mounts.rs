//! The vocabulary of a sandbox's root filesystem, shared by the two processes that build
//! one: the zygote, which builds the root templates once (`root_template`), and each
//! sandbox's init, which builds its own mount namespace's root, a copy of a template with
//! its own `/proc`, `/tmp` and `/dev/shm` and binds, or one assembled there (`root`).
//!
//! What a root holds (the host directories, `/dev`'s device nodes and symlinks), the
//! mount attributes, and the helpers both sides call: looking at a host directory,
//! taking a detached copy of a host tree to bind, naming paths. Code here runs in
//! whichever of the two processes calls it, and imports neither side.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::sys::{self, Context, SysError};

/// Host directories that make up the default root, read-only. Missing ones are skipped;
/// symlinks (merged-`/usr` systems) are recreated as symlinks.
pub(super) const HOST_ROOT_DIRS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// Device nodes bind-mounted from the host into the sandbox's `/dev`.
pub(super) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

pub(super) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(super) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(super) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(super) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// A read-only mount of the sandbox's root: no writes, no setuid, no devices.
pub(super) const READ_ONLY: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

/// The symlinks of the sandbox's `/dev`.
pub(super) const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Whether `path` (relative to the root) is in the sandbox's own `/tmp` or `/dev/shm`,
/// where a bind's missing mount point is made in the sandbox.
pub(super) fn in_sandbox_scratch(path: &Path) -> bool {
    path.starts_with("tmp") || path.starts_with("dev/shm")
}

/// A detached copy of the host's `source` (and every mount below it) to bind into the
/// sandbox: `nosuid`, `nodev`, and read-only unless `writable`.
pub(super) fn bound_tree(source: &Path, writable: bool) -> Result<OwnedFd, SysError> {
    let tree = sys::clone_mount_tree(None, &c_path(source)?).map_err(|e| e.on(source))?;
    sys::mount_setattr_at(Some(tree.as_fd()), c"", bind_attrs(writable), true)?;
    Ok(tree)
}

/// What a host directory of the default root is on this host.
pub(super) enum HostDir {
    /// Not there: skipped.
    Missing,
    /// A symlink (`/bin` on a merged-`/usr` system): recreated, with its target.
    Symlink(PathBuf),
    /// A directory: bound read-only.
    Directory,
}

/// Looks at the host directory at `path` (its symlink itself, not followed).
pub(super) fn host_dir(path: &Path) -> Result<HostDir, SysError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(path)
            .map(HostDir::Symlink)
            .op_path("readlink", path),
        Ok(_) => Ok(HostDir::Directory),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostDir::Missing),
        Err(e) => Err(SysError::from_io("lstat", Some(path), &e)),
    }
}

/// The attributes of a requested bind mount.
pub(super) fn bind_attrs(writable: bool) -> u64 {
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if !writable {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    attrs
}

/// `path` without its leading `/`. Request paths are validated to be absolute and free
/// of `..` before they get here.
pub(super) fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

pub(super) fn c_path(path: &Path) -> Result<CString, SysError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::with_path("path", path, Errno::EINVAL))
}
