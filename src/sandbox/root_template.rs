//! The root templates: runs in the zygote only, on its one thread, with its own
//! privileges (a sandbox's init only borrows a template's fd, see `root`). The default
//! template is built once at start-up, a variant with mount points for binds at the
//! first request that needs it.
//!
//! The order matters: a template is a detached tmpfs into which the host directories are
//! bound and the mount points made while it is writable; `/dev` is attached last, and
//! only then is the whole made read-only down to its superblock, so that no sandbox can
//! change what the others copy.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::mounts::{
    bound_tree, c_path, host_dir, in_sandbox_scratch, relative, HostDir, DEVICES, DEV_LINKS,
    HOST_ROOT_DIRS, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use super::HostIds;
use crate::protocol::{Bind, SandboxConfig};
use crate::sys::{self, Context, SysError};

/// The default root, built once by the zygote and copied into every sandbox: a tmpfs
/// with the host directories of [`HOST_ROOT_DIRS`] bound read-only (`nosuid`, `nodev`;
/// symlinks where the host has symlinks), the mount points of `/proc` and `/tmp`, and a
/// `/dev` with the device nodes bound from the host, the `shm` mount point and the usual
/// symlinks (`nosuid`, `noexec`). Every mount of it is read-only, the root and `/dev`
/// down to their superblocks (no sandbox can change what the others see), and it is
/// detached (in no mount tree, held by its fd). Its directories belong to the host ids
/// the sandbox ids map to, as those a sandbox creates for itself.
///
/// A sandbox attaches a copy of it (`open_tree`, `move_mount`) and mounts only its own
/// `/proc`, `/tmp` and `/dev/shm` (and its binds) on it; where a sandbox builds its own
/// root (a chroot, or a bind whose mount point the template does not have), it still
/// attaches a copy of the template's `/dev`.
///
/// The host directories are those the daemon found when it built the template (the
/// default one at start-up): what is mounted under them later is not in the sandboxes
/// copying it until the daemon restarts.
#[derive(Debug)]
pub struct RootTemplate(OwnedFd);

impl RootTemplate {
    /// The lowest fd number the template is kept at: above those a sandbox's init places
    /// its own fds on (stdio, channel, result pipe), so that it survives their placing.
    const FD_AT_LEAST: RawFd = 64;

    /// Builds it from the host's directories, owned by `owner`. Fails where the new
    /// mount API, or attaching a mount to a detached one, is refused (an older kernel; a
    /// container or a daemon without `CAP_SYS_ADMIN`): sandboxes then build their own
    /// root and `/dev`.
    pub fn build(owner: HostIds) -> Result<RootTemplate, SysError> {
        RootTemplate::build_with(owner, &[])
    }

    /// Builds it with the mount points `extra` at its top, for binds.
    fn build_with(owner: HostIds, extra: &[MountPoint]) -> Result<RootTemplate, SysError> {
        let root = template_tmpfs(owner, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)?;
        for dir in HOST_ROOT_DIRS {
            let name = Path::new(dir.trim_start_matches('/'));
            match host_dir(Path::new(dir))? {
                HostDir::Missing => {}
                HostDir::Symlink(link) => {
                    nix::unistd::symlinkat(&link, &root, name).op_path("symlink", dir)?;
                }
                HostDir::Directory => {
                    make_dir_at(&root, name, owner)?;
                    let bound = bound_tree(Path::new(dir), false)?;
                    sys::attach_mount_tree(bound.as_fd(), Some(root.as_fd()), &c_path(name)?)?;
                }
            }
        }
        for dir in ["proc", "tmp", "dev"] {
            make_dir_at(&root, Path::new(dir), owner)?;
        }
        for point in extra {
            point.make_in(&root, owner)?;
        }
        let dev = dev_template(owner)?;
        sys::attach_mount_tree(dev.as_fd(), Some(root.as_fd()), c"dev")?;
        sys::mount_setattr_at(Some(root.as_fd()), c"", MOUNT_ATTR_RDONLY, false)?;
        sys::make_superblock_read_only(root.as_fd())?;
        Ok(RootTemplate(sys::dupfd_cloexec(
            root.as_fd(),
            Self::FD_AT_LEAST,
        )?))
    }

    /// Its fd, which a sandbox's init keeps until its root is built.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The zygote's root templates: the default one, and one for each set of mount points
/// at the top of the root that requests' binds have named (`/work`, `/data/in`), built
/// at the first request that names it, up to [`RootTemplates::MOST_VARIANTS`]; a
/// request that needs another assembles its root in its sandbox.
#[derive(Debug)]
pub struct RootTemplates {
    owner: HostIds,
    default: Arc<RootTemplate>,
    variants: Mutex<Vec<(Vec<MountPoint>, Arc<RootTemplate>)>>,
}

/// A directory a template has for a bind to be mounted on: its path, relative to the
/// root. (Only directories: the daemon does not look at a bind's source, a path of the
/// client's, to learn what it is; a file bind at the top of the root assembles its
/// root, see `has_mount_points` in `root`.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MountPoint {
    path: PathBuf,
}

impl RootTemplates {
    /// The most templates with mount points for binds that are kept (each holds a tmpfs
    /// and copies of the host directories' mounts).
    pub const MOST_VARIANTS: usize = 16;

    /// Builds the default template (see [`RootTemplate::build`]).
    pub fn build(owner: HostIds) -> Result<RootTemplates, SysError> {
        Ok(RootTemplates {
            owner,
            default: Arc::new(RootTemplate::build(owner)?),
            variants: Mutex::new(Vec::new()),
        })
    }

    /// The template a sandbox of `config` copies its root from: the default one, or one
    /// with the mount points its binds need at the top of the root, built now if it is
    /// the first to need them. A chroot, the request's [`Mount`]s, or binds the templates
    /// cannot serve (mount
    /// points to make inside the host's directories; one more set when
    /// [`Self::MOST_VARIANTS`] are kept), get the default one, whose copy they do not
    /// use (see [`build_root`]).
    ///
    /// [`build_root`]: super::root::build_root
    pub fn for_sandbox(&self, config: &SandboxConfig) -> Arc<RootTemplate> {
        if config.chroot_dir.is_some() || !config.mounts.is_empty() {
            return Arc::clone(&self.default);
        }
        let needed = self.mount_points_needed(&config.binds);
        if needed.is_empty() {
            return Arc::clone(&self.default);
        }
        let mut variants = self.variants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, template)) = variants.iter().find(|(points, _)| *points == needed) {
            return Arc::clone(template);
        }
        if variants.len() >= Self::MOST_VARIANTS {
            return Arc::clone(&self.default);
        }
        match RootTemplate::build_with(self.owner, &needed) {
            Ok(template) => {
                let template = Arc::new(template);
                variants.push((needed, Arc::clone(&template)));
                template
            }
            Err(e) => {
                tracing::info!(error = %e, "no root template for these binds' mount points");
                Arc::clone(&self.default)
            }
        }
    }

    /// The mount points `binds` need that the default template lacks and a template can
    /// have: those whose first component is not in the default root (made in a
    /// directory of the template's own, where no symlink can lead elsewhere). Sorted.
    fn mount_points_needed(&self, binds: &[Bind]) -> Vec<MountPoint> {
        let default = self.default.fd();
        let mut needed: Vec<MountPoint> = binds
            .iter()
            .filter_map(|b| {
                let path = relative(b.target.as_path());
                let first = path.components().next()?;
                if in_sandbox_scratch(&path) || exists_in(default, first.as_os_str()) {
                    return None;
                }
                Some(MountPoint { path })
            })
            .collect();
        needed.sort();
        needed.dedup();
        needed
    }
}

impl MountPoint {
    /// Makes it, with its missing parents, in the template `root`, owned by `owner`.
    fn make_in(&self, root: &OwnedFd, owner: HostIds) -> Result<(), SysError> {
        let shown = Path::new("/").join(&self.path);
        let mut dir = nix::unistd::dup(root).op("dup")?;
        for component in self.path.components() {
            let name = component.as_os_str();
            match make_dir_at(&dir, Path::new(name), owner) {
                Err(e) if e.errno() == Errno::EEXIST => {}
                made => made?,
            }
            // Only directories made here: no symlink to follow.
            dir = nix::fcntl::openat(
                &dir,
                name,
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .op_path("open", &shown)?;
        }
        Ok(())
    }
}

/// Whether `path` exists relative to `dir` (a symlink counts, not followed).
fn exists_in(dir: BorrowedFd<'_>, path: &OsStr) -> bool {
    nix::sys::stat::fstatat(dir, path, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
}

/// The template's `/dev` (see [`RootTemplate`]), detached.
fn dev_template(owner: HostIds) -> Result<OwnedFd, SysError> {
    let dev = template_tmpfs(owner, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
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
    make_dir_at(&dev, Path::new("shm"), owner)?;
    // The mount point of a persistent sandbox's own devpts (empty in the others).
    make_dir_at(&dev, Path::new("pts"), owner)?;
    for (link, target) in DEV_LINKS {
        nix::unistd::symlinkat(target, &dev, link)
            .op_path("symlink", Path::new("/dev").join(link))?;
    }
    sys::mount_setattr_at(Some(dev.as_fd()), c"", MOUNT_ATTR_NOSUID, true)?;
    sys::mount_setattr_at(Some(dev.as_fd()), c"", MOUNT_ATTR_RDONLY, false)?;
    sys::make_superblock_read_only(dev.as_fd())?;
    Ok(dev)
}

/// A detached tmpfs for a template, mode 0755, its root owned by `owner`, with the
/// mount attributes `attrs`.
fn template_tmpfs(owner: HostIds, attrs: u64) -> Result<OwnedFd, SysError> {
    let number = |id: u32| CString::new(id.to_string()).expect("digits have no NUL");
    let (uid, gid) = (number(owner.uid), number(owner.gid));
    sys::detached_tmpfs(
        &[
            (c"source", c"tmpfs"),
            (c"mode", c"0755"),
            (c"uid", &uid),
            (c"gid", &gid),
        ],
        attrs,
    )
}

/// A directory of a template, `0755` and owned by `owner`.
fn make_dir_at(dir: &OwnedFd, name: &Path, owner: HostIds) -> Result<(), SysError> {
    let shown = Path::new("/").join(name);
    nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)).op_path("mkdir", &shown)?;
    nix::unistd::fchownat(
        dir,
        name,
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .op_path("chown", &shown)
}
