//! A sandbox's own root: runs in the sandbox's init (PID 1 of its namespaces), with the
//! capabilities it holds in its own user namespace, before they are dropped. These are
//! the recipe's steps from `ScratchRoot` to `ReadOnlyRoot` (see `init`), built from a
//! copy of the zygote's root template (`root_template`) or assembled here.
//!
//! The order matters: the mounts are made private first, so that nothing propagates back
//! to the host; a bind's source is taken before a template's copy hides the host's
//! `/tmp`; the root becomes `/` with the host's tree detached and the template's fd
//! closed, so that nothing of the host's is in reach; and an assembled root is made
//! read-only only once every mount point in it exists (a template's copy already is).

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::mounts::{
    bind_attrs, bound_tree, c_path, in_sandbox_scratch, relative, DEVICES, DEV_LINKS,
    HOST_ROOT_DIRS, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, READ_ONLY,
};
use super::{step, timeline, SetupError};
use crate::protocol::{Bind, Limits, Mount, SandboxConfig, SetupStep};
use crate::sys::{self, Context, NewProcess, SysError};

/// Where the host's root is while the new root is assembled.
const OLD_ROOT: &str = "/oldroot";
/// Where the new root is assembled.
const NEW_ROOT: &str = "/newroot";

/// Builds the root and pivots into it, in the steps from [`SetupStep::ScratchRoot`] to
/// [`SetupStep::ReadOnlyRoot`]. Runs in the sandbox init, with its capabilities in its
/// own user namespace, before they are dropped. `template` is the zygote's
/// [`RootTemplate`], if it has one: the root is a copy of it unless the request names a
/// chroot directory or a bind whose mount point the template lacks, and then it is
/// assembled here (with a copy of the template's `/dev`).
///
/// [`RootTemplate`]: super::root_template::RootTemplate
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
            if config.chroot_dir.is_none()
                && config.mounts.is_empty()
                && has_mount_points(template, &config.binds) =>
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
            let target = make_mount_point(copy, &target, is_dir)?;
            sys::attach_mount_tree(tree.as_fd(), None, &c_path(&target)?)?;
        }
        Ok::<_, SysError>(())
    })?;
    swap_root(process, copy, Some(template))?;
    timeline::mark(SetupStep::ReadOnlyRoot);
    Ok(())
}

/// The root assembled in the sandbox (bubblewrap's double pivot): a scratch tmpfs becomes
/// the root so that the host's root is reachable under `/oldroot` whatever path a bind
/// names (even under the host's `/tmp`); the new root, a tmpfs of the sandbox's own, is
/// assembled under `/newroot` from the chroot directory's top-level entries or the
/// host's directories, bound read-only; a second pivot makes it `/` and the scratch root
/// with the host's tree beneath it is detached.
///
/// A mount point the request needs where the directory it would be made in is bound
/// from the host is made in a tmpfs instead: that directory becomes a tmpfs of the
/// sandbox's own holding its entries bound one by one (see [`expose`]), so that nothing
/// is ever created in a host directory bound read-only, and a chroot directory needs no
/// `/proc`, `/dev`, `/tmp` or any mount point of its own.
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

    let targets = mount_targets(config);
    step(SetupStep::RootDirectories, || {
        mount_tmpfs(
            NEW_ROOT,
            "mode=0755",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        )?;
        match &config.chroot_dir {
            // The caller's tree: each top-level entry, but the sandbox's own /proc,
            // /dev and /tmp.
            Some(dir) => {
                let source = host_path(dir.as_path());
                for name in entries(&source)? {
                    if !OWN_DIRS.iter().any(|own| name == *own) {
                        let below = below(&targets, Path::new(&name));
                        expose(&source.join(&name), &inside(&name), &below)?;
                    }
                }
                Ok(())
            }
            None => HOST_ROOT_DIRS.into_iter().try_for_each(|dir| {
                let below = below(&targets, &relative(Path::new(dir)));
                expose(&host_path(Path::new(dir)), &inside(dir), &below)
            }),
        }
    })?;

    let new_root = Path::new(NEW_ROOT);
    let scratch = step(SetupStep::ProcAndTmp, || {
        make_dir_if_missing(&new_root.join("proc"))?;
        make_dir_if_missing(&new_root.join("tmp"))?;
        mount_proc_and_tmp(new_root, &config.limits)
    })?;
    // Mount points to make in /dev: it stays writable (and is built here rather than
    // copied from the template, whose /dev is read-only) until they are made.
    let in_dev = targets
        .iter()
        .any(|t| t.starts_with("dev") && !in_sandbox_scratch(t));
    step(SetupStep::Dev, || {
        build_dev(&scratch, template.filter(|_| !in_dev), !in_dev)
    })?;
    step(SetupStep::Binds, || {
        config.binds.iter().try_for_each(add_bind)?;
        for (index, mount) in config.mounts.iter().enumerate() {
            add_mount(index, mount, &scratch)?;
        }
        if in_dev {
            set_attrs_one(&inside("/dev"), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)?;
        }
        Ok::<_, SysError>(())
    })?;
    swap_root(process, new_root, template)?;

    // Only now, when every mount point in it exists: the root itself read-only. Not
    // recursive, so /tmp and /dev/shm stay writable.
    step(SetupStep::ReadOnlyRoot, || {
        set_attrs_one(Path::new("/"), READ_ONLY)
    })
}

/// The directories of a chroot's top level that the sandbox has its own of: never
/// bound from the chroot directory.
const OWN_DIRS: [&str; 3] = ["proc", "dev", "tmp"];

/// The mount points the request names (of its binds and mounts), relative to the root,
/// but those in the sandbox's own `/tmp` and `/dev/shm`.
fn mount_targets(config: &SandboxConfig) -> Vec<PathBuf> {
    config
        .binds
        .iter()
        .map(|b| &b.target)
        .chain(config.mounts.iter().map(Mount::target))
        .map(|target| relative(target.as_path()))
        .filter(|target| !in_sandbox_scratch(target))
        .collect()
}

/// The paths of `targets` below `dir`, relative to it.
fn below(targets: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    targets
        .iter()
        .filter_map(|t| t.strip_prefix(dir).ok())
        .map(Path::to_path_buf)
        .collect()
}

/// The names in the host directory `dir`.
fn entries(dir: &Path) -> Result<Vec<std::ffi::OsString>, SysError> {
    let error = |e: std::io::Error| SysError::from_io("opendir", Some(&display_host(dir)), &e);
    std::fs::read_dir(dir)
        .map_err(error)?
        .map(|entry| entry.map(|entry| entry.file_name()).map_err(error))
        .collect()
}

/// Puts the host's `source` at `target` in the new root, read-only: a symlink as a
/// symlink, anything else bound (a missing `source` is skipped). A directory in which
/// one of `needed` (paths relative to it) is missing becomes a directory of the new
/// root's tmpfs holding each of its entries put there the same way, so that the mount
/// point can be made in the tmpfs rather than in `source`.
fn expose(source: &Path, target: &Path, needed: &[PathBuf]) -> Result<(), SysError> {
    let meta = match std::fs::symlink_metadata(source) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SysError::from_io("lstat", Some(&display_host(source)), &e)),
    };
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(source).op_path("readlink", display_host(source))?;
        return symlink(&link, target).op_path("symlink", target);
    }
    if !meta.is_dir() {
        make_file(target)?;
        bind(source, target)?;
        return set_attrs(target, READ_ONLY);
    }
    make_dir(target)?;
    let complete = needed
        .iter()
        .all(|path| std::fs::symlink_metadata(source.join(path)).is_ok());
    if complete {
        bind(source, target)?;
        return set_attrs(target, READ_ONLY);
    }
    for name in entries(source)? {
        let below = below(needed, Path::new(&name));
        expose(&source.join(&name), &target.join(&name), &below)?;
    }
    Ok(())
}

/// Makes one of the request's [`Mount`]s; `index` names a file's contents while they
/// wait in the scratch root, `scratch` is the options of the sandbox's tmpfs mounts.
fn add_mount(index: usize, mount: &Mount, scratch: &str) -> Result<(), SysError> {
    let target = inside(mount.target().as_os_str());
    match mount {
        Mount::BindIfExists(b) => match std::fs::symlink_metadata(host_path(b.source.as_path())) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            _ => add_bind(b),
        },
        Mount::DevBind { source, .. } => {
            let host = host_path(source.as_path());
            let meta = std::fs::metadata(&host).op_path("stat", source.as_path())?;
            let target = make_mount_point(Path::new(NEW_ROOT), &target, meta.is_dir())?;
            bind(&host, &target)?;
            // Writable, device nodes usable; never setuid.
            set_attrs(&target, MOUNT_ATTR_NOSUID)
        }
        Mount::Tmpfs { .. } => {
            let target = make_mount_point(Path::new(NEW_ROOT), &target, true)?;
            mount_tmpfs(&target, scratch, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
        }
        Mount::Dir { .. } => make_mount_point(Path::new(NEW_ROOT), &target, true).map(drop),
        Mount::Symlink { points_to, .. } => {
            let target = resolve_in(Path::new(NEW_ROOT), &target)?;
            make_parents(&target)?;
            symlink(points_to.as_path(), &target).op_path("symlink", &target)
        }
        Mount::File { contents, .. } => {
            // Written in the scratch root (detached with it; the bind keeps the file),
            // then bound read-only: the workload can read it, never change it.
            let staged = PathBuf::from(format!("/file-{index}"));
            make_file(&staged)?;
            std::fs::write(&staged, contents).op_path("write", &staged)?;
            let target = make_mount_point(Path::new(NEW_ROOT), &target, false)?;
            bind(&staged, &target)?;
            set_attrs(&target, READ_ONLY)
        }
    }
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
/// when there is a template and the copy can be attached; else built here, and made
/// read-only unless `read_only` is false (mount points are still to be made in it).
fn build_dev(
    shm_options: &str,
    template: Option<BorrowedFd<'_>>,
    read_only: bool,
) -> Result<(), SysError> {
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
    // The mount point of a persistent sandbox's own devpts (empty in the others).
    make_dir(dev.join("pts"))?;
    for (link, target) in DEV_LINKS {
        let path = dev.join(link);
        symlink(target, &path).op_path("symlink", &path)?;
    }
    // Every mount in /dev nosuid (the device nodes' binds, /dev/shm), /dev itself also
    // read-only (not /dev/shm).
    set_attrs(&dev, MOUNT_ATTR_NOSUID)?;
    if read_only {
        set_attrs_one(&dev, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)?;
    }
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

/// Adds one requested bind mount.
fn add_bind(b: &Bind) -> Result<(), SysError> {
    let source = host_path(b.source.as_path());
    let target = inside(b.target.as_os_str());
    let meta = std::fs::metadata(&source).op_path("stat", b.source.as_path())?;
    let target = make_mount_point(Path::new(NEW_ROOT), &target, meta.is_dir())?;
    bind(&source, &target)?;
    set_attrs(&target, bind_attrs(b.writable))
}

/// Makes `target`, a path under the root being built at `root` (and its missing
/// parents), to mount a directory on, or a file, unless something is there already;
/// returns it with its symlinks resolved inside `root` (see [`resolve_in`]), the path
/// to mount on.
fn make_mount_point(root: &Path, target: &Path, is_dir: bool) -> Result<PathBuf, SysError> {
    let target = resolve_in(root, target)?;
    match std::fs::symlink_metadata(&target) {
        Ok(_) => Ok(target),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            make_parents(&target)?;
            if is_dir {
                make_dir(&target)?;
            } else {
                make_file(&target)?;
            }
            Ok(target)
        }
        Err(e) => Err(SysError::from_io("lstat", Some(&target), &e)),
    }
}

/// The most symlinks one path may pass through, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// `target`, a path under `root`, with every symlink on its way resolved as if `root`
/// were `/` (what `openat2`'s `RESOLVE_IN_ROOT` does) and `..` stopping at `root`.
///
/// While a root is built, `/` is the scratch root and the host's tree is under
/// `/oldroot`: a symlink of a chroot's (or one a sandbox left in a shared directory)
/// followed as it is could aim a mount point, and the directories made for it, at the
/// host's files. Past the first missing component nothing exists to follow, and the
/// rest is taken as it reads.
fn resolve_in(root: &Path, target: &Path) -> Result<PathBuf, SysError> {
    use std::collections::VecDeque;
    use std::path::Component;
    fn parts(path: &Path) -> impl Iterator<Item = std::ffi::OsString> + '_ {
        path.components().filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
    }
    let mut rest: VecDeque<_> = parts(target.strip_prefix(root).unwrap_or(target)).collect();
    let mut resolved = root.to_path_buf();
    let (mut hops, mut missing) = (0, false);
    while let Some(name) = rest.pop_front() {
        if name == ".." {
            if resolved != root {
                resolved.pop();
            }
            continue;
        }
        let next = resolved.join(&name);
        if missing {
            resolved = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(SysError::with_path(
                        "resolve",
                        next,
                        nix::errno::Errno::ELOOP,
                    ));
                }
                let link = std::fs::read_link(&next).op_path("readlink", &next)?;
                if link.is_absolute() {
                    resolved = root.to_path_buf();
                }
                for part in parts(&link).collect::<Vec<_>>().into_iter().rev() {
                    rest.push_front(part);
                }
            }
            Ok(_) => resolved = next,
            Err(_) => {
                missing = true;
                resolved = next;
            }
        }
    }
    Ok(resolved)
}

/// Makes the missing parents of `target`.
fn make_parents(target: &Path) -> Result<(), SysError> {
    match target.parent() {
        Some(parent) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .op_path("mkdir", parent),
        None => Ok(()),
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
