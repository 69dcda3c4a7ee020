//! The sandbox's root filesystem: the template the zygote builds once ([`RootTemplate`])
//! and, in the sandbox's init, its own mount namespace's root: a copy of the template
//! with its own `/proc`, `/tmp`, `/dev/shm` and binds, or one assembled there.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::{step, timeline, HostIds, SetupError};
use crate::protocol::{Bind, Limits, SandboxConfig, SetupStep};
use crate::sys::{self, Context, NewProcess, SysError};

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
/// A read-only mount of the sandbox's root: no writes, no setuid, no devices.
const READ_ONLY: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

/// The symlinks of the sandbox's `/dev`.
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

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
/// root, see [`has_mount_points`].)
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
    /// the first to need them. A chroot, or binds the templates cannot serve (mount
    /// points to make inside the host's directories; one more set when
    /// [`Self::MOST_VARIANTS`] are kept), get the default one, whose copy they do not
    /// use (see [`build_root`]).
    pub fn for_sandbox(&self, config: &SandboxConfig) -> Arc<RootTemplate> {
        if config.chroot_dir.is_some() {
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

/// Whether `path` (relative to the root) is in the sandbox's own `/tmp` or `/dev/shm`,
/// where a bind's missing mount point is made in the sandbox.
fn in_sandbox_scratch(path: &Path) -> bool {
    path.starts_with("tmp") || path.starts_with("dev/shm")
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

/// Builds the root and pivots into it, in the steps from [`SetupStep::ScratchRoot`] to
/// [`SetupStep::ReadOnlyRoot`]. Runs in the sandbox init, with its capabilities in its
/// own user namespace, before they are dropped. `template` is the zygote's
/// [`RootTemplate`], if it has one: the root is a copy of it unless the request names a
/// chroot directory or a bind whose mount point the template lacks, and then it is
/// assembled here (with a copy of the template's `/dev`).
pub fn build_root(
    process: &NewProcess,
    config: &SandboxConfig,
    template: Option<BorrowedFd<'_>>,
) -> Result<(), SetupError> {
    // Nothing done below may propagate back to the host's mounts. (The scratch root's
    // step starts here; its end is noted again once the scratch root is there.)
    step(SetupStep::ScratchRoot, || {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .op_path("mount(MS_PRIVATE)", "/")
    })?;
    match template {
        Some(template)
            if config.chroot_dir.is_none() && has_mount_points(template, &config.binds) =>
        {
            copy_root(process, config, template)
        }
        _ => assemble_root(process, config, template),
    }
}

/// Whether every bind of the request can be mounted on a copy of the template: its
/// mount point is there (a directory only for a directory: a template makes its mount
/// points as directories), or can be made in the sandbox's own `/tmp` or `/dev/shm`.
/// (The template is read-only; a root assembled in the sandbox can also have new mount
/// points at its top.) The sources are looked at here, with the sandbox's credentials,
/// never by the daemon.
fn has_mount_points(template: BorrowedFd<'_>, binds: &[Bind]) -> bool {
    binds.iter().all(|b| {
        let target = relative(b.target.as_path());
        if in_sandbox_scratch(&target) {
            return true;
        }
        match nix::sys::stat::fstatat(template, &target, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(point) if is_dir(point.st_mode) => {
                std::fs::metadata(b.source.as_path()).is_ok_and(|source| source.is_dir())
            }
            Ok(_) => true,
            Err(_) => false,
        }
    })
}

fn is_dir(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

/// Where the copy of the template is attached until it becomes the root: over the
/// host's `/tmp`, in this mount namespace only.
const COPY: &str = "/tmp";

/// The root as a copy of the template, attached at [`COPY`], with the sandbox's own
/// `/proc`, `/tmp` and `/dev/shm` and its binds mounted on it; then it becomes `/`, and
/// the host's tree, stacked on it, is detached.
fn copy_root(
    process: &NewProcess,
    config: &SandboxConfig,
    template: BorrowedFd<'_>,
) -> Result<(), SetupError> {
    // The binds' sources first: one may be under the host's /tmp, which the copy hides.
    // (A failure here is the binds' step's; its end is noted again once they are made.)
    let binds = step(SetupStep::Binds, || {
        config
            .binds
            .iter()
            .map(|b| bound_tree(b.source.as_path(), b.writable).map(|tree| (b, tree)))
            .collect::<Result<Vec<_>, SysError>>()
    })?;
    let attached = step(SetupStep::ScratchRoot, || {
        // Nothing is attached when either call fails: the kernel may refuse a copy of
        // the zygote's mount here (an older kernel), and the root is then assembled.
        Ok::<_, SysError>(
            sys::clone_mount_tree(Some(template), c"")
                .and_then(|copy| {
                    sys::attach_mount_tree(copy.as_fd(), None, &c_path(Path::new(COPY))?)
                })
                .is_ok(),
        )
    })?;
    if !attached {
        drop(binds);
        return assemble_root(process, config, Some(template));
    }
    // The template has the host's directories (and is read-only, see below): those
    // steps are done with the copy, and cannot fail.
    timeline::mark(SetupStep::RootDirectories);
    let copy = Path::new(COPY);
    let scratch = step(SetupStep::ProcAndTmp, || {
        mount_proc_and_tmp(copy, &config.limits)
    })?;
    step(SetupStep::Dev, || {
        mount_shm(&copy.join("dev/shm"), &scratch)
    })?;
    step(SetupStep::Binds, || {
        for (b, tree) in binds {
            let target = copy.join(relative(b.target.as_path()));
            let is_dir = nix::sys::stat::fstat(&tree)
                .op_path("stat", b.source.as_path())
                .map(|stat| is_dir(stat.st_mode))?;
            make_mount_point(&target, is_dir)?;
            sys::attach_mount_tree(tree.as_fd(), None, &c_path(&target)?)?;
        }
        Ok::<_, SysError>(())
    })?;
    swap_root(process, copy, Some(template))?;
    timeline::mark(SetupStep::ReadOnlyRoot);
    Ok(())
}

/// A detached copy of the host's `source` (and every mount below it) to bind into the
/// sandbox: `nosuid`, `nodev`, and read-only unless `writable`.
fn bound_tree(source: &Path, writable: bool) -> Result<OwnedFd, SysError> {
    let tree = sys::clone_mount_tree(None, &c_path(source)?).map_err(|e| e.on(source))?;
    sys::mount_setattr_at(Some(tree.as_fd()), c"", bind_attrs(writable), true)?;
    Ok(tree)
}

/// The root assembled in the sandbox (bubblewrap's double pivot): a scratch tmpfs becomes
/// the root so that the host's root is reachable under `/oldroot` whatever path a bind
/// names (even under the host's `/tmp`); the new root is assembled under `/newroot`; a
/// second pivot makes it `/` and the scratch root with the host's tree beneath it is
/// detached.
fn assemble_root(
    process: &NewProcess,
    config: &SandboxConfig,
    template: Option<BorrowedFd<'_>>,
) -> Result<(), SetupError> {
    // A scratch tmpfs becomes "/" and the host's root moves under /oldroot. Our tmpfs is on
    // the host's /tmp only in this namespace, and after the pivot /oldroot/tmp is the
    // host's real /tmp again.
    step(SetupStep::ScratchRoot, || {
        mount_tmpfs("/tmp", "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
        make_dir("/tmp/oldroot")?;
        make_dir("/tmp/newroot")?;
        nix::unistd::pivot_root("/tmp", "/tmp/oldroot").op_path("pivot_root", "/tmp")?;
        nix::unistd::chdir("/").op_path("chdir", "/")
    })?;

    step(SetupStep::RootDirectories, || match &config.chroot_dir {
        Some(dir) => {
            // The caller's tree, read-only before anything is mounted on top of it: its
            // mount points must already exist, nothing is created in a host directory.
            let source = host_path(dir.as_path());
            bind(&source, Path::new(NEW_ROOT))?;
            set_attrs(Path::new(NEW_ROOT), READ_ONLY)
        }
        None => {
            mount_tmpfs(
                NEW_ROOT,
                "mode=0755",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            )?;
            HOST_ROOT_DIRS.into_iter().try_for_each(add_host_dir)
        }
    })?;

    let new_root = Path::new(NEW_ROOT);
    let scratch = step(SetupStep::ProcAndTmp, || {
        make_dir_if_missing(&new_root.join("proc"))?;
        make_dir_if_missing(&new_root.join("tmp"))?;
        mount_proc_and_tmp(new_root, &config.limits)
    })?;
    step(SetupStep::Dev, || build_dev(&scratch, template))?;
    step(SetupStep::Binds, || {
        config.binds.iter().try_for_each(add_bind)
    })?;
    swap_root(process, new_root, template)?;

    step(SetupStep::ReadOnlyRoot, || match config.chroot_dir {
        // Only now, when every mount point in it exists: the root itself read-only.
        // Not recursive, so /tmp and /dev/shm stay writable.
        None => set_attrs_one(Path::new("/"), READ_ONLY),
        // A chroot directory was made read-only when it was bound.
        Some(_) => Ok(()),
    })
}

/// Mounts a fresh `/proc` (it shows only this pid namespace) and the sandbox's `/tmp` in
/// `root`, whose mount points exist; returns the options of the sandbox's writable
/// tmpfs mounts.
fn mount_proc_and_tmp(root: &Path, limits: &Limits) -> Result<String, SysError> {
    let proc_dir = root.join("proc");
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .op_path("mount(proc)", &proc_dir)?;
    let scratch = scratch_options(limits);
    mount_tmpfs(
        root.join("tmp"),
        &scratch,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )?;
    Ok(scratch)
}

/// Makes `root` the root: the host's tree is stacked on it by the pivot, then detached;
/// and `template`, the zygote's root template, is closed (it was kept for the root
/// alone: nothing after needs it, and the workload must not have it; the init never
/// drops its copy of the sandboxer, which owns it).
fn swap_root(
    process: &NewProcess,
    root: &Path,
    template: Option<BorrowedFd<'_>>,
) -> Result<(), SetupError> {
    step(SetupStep::PivotRoot, || {
        nix::unistd::chdir(root).op_path("chdir", root)?;
        nix::unistd::pivot_root(".", ".").op_path("pivot_root", root)
    })?;
    step(SetupStep::DetachOldRoot, || {
        umount2(".", MntFlags::MNT_DETACH).op_path("umount2", OLD_ROOT)?;
        nix::unistd::chdir("/").op_path("chdir", "/")?;
        if let Some(template) = template {
            let fd = template.as_raw_fd() as u32;
            process.close_range(fd, fd)?;
        }
        Ok::<_, SysError>(())
    })
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
/// mknod), a private /dev/shm, and the usual symlinks. A copy of the template's `/dev`
/// when there is a template and the copy can be attached; else built here.
fn build_dev(shm_options: &str, template: Option<BorrowedFd<'_>>) -> Result<(), SysError> {
    let dev = inside("/dev");
    make_dir_if_missing(&dev)?;
    if let Some(template) = template {
        let attached = sys::clone_mount_tree(Some(template), c"dev")
            .and_then(|copy| sys::attach_mount_tree(copy.as_fd(), None, &c_path(&dev)?));
        // Nothing is attached when either call fails: the kernel may refuse a copy of
        // the zygote's mount here (an older kernel), and /dev is then built below.
        if attached.is_ok() {
            return mount_shm(&dev.join("shm"), shm_options);
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
    mount_shm(&shm, shm_options)?;
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

/// The sandbox's own `/dev/shm`.
fn mount_shm(path: &Path, options: &str) -> Result<(), SysError> {
    mount_tmpfs(
        path,
        options,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    )
}

/// Adds one host directory of the default root, read-only.
fn add_host_dir(dir: &str) -> Result<(), SysError> {
    let source = host_path(Path::new(dir));
    let target = inside(dir);
    match host_dir(&source)? {
        HostDir::Missing => Ok(()),
        HostDir::Symlink(link) => symlink(&link, &target).op_path("symlink", &target),
        HostDir::Directory => {
            make_dir(&target)?;
            bind(&source, &target)?;
            set_attrs(&target, READ_ONLY)
        }
    }
}

/// What a host directory of the default root is on this host.
enum HostDir {
    /// Not there: skipped.
    Missing,
    /// A symlink (`/bin` on a merged-`/usr` system): recreated, with its target.
    Symlink(PathBuf),
    /// A directory: bound read-only.
    Directory,
}

/// Looks at the host directory at `path` (its symlink itself, not followed).
fn host_dir(path: &Path) -> Result<HostDir, SysError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(path)
            .map(HostDir::Symlink)
            .op_path("readlink", path),
        Ok(_) => Ok(HostDir::Directory),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostDir::Missing),
        Err(e) => Err(SysError::from_io("lstat", Some(path), &e)),
    }
}

/// Adds one requested bind mount.
fn add_bind(b: &Bind) -> Result<(), SysError> {
    let source = host_path(b.source.as_path());
    let target = inside(b.target.as_os_str());
    let meta = std::fs::metadata(&source).op_path("stat", b.source.as_path())?;
    make_mount_point(&target, meta.is_dir())?;
    bind(&source, &target)?;
    set_attrs(&target, bind_attrs(b.writable))
}

/// The attributes of a requested bind mount.
fn bind_attrs(writable: bool) -> u64 {
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if !writable {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    attrs
}

/// Makes `target` (and its missing parents) to mount a directory on, or a file, unless
/// something is there already.
fn make_mount_point(target: &Path, is_dir: bool) -> Result<(), SysError> {
    match std::fs::symlink_metadata(target) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = target.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .op_path("mkdir", parent)?;
            }
            if is_dir {
                make_dir(target)
            } else {
                make_file(target)
            }
        }
        Err(e) => Err(SysError::from_io("lstat", Some(target), &e)),
    }
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
