//! Child side: builds the sandbox's root filesystem in its own mount namespace.
//!
//! The recipe (bubblewrap's double pivot): a scratch tmpfs becomes the root so that the
//! host's root is reachable under `/oldroot` whatever path a bind names (even under the
//! host's `/tmp`); the new root is assembled under `/newroot`; a second pivot makes it `/`
//! and the scratch root with the host's tree beneath it is detached.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use super::timeline::{self, Mark};
use crate::protocol::{Bind, Limits, SandboxConfig};
use crate::sys::{self, Context, SysError};

/// Host directories that make up the default root, read-only. Missing ones are skipped;
/// symlinks (merged-`/usr` systems) are recreated as symlinks.
const HOST_ROOT_DIRS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// Device nodes bind-mounted from the host into the sandbox's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the host's root is while the new root is assembled.
const OLD_ROOT: &str = "/oldroot";
/// Where the new root is assembled.
const NEW_ROOT: &str = "/newroot";

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// The symlinks of the sandbox's `/dev`.
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// The sandbox's `/dev` without its `/dev/shm`, built once by the zygote and copied into
/// every sandbox: a tmpfs with the device nodes bound from the host, the `shm` mount
/// point and the symlinks, read-only (its superblock too: no sandbox can change what
/// the others see) and `nosuid`, `noexec`, as a detached mount (in no mount tree, held
/// by its fd). A sandbox attaches a copy of it (`open_tree`, `move_mount`) and mounts
/// its own `/dev/shm` on it: two calls and a mount, where building its own takes a
/// tmpfs, six files, six binds, four symlinks and two attribute changes.
#[derive(Debug)]
pub struct DevTemplate(OwnedFd);

impl DevTemplate {
    /// The lowest fd number the template is kept at: above those a sandbox's init places
    /// its own fds on (stdio, channel, result pipe), so that it survives their placing.
    const FD_AT_LEAST: RawFd = 64;

    /// Builds it from the host's `/dev`. Fails where the new mount API, or attaching a
    /// mount to a detached one, is refused (an older kernel; a container or a daemon
    /// without `CAP_SYS_ADMIN`): sandboxes then build their own `/dev`.
    pub fn build() -> Result<DevTemplate, SysError> {
        let dev = sys::detached_tmpfs(
            &[(c"source", c"tmpfs"), (c"mode", c"0755")],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        )?;
        for name in DEVICES {
            let node = c_path(Path::new(name))?;
            nix::fcntl::openat(
                &dev,
                node.as_c_str(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .op_path("create", Path::new("/dev").join(name))?;
            let host = c_path(&Path::new("/dev").join(name))?;
            let bound = sys::clone_mount_tree(None, &host)?;
            sys::attach_mount_tree(bound.as_fd(), Some(dev.as_fd()), &node)?;
        }
        nix::sys::stat::mkdirat(&dev, "shm", Mode::from_bits_truncate(0o755))
            .op_path("mkdir", "/dev/shm")?;
        for (link, target) in DEV_LINKS {
            nix::unistd::symlinkat(target, &dev, link)
                .op_path("symlink", Path::new("/dev").join(link))?;
        }
        sys::mount_setattr_at(Some(dev.as_fd()), c"", MOUNT_ATTR_NOSUID, true)?;
        sys::mount_setattr_at(Some(dev.as_fd()), c"", MOUNT_ATTR_RDONLY, false)?;
        sys::make_superblock_read_only(dev.as_fd())?;
        let kept = nix::fcntl::fcntl(
            &dev,
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(Self::FD_AT_LEAST),
        )
        .op("fcntl(F_DUPFD_CLOEXEC)")?;
        // SAFETY: F_DUPFD_CLOEXEC just made `kept` a new fd that nothing else owns.
        Ok(DevTemplate(unsafe { OwnedFd::from_raw_fd(kept) }))
    }

    /// Its fd, which a sandbox's init keeps until its root is built.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Builds the root and pivots into it. Runs in the sandbox init, with its capabilities in
/// its own user namespace, before they are dropped.
pub fn build_root(config: &SandboxConfig, dev: Option<BorrowedFd<'_>>) -> Result<(), SysError> {
    // Nothing done below may propagate back to the host's mounts.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .op_path("mount(MS_PRIVATE)", "/")?;

    // A scratch tmpfs becomes "/" and the host's root moves under /oldroot. Our tmpfs is on
    // the host's /tmp only in this namespace, and after the pivot /oldroot/tmp is the
    // host's real /tmp again.
    mount_tmpfs("/tmp", "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    make_dir("/tmp/oldroot")?;
    make_dir("/tmp/newroot")?;
    nix::unistd::pivot_root("/tmp", "/tmp/oldroot").op_path("pivot_root", "/tmp")?;
    nix::unistd::chdir("/").op_path("chdir", "/")?;
    timeline::mark(Mark::RootScratch);

    match &config.chroot_dir {
        Some(dir) => {
            // The caller's tree, read-only before anything is mounted on top of it: its
            // mount points must already exist, nothing is created in a host directory.
            let source = host_path(dir.as_path());
            bind(&source, Path::new(NEW_ROOT))?;
            set_attrs(
                Path::new(NEW_ROOT),
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            )?;
        }
        None => {
            mount_tmpfs(
                NEW_ROOT,
                "mode=0755",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            )?;
            for dir in HOST_ROOT_DIRS {
                add_host_dir(dir)?;
            }
        }
    }

    timeline::mark(Mark::HostDirectories);

    // A fresh /proc shows only this pid namespace.
    let proc_dir = inside("/proc");
    make_dir_if_missing(&proc_dir)?;
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .op_path("mount(proc)", &proc_dir)?;

    let tmp = inside("/tmp");
    make_dir_if_missing(&tmp)?;
    let scratch = scratch_options(&config.limits);
    mount_tmpfs(&tmp, &scratch, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;

    timeline::mark(Mark::ProcAndTmp);
    build_dev(&scratch, dev)?;
    timeline::mark(Mark::Dev);

    for b in &config.binds {
        add_bind(b)?;
    }
    timeline::mark(Mark::Binds);

    // The second pivot: the new root becomes "/", and the scratch root with the host's
    // tree under it is stacked on top of it, then detached.
    nix::unistd::chdir(NEW_ROOT).op_path("chdir", NEW_ROOT)?;
    nix::unistd::pivot_root(".", ".").op_path("pivot_root", NEW_ROOT)?;
    timeline::mark(Mark::RootSwapped);
    umount2(".", MntFlags::MNT_DETACH).op_path("umount2", OLD_ROOT)?;
    timeline::mark(Mark::OldRootDetached);
    nix::unistd::chdir("/").op_path("chdir", "/")?;

    if config.chroot_dir.is_none() {
        // Only now, when every mount point in it exists: the root itself read-only.
        // Not recursive, so /tmp and /dev/shm stay writable.
        set_attrs_one(
            Path::new("/"),
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )?;
    }
    Ok(())
}

/// Options of the sandbox's writable tmpfs mounts (`/tmp`, `/dev/shm`): world-writable
/// with the sticky bit, and the size and inode limits of the request.
fn scratch_options(limits: &Limits) -> String {
    let mut options = String::from("mode=1777");
    if let Some(bytes) = limits.tmp_size_bytes {
        options.push_str(&format!(",size={bytes}"));
    }
    if let Some(inodes) = limits.tmp_inodes {
        options.push_str(&format!(",nr_inodes={inodes}"));
    }
    options
}

/// A minimal /dev: a few device nodes bound from the host (a user namespace may not
/// mknod), a private /dev/shm, and the usual symlinks. A copy of the zygote's
/// [`DevTemplate`] when there is one and it can be attached; else built here.
fn build_dev(shm_options: &str, template: Option<BorrowedFd<'_>>) -> Result<(), SysError> {
    let dev = inside("/dev");
    make_dir_if_missing(&dev)?;
    let shm_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Some(template) = template {
        let attached = sys::clone_mount_tree(Some(template), c"")
            .and_then(|copy| sys::attach_mount_tree(copy.as_fd(), None, &c_path(&dev)?));
        // Nothing is attached when either call fails: the kernel may refuse a copy of
        // the zygote's mount here (an older kernel), and /dev is then built below.
        if attached.is_ok() {
            return mount_tmpfs(dev.join("shm"), shm_options, shm_flags);
        }
    }
    mount_tmpfs(&dev, "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)?;
    for name in DEVICES {
        let target = dev.join(name);
        make_file(&target)?;
        bind(&Path::new(OLD_ROOT).join("dev").join(name), &target)?;
    }
    let shm = dev.join("shm");
    make_dir(&shm)?;
    mount_tmpfs(&shm, shm_options, shm_flags)?;
    for (link, target) in DEV_LINKS {
        let path = dev.join(link);
        symlink(target, &path).op_path("symlink", &path)?;
    }
    // Every mount in /dev nosuid (the device nodes' binds, /dev/shm), /dev itself also
    // read-only (not /dev/shm).
    set_attrs(&dev, MOUNT_ATTR_NOSUID)?;
    set_attrs_one(&dev, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)?;
    Ok(())
}

/// Adds one host directory of the default root, read-only.
fn add_host_dir(dir: &str) -> Result<(), SysError> {
    let source = host_path(Path::new(dir));
    let target = inside(dir);
    let meta = match std::fs::symlink_metadata(&source) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SysError::from_io("lstat", Some(&source), &e)),
    };
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(&source).op_path("readlink", &source)?;
        symlink(&link, &target).op_path("symlink", &target)?;
        return Ok(());
    }
    make_dir(&target)?;
    bind(&source, &target)?;
    set_attrs(
        &target,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
}

/// Adds one requested bind mount.
fn add_bind(b: &Bind) -> Result<(), SysError> {
    let source = host_path(b.source.as_path());
    let target = inside(b.target.as_os_str());
    let meta = std::fs::metadata(&source).op_path("stat", b.source.as_path())?;
    match std::fs::symlink_metadata(&target) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = target.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .op_path("mkdir", parent)?;
            }
            if meta.is_dir() {
                make_dir(&target)?;
            } else {
                make_file(&target)?;
            }
        }
        Err(e) => return Err(SysError::from_io("lstat", Some(&target), &e)),
    }
    bind(&source, &target)?;
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if !b.writable {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    set_attrs(&target, attrs)
}

/// The path of a host path while the host's root is under [`OLD_ROOT`].
fn host_path(path: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(relative(path))
}

/// The path of a sandbox path while the new root is under [`NEW_ROOT`].
fn inside(path: impl AsRef<OsStr>) -> PathBuf {
    Path::new(NEW_ROOT).join(relative(Path::new(path.as_ref())))
}

/// `path` without its leading `/`. Request paths are validated to be absolute and free
/// of `..` before they get here.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn bind(source: &Path, target: &Path) -> Result<(), SysError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| SysError::with_path("mount(MS_BIND)", display_host(source), e))
}

/// Names a path as the user knows it, without the `/oldroot` prefix.
fn display_host(path: &Path) -> PathBuf {
    match path.strip_prefix(OLD_ROOT) {
        Ok(rest) => Path::new("/").join(rest),
        Err(_) => path.to_path_buf(),
    }
}

fn mount_tmpfs(target: impl AsRef<Path>, options: &str, flags: MsFlags) -> Result<(), SysError> {
    let target = target.as_ref();
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options))
        .op_path("mount(tmpfs)", target)
}

/// Sets mount attributes on `path` and every mount below it.
fn set_attrs(path: &Path, attrs: u64) -> Result<(), SysError> {
    sys::mount_setattr(&c_path(path)?, attrs, true)
}

/// Sets mount attributes on the mount at `path` only.
fn set_attrs_one(path: &Path, attrs: u64) -> Result<(), SysError> {
    sys::mount_setattr(&c_path(path)?, attrs, false)
}

fn c_path(path: &Path) -> Result<CString, SysError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::with_path("path", path, Errno::EINVAL))
}

fn make_dir(path: impl AsRef<Path>) -> Result<(), SysError> {
    let path = path.as_ref();
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .op_path("mkdir", path)
}

fn make_dir_if_missing(path: &Path) -> Result<(), SysError> {
    if path.is_dir() {
        return Ok(());
    }
    make_dir(path)
}

fn make_file(path: &Path) -> Result<(), SysError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map(drop)
        .op_path("create", path)
}
