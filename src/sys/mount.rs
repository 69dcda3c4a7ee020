//! Mounts through the new mount API: `mount_setattr`, detached tmpfs (`fsopen`,
//! `fsconfig`, `fsmount`), a read-only superblock (`fspick`), and detached copies of
//! mount trees (`open_tree`, `move_mount`).
//!
//! The zygote builds its root templates with them; a sandbox's init attaches a copy of
//! one, or builds its own root, in its own mount namespace.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::fd::new_fd;
use super::SysError;

/// The `dirfd` argument of an `*at` call: `dir`, or the working directory (`AT_FDCWD`).
fn dir_fd(dir: Option<BorrowedFd<'_>>) -> RawFd {
    dir.map_or(libc::AT_FDCWD, |dir| dir.as_raw_fd())
}

/// `mount_setattr(2)` on the mount at `path` (and on every mount below it when
/// `recursive`), setting `attr_set` (`MOUNT_ATTR_*`) and leaving every other attribute
/// as it is, those the kernel locked included.
pub fn mount_setattr(path: &CStr, attr_set: u64, recursive: bool) -> Result<(), SysError> {
    mount_setattr_at(None, path, attr_set, recursive)
}

/// [`mount_setattr`] with `path` relative to `dir` (the mount `dir` itself when `path`
/// is empty).
pub fn mount_setattr_at(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    attr_set: u64,
    recursive: bool,
) -> Result<(), SysError> {
    let mut flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    let dir = dir_fd(dir);
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is NUL-terminated and `attr` a valid mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir,
            path.as_ptr(),
            flags | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret == -1 {
        return Err(SysError::with_path(
            "mount_setattr",
            path.to_string_lossy().as_ref(),
            Errno::last(),
        ));
    }
    Ok(())
}

// From <linux/mount.h>: the new mount API.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSCONFIG_CMD_RECONFIGURE: libc::c_uint = 7;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const FSPICK_CLOEXEC: libc::c_uint = 0x1;
const FSPICK_EMPTY_PATH: libc::c_uint = 0x8;
const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;

/// `fsconfig(2)` with a key and, for `FSCONFIG_SET_STRING`, a value.
fn fsconfig(
    context: BorrowedFd<'_>,
    command: libc::c_uint,
    key: Option<&CStr>,
    value: Option<&CStr>,
) -> Result<(), SysError> {
    let key = key.map_or(std::ptr::null(), CStr::as_ptr);
    let value = value.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: `context` is an fs context fd; `key` and `value` are null or
    // NUL-terminated strings that outlive the call; the last argument is unused here.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            command,
            key,
            value,
            0,
        )
    };
    if ret == -1 {
        return Err(SysError::new("fsconfig", Errno::last()));
    }
    Ok(())
}

/// A new tmpfs with `options` (`key=value` pairs), as a detached mount with the
/// `MOUNT_ATTR_*` `attrs` (`fsopen`, `fsconfig`, `fsmount`): a mount of the caller's
/// user namespace attached to no tree.
pub fn detached_tmpfs(options: &[(&CStr, &CStr)], attrs: u64) -> Result<OwnedFd, SysError> {
    // SAFETY: the filesystem name is a NUL-terminated string; no pointer is kept.
    let context = new_fd(
        unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen(tmpfs)",
    )?;
    for (key, value) in options {
        fsconfig(context.as_fd(), FSCONFIG_SET_STRING, Some(key), Some(value))?;
    }
    fsconfig(context.as_fd(), FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: `context` is a created fs context; flags and attributes are plain integers.
    new_fd(
        unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                context.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs as libc::c_uint,
            )
        },
        "fsmount",
    )
}

/// Makes the superblock of the mount `mount` read-only (`fspick`, `ro`, reconfigure):
/// no mount of it, whatever its own flags, can write to it any more.
pub fn make_superblock_read_only(mount: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: the path is an empty NUL-terminated string; the flags are plain integers.
    let context = new_fd(
        unsafe {
            libc::syscall(
                libc::SYS_fspick,
                mount.as_raw_fd(),
                c"".as_ptr(),
                FSPICK_CLOEXEC | FSPICK_EMPTY_PATH,
            )
        },
        "fspick",
    )?;
    fsconfig(context.as_fd(), FSCONFIG_SET_FLAG, Some(c"ro"), None)?;
    fsconfig(context.as_fd(), FSCONFIG_CMD_RECONFIGURE, None, None)
}

/// `open_tree(dir, path, OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mount
/// at `path` relative to `dir` (`dir` itself when `path` is empty) and every mount below.
pub fn clone_mount_tree(dir: Option<BorrowedFd<'_>>, path: &CStr) -> Result<OwnedFd, SysError> {
    let dir = dir_fd(dir);
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    // SAFETY: `path` is NUL-terminated and outlives the call; flags are plain integers.
    new_fd(
        unsafe { libc::syscall(libc::SYS_open_tree, dir, path.as_ptr(), flags) },
        "open_tree(OPEN_TREE_CLONE)",
    )
}

/// `move_mount`: attaches the detached tree `tree` at `path`, relative to `dir` (to the
/// working directory when `None`), following a symlink at `path` as `mount(2)` does.
pub fn attach_mount_tree(
    tree: BorrowedFd<'_>,
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
) -> Result<(), SysError> {
    let dir = dir_fd(dir);
    // SAFETY: both paths are NUL-terminated and outlive the call; flags are integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dir,
            path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
        )
    };
    if ret == -1 {
        return Err(SysError::new("move_mount", Errno::last()));
    }
    Ok(())
}
