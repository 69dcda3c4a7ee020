//! Thin wrappers over the system calls that nix does not cover safely.
//!
//! This is the only module allowed `unsafe`. Each wrapper is named after its system call,
//! takes and returns owned or borrowed file descriptors (never a bare `RawFd` that
//! outlives the call) and reports failure as a [`SysError`] naming the operation, the
//! path if there is one, and the errno. Runs in the zygote, the sandbox init and the
//! workload alike.

use std::ffi::CStr;
use std::fmt;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

/// A failed system call: which operation, on which path, and the errno.
///
/// Displayed as `pivot_root("/new"): EPERM (Operation not permitted)`. It is
/// serialisable so a sandbox whose setup fails can send it to the zygote.
///
/// ```
/// use hatchery::sys::SysError;
/// let err = SysError::with_path("mount", "/proc", nix::errno::Errno::EPERM);
/// assert_eq!(err.to_string(), "mount(\"/proc\"): EPERM (Operation not permitted)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct SysError {
    /// The system call or operation, e.g. `"pivot_root"`.
    pub op: String,
    /// The path it acted on, when there is one.
    pub path: Option<String>,
    /// The raw errno value.
    pub errno: i32,
}

impl SysError {
    /// An error of `op` without a path.
    pub fn new(op: impl Into<String>, errno: Errno) -> Self {
        SysError {
            op: op.into(),
            path: None,
            errno: errno as i32,
        }
    }

    /// An error of `op` on `path`.
    pub fn with_path(
        op: impl Into<String>,
        path: impl AsRef<std::path::Path>,
        errno: Errno,
    ) -> Self {
        SysError {
            op: op.into(),
            path: Some(path.as_ref().to_string_lossy().into_owned()),
            errno: errno as i32,
        }
    }

    /// The same error, on `path`.
    pub fn on(self, path: impl AsRef<std::path::Path>) -> Self {
        let errno = self.errno();
        SysError::with_path(self.op, path, errno)
    }

    /// The errno as a nix value.
    pub fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }

    /// Converts an `io::Error` from the standard library.
    pub fn from_io(
        op: impl Into<String>,
        path: Option<&std::path::Path>,
        err: &std::io::Error,
    ) -> Self {
        let errno = Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO));
        match path {
            Some(p) => SysError::with_path(op, p, errno),
            None => SysError::new(op, errno),
        }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errno = self.errno();
        match &self.path {
            Some(path) => write!(f, "{}({:?}): {:?} ({})", self.op, path, errno, errno.desc()),
            None => write!(f, "{}: {:?} ({})", self.op, errno, errno.desc()),
        }
    }
}

/// Attaches the operation (and path) to a nix result.
pub trait Context<T> {
    /// Names the operation that failed.
    fn op(self, op: &str) -> Result<T, SysError>;
    /// Names the operation and the path it acted on.
    fn op_path(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T, SysError>;
}

impl<T> Context<T> for nix::Result<T> {
    fn op(self, op: &str) -> Result<T, SysError> {
        self.map_err(|e| SysError::new(op, e))
    }
    fn op_path(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T, SysError> {
        self.map_err(|e| SysError::with_path(op, path, e))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn op(self, op: &str) -> Result<T, SysError> {
        self.map_err(|e| SysError::from_io(op, None, &e))
    }
    fn op_path(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T, SysError> {
        self.map_err(|e| SysError::from_io(op, Some(path.as_ref()), &e))
    }
}

/// The value of `CLONE_INTO_CGROUP`; `libc::CLONE_INTO_CGROUP` overflows to 0 on x86_64.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What `clone3` returned in each process.
pub enum Cloned {
    /// We are the new process.
    Child,
    /// We are the caller; the new process has this pid (in our pid namespace) and pidfd.
    Parent { pid: i32, pidfd: OwnedFd },
}

/// `clone3(2)` without a new stack (fork semantics) and with `CLONE_PIDFD`.
///
/// `flags` are the namespace flags; `SIGCHLD` is delivered to the caller on exit. With
/// `cgroup`, the child starts in that cgroup (v2 `CLONE_INTO_CGROUP`).
/// The caller must be single-threaded: the child is a copy of this thread only, and any
/// lock another thread held stays locked forever in the child.
pub fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Cloned, SysError> {
    let mut pidfd: RawFd = -1;
    let into_cgroup = if cgroup.is_some() {
        CLONE_INTO_CGROUP
    } else {
        0
    };
    let mut args = libc::clone_args {
        flags: flags | libc::CLONE_PIDFD as u64 | into_cgroup,
        pidfd: &mut pidfd as *mut RawFd as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    // SAFETY: `args` is a valid, fully initialised clone_args of the size we pass; with
    // no stack given the child continues on a copy of our stack like fork(2). The kernel
    // writes the pidfd into `pidfd`, which outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        -1 => Err(SysError::new("clone3", Errno::last())),
        0 => Ok(Cloned::Child),
        pid => {
            // SAFETY: CLONE_PIDFD succeeded, so the kernel stored a new fd that we own.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Cloned::Parent {
                pid: pid as i32,
                pidfd,
            })
        }
    }
}

/// `fork(2)`. The caller must be single-threaded (the sandbox init always is).
pub fn fork() -> Result<Option<i32>, SysError> {
    // SAFETY: callers are single-threaded processes (the sandbox init), so the child
    // cannot inherit a lock held by another thread.
    match unsafe { nix::unistd::fork() }.op("fork")? {
        nix::unistd::ForkResult::Child => Ok(None),
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
    }
}

/// The stack of a [`spawn_sharing_memory`] child, guard page included: its code only
/// makes system calls, so a few pages are plenty.
const SHARED_CHILD_STACK: usize = 64 * 1024;

/// A fresh private anonymous mapping of `len` bytes, readable and writable, with `flags`
/// added; `op` names it in the error.
fn map_anonymous(
    len: usize,
    flags: libc::c_int,
    op: &'static str,
) -> Result<*mut libc::c_void, SysError> {
    // SAFETY: a new mapping at an address the kernel picks; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(SysError::new(op, Errno::last()));
    }
    Ok(base)
}

/// A mapping used as a child's stack, unmapped on drop.
struct ChildStack(*mut libc::c_void);

impl ChildStack {
    fn map() -> Result<ChildStack, SysError> {
        let base = map_anonymous(SHARED_CHILD_STACK, libc::MAP_STACK, "mmap(child stack)")?;
        let stack = ChildStack(base);
        // The lowest page is a guard: an overflow faults rather than write below it.
        // SAFETY: the first page of the mapping made above.
        if unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) } == -1 {
            return Err(SysError::new("mprotect(child stack guard)", Errno::last()));
        }
        Ok(stack)
    }

    /// The initial stack pointer: the mapping's end, 16-byte aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is in bounds for `add`.
        unsafe { (self.0 as *mut u8).add(SHARED_CHILD_STACK) as *mut libc::c_void }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer used: the child it served has
        // exec'd or exited (CLONE_VFORK), or was never started.
        unsafe { libc::munmap(self.0, SHARED_CHILD_STACK) };
    }
}

/// Runs `child(arg)` in a new process that shares this one's memory until it execs or
/// exits, this process suspended meanwhile: `clone(CLONE_VM | CLONE_VFORK)`, as
/// `posix_spawn` does. Unlike `fork`, nothing of the address space is copied, nor torn
/// down again at the child's `execve`, which in a copy of the zygote is most of a fork's
/// cost. Returns the child's pid once it has exec'd or exited.
///
/// `child` runs on a stack of its own, with every signal blocked (so no handler of this
/// process runs on that stack; the child sets the mask it wants once its handlers are
/// reset). It must not return, allocate, free or change anything in memory that this
/// process will read: it may only make system calls, and end in [`execve`] or
/// [`exit_now`]. The caller must be single-threaded.
pub fn spawn_sharing_memory<T>(arg: &T, child: fn(&T) -> !) -> Result<i32, SysError> {
    struct Start<'a, T> {
        arg: &'a T,
        child: fn(&T) -> !,
    }
    extern "C" fn trampoline<T>(start: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `start` points at the `Start` below, alive until the child has exec'd
        // or exited, because the parent is suspended until then (CLONE_VFORK).
        let start = unsafe { &*(start as *const Start<'_, T>) };
        (start.child)(start.arg)
    }
    let stack = ChildStack::map()?;
    let mut start = Start { arg, child };
    // SAFETY: sigset_t is plain old data; `all` is filled by sigfillset before use and
    // `saved` receives the current mask.
    let (mut all, mut saved): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: both sets are valid for these calls.
    let blocked = unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut saved)
    };
    if blocked == -1 {
        return Err(SysError::new("sigprocmask", Errno::last()));
    }
    // SAFETY: the child runs `trampoline` on its own stack and, by `child`'s contract
    // (above), leaves this process's memory intact; `start` lives in this frame, which
    // stays put while we are suspended.
    let pid = unsafe {
        libc::clone(
            trampoline::<T>,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut start as *mut Start<'_, T> as *mut libc::c_void,
        )
    };
    let clone_errno = Errno::last();
    // SAFETY: `saved` is the mask read above.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    if pid == -1 {
        return Err(SysError::new("clone(CLONE_VM | CLONE_VFORK)", clone_errno));
    }
    Ok(pid)
}

/// C strings and the NULL-terminated array of pointers to them that `execve` takes,
/// built ahead so that the exec itself allocates nothing.
pub struct CStringArray {
    // Owns the bytes the pointers point at; heap buffers, so moving it moves nothing.
    _strings: Vec<std::ffi::CString>,
    pointers: Vec<*const libc::c_char>,
}

impl CStringArray {
    pub fn new(strings: Vec<std::ffi::CString>) -> CStringArray {
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        CStringArray {
            _strings: strings,
            pointers,
        }
    }
}

/// `execve(2)`, allocating nothing (nix's `execve` builds its pointer arrays at the
/// call): fit for a [`spawn_sharing_memory`] child. Returns only on failure.
pub fn execve(program: &CStr, argv: &CStringArray, envp: &CStringArray) -> Errno {
    // SAFETY: `program` is NUL-terminated; both pointer arrays end in NULL and point at
    // the NUL-terminated strings their `CStringArray` owns, alive for the call.
    unsafe {
        libc::execve(
            program.as_ptr(),
            argv.pointers.as_ptr(),
            envp.pointers.as_ptr(),
        )
    };
    Errno::last()
}

/// `pidfd_send_signal(2)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<(), SysError> {
    // SAFETY: plain syscall with a live fd, a null siginfo and no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == -1 {
        return Err(SysError::new("pidfd_send_signal", Errno::last()));
    }
    Ok(())
}

/// `close_range(first, last, flags)`: closes (or, with `CLOSE_RANGE_CLOEXEC`, marks
/// close-on-exec) every fd from `first` to `last`; `u32::MAX` means all the rest.
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), SysError> {
    close_range_errno(first, last, flags).map_err(|errno| SysError::new("close_range", errno))
}

/// [`close_range`] with every fd from `first` up marked close-on-exec, allocating
/// nothing, not even for its error: fit for a child that shares its parent's memory.
pub fn close_on_exec_from(first: u32) -> Result<(), Errno> {
    close_range_errno(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC)
}

fn close_range_errno(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: closing fds is memory-safe; callers (the sandbox init and workload) own the
    // fds in the range and hold no Rust object that still uses them.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if ret == -1 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `dup3(fd, target, flags)`: makes `target` a copy of `fd`, closing what `target` was.
///
/// Used to place stdio on 0, 1 and 2. When `fd` already is `target`, its close-on-exec
/// flag is cleared instead (dup3 refuses equal fds).
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), SysError> {
    if fd.as_raw_fd() == target {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).op("fcntl(F_GETFD)")?;
        let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags)).op("fcntl(F_SETFD)")?;
        return Ok(());
    }
    // SAFETY: dup3 only touches the fd table; `target` is a stdio slot this process owns.
    let ret = unsafe { libc::dup3(fd.as_raw_fd(), target, 0) };
    if ret == -1 {
        return Err(SysError::new("dup3", Errno::last()));
    }
    Ok(())
}

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

/// `prctl(PR_CAPBSET_DROP, cap)`.
pub fn capbset_drop(cap: u32) -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(SysError::new(
            format!("prctl(PR_CAPBSET_DROP, {cap})"),
            Errno::last(),
        ));
    }
    Ok(())
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
pub fn cap_ambient_clear_all() -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret == -1 {
        return Err(SysError::new(
            "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// `prctl(PR_SET_SECUREBITS, bits)`.
pub fn set_securebits(bits: u32) -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(SysError::new("prctl(PR_SET_SECUREBITS)", Errno::last()));
    }
    Ok(())
}

/// `struct __user_cap_header_struct` of `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct` of `<linux/capability.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, two data structs.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capget(2)` or `capset(2)` (`call`, named `name` in errors) on the calling thread's
/// sets, in the version-3 layout: capabilities 0-31 in `data[0]`, 32-63 in `data[1]`.
fn capabilities_call(
    call: libc::c_long,
    name: &'static str,
    data: &mut [CapData; 2],
) -> Result<(), SysError> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: version 3 reads (capset) or fills (capget) exactly two data structs, both
    // valid and writable for the call, and the structs have the kernel's layout.
    let ret = unsafe { libc::syscall(call, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    if ret == -1 {
        return Err(SysError::new(name, Errno::last()));
    }
    Ok(())
}

/// `capset(2)` with every set (effective, permitted, inheritable) empty.
pub fn capset_empty() -> Result<(), SysError> {
    capabilities_call(libc::SYS_capset, "capset", &mut [CapData::default(); 2])
}

/// `capget(2)`: whether any capability is left in the effective, permitted or
/// inheritable set of the calling thread (all 64 bits of each).
pub fn any_capability_left() -> Result<bool, SysError> {
    let mut data = [CapData::default(); 2];
    capabilities_call(libc::SYS_capget, "capget", &mut data)?;
    Ok(data
        .iter()
        .any(|d| d.effective != 0 || d.permitted != 0 || d.inheritable != 0))
}

/// `prctl(PR_CAPBSET_READ, cap)`: whether `cap` is in the bounding set.
pub fn capbset_has(cap: u32) -> Result<bool, SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(SysError::new(
            format!("prctl(PR_CAPBSET_READ, {cap})"),
            Errno::last(),
        ));
    }
    Ok(ret == 1)
}

/// Brings the loopback interface up with `SIOCSIFFLAGS` (cheaper than a netlink socket).
pub fn loopback_up() -> Result<(), SysError> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .op("socket(AF_INET)")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags inside `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } == -1 {
        return Err(SysError::with_path(
            "ioctl(SIOCGIFFLAGS)",
            "lo",
            Errno::last(),
        ));
    }
    // SAFETY: the kernel filled the flags member of the union just above.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // Up already in a namespace made ahead (see `sandbox::spare_namespaces`), where the sandbox
    // could not change it.
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads `req`, which holds the name and the new flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } == -1 {
        return Err(SysError::with_path(
            "ioctl(SIOCSIFFLAGS)",
            "lo",
            Errno::last(),
        ));
    }
    Ok(())
}

/// `accept4(2)` with `SOCK_CLOEXEC | SOCK_NONBLOCK`.
pub fn accept(listener: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let fd = nix::sys::socket::accept4(
        listener.as_raw_fd(),
        nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
    )
    .op("accept4")?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The supplementary groups of a socket's peer (`SO_PEERGROUPS`).
pub fn peer_groups(sock: BorrowedFd<'_>) -> Result<Vec<u32>, SysError> {
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<u32>()) as libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes and the kernel writes at most that many.
        let ret = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<u32>();
        if ret == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let errno = Errno::last();
        if errno == Errno::ERANGE && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Err(SysError::new("getsockopt(SO_PEERGROUPS)", errno));
    }
}

/// One message received with [`recv_with_fds`].
pub struct Received {
    /// Bytes of the message (0 at end of stream).
    pub len: usize,
    /// The fds that came with it, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The message was longer than the buffer.
    pub truncated: bool,
    /// More fds came than the protocol allows (they are in `fds`, to be closed).
    pub fds_truncated: bool,
}

/// The most fds one message of the protocol may carry.
pub const MAX_FDS_PER_MESSAGE: usize = 16;

/// The most fds the kernel passes in one message (`SCM_MAX_FD`). The control buffer is
/// sized for it, so a message is never truncated: a truncated control message would
/// leave the fds that did arrive in our table with nothing to close them.
const SCM_MAX_FD: usize = 253;

/// `recvmsg(2)` of one datagram with `MSG_CMSG_CLOEXEC`, collecting passed fds.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> Result<Received, SysError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let mut iov = [IoSliceMut::new(buf)];
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags).op("recvmsg")?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().op("recvmsg(cmsg)")? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: SCM_RIGHTS installed these fds in our table just now; we are
                // their only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        fds_truncated: msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > MAX_FDS_PER_MESSAGE,
        fds,
    })
}

/// `sendmsg(2)` of one datagram with fds attached (`SCM_RIGHTS`).
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), SysError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(bytes)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() {
        &[]
    } else {
        &[ControlMessage::ScmRights(&raw)]
    };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).op("sendmsg")?;
    Ok(())
}

/// Resource usage and status of a reaped child, from `wait4(2)`.
pub struct Reaped {
    /// The child's pid.
    pub pid: i32,
    /// The raw wait status.
    pub status: i32,
    /// Its resource usage (and that of the descendants it waited for).
    pub rusage: libc::rusage,
}

/// `wait4(-1, WNOHANG)`: reaps one exited child if there is one.
pub fn wait4_any_nohang() -> Result<Option<Reaped>, SysError> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both out-pointers are valid for the duration of the call.
    let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG | libc::__WALL, &mut rusage) };
    match pid {
        -1 if Errno::last() == Errno::ECHILD => Ok(None),
        -1 => Err(SysError::new("wait4", Errno::last())),
        0 => Ok(None),
        pid => Ok(Some(Reaped {
            pid,
            status,
            rusage,
        })),
    }
}

/// `waitid(P_PIDFD, WEXITED)`: blocks until the child behind `pidfd` has exited, and
/// reaps it (`ECHILD` if it was reaped already).
pub fn wait_pidfd(pidfd: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is valid for the call; the pidfd is live.
        let ret = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::__WALL,
            )
        };
        match ret {
            -1 if Errno::last() == Errno::EINTR => continue,
            -1 => return Err(SysError::new("waitid(P_PIDFD)", Errno::last())),
            _ => return Ok(()),
        }
    }
}

/// `wait4(-1, 0)`: blocks until a child exits; its pid and raw wait status. Unlike
/// nix's `waitpid`, it reports deaths by realtime signals too.
pub fn wait_any() -> Result<(i32, i32), Errno> {
    wait4_any(0)
}

/// `wait4(-1, WNOHANG)`: a child that has ended, if one has, with its raw status.
pub fn reap_any_ended() -> Result<Option<(i32, i32)>, Errno> {
    wait4_any(libc::WNOHANG).map(|(pid, status)| (pid != 0).then_some((pid, status)))
}

/// `wait4(-1, flags | __WALL)`: every kind of child, no rusage.
fn wait4_any(flags: libc::c_int) -> Result<(i32, i32), Errno> {
    let mut status = 0;
    // SAFETY: `status` is valid for the call; no rusage is asked for.
    let pid = unsafe { libc::wait4(-1, &mut status, flags | libc::__WALL, std::ptr::null_mut()) };
    if pid == -1 {
        return Err(Errno::last());
    }
    Ok((pid, status))
}

/// `sigprocmask(how, signals)` with raw signal numbers (realtime ones included, which
/// nix's `Signal` does not name).
pub fn sigprocmask(how: libc::c_int, signals: &[i32]) -> Result<(), SysError> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; the old mask is not wanted.
    if unsafe { libc::sigprocmask(how, &set, std::ptr::null_mut()) } == -1 {
        return Err(SysError::new("sigprocmask", Errno::last()));
    }
    Ok(())
}

/// A `sigset_t` of raw signal numbers.
fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe {
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
    }
    set
}

/// A signalfd (close-on-exec) of the raw signal numbers `signals`, which the caller
/// holds blocked: one fd to read them from, instead of a handler for each.
pub fn signalfd(signals: &[i32]) -> Result<OwnedFd, SysError> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; -1 asks for a new fd.
    new_fd(
        unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) } as libc::c_long,
        "signalfd",
    )
}

/// The number of the next signal read from the signalfd `fd`, waiting for one.
pub fn read_signal(fd: BorrowedFd<'_>) -> Result<i32, Errno> {
    // SAFETY: signalfd_siginfo is plain old data; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is valid for writes of `size` bytes.
    let read = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut info as *mut libc::signalfd_siginfo as *mut libc::c_void,
            size,
        )
    };
    match read {
        -1 => Err(Errno::last()),
        read if read as usize == size => Ok(info.ssi_signo as i32),
        _ => Err(Errno::EIO),
    }
}

/// `kill(pid, signal)` with a raw signal number (realtime ones included).
pub fn send_signal(pid: i32, signal: i32) -> Result<(), Errno> {
    // SAFETY: kill takes plain integers.
    if unsafe { libc::kill(pid, signal) } == -1 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `_exit(2)`: ends the process at once, running no destructors or atexit handlers
/// (which belong to the zygote whose memory a sandbox process is a copy of).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Opens `/dev/null` on any of fds 0, 1 and 2 that is closed, so that a later open can
/// never land on a stdio slot.
pub fn ensure_stdio_open() -> Result<(), SysError> {
    for slot in 0..=2 {
        if nix::fcntl::fcntl(
            // SAFETY: only probes whether `slot` is open; the borrow ends with the call.
            unsafe { BorrowedFd::borrow_raw(slot) },
            nix::fcntl::FcntlArg::F_GETFD,
        ) == Err(Errno::EBADF)
        {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            )
            .op_path("open", "/dev/null")?;
            if null.as_raw_fd() != slot {
                dup_onto(null.as_fd(), slot)?;
            } else {
                // It landed on the free slot: keep it open for good.
                std::mem::forget(null);
            }
        }
    }
    Ok(())
}

/// Closes every fd from `first` up but those in `keep` (in ascending order; any below
/// `first` is left alone anyway).
pub fn close_from_but(first: u32, keep: &[RawFd]) -> Result<(), SysError> {
    let mut first = first;
    for &fd in keep {
        let fd = fd as u32;
        if fd > first {
            close_range(first, fd - 1, 0)?;
        }
        first = first.max(fd + 1);
    }
    close_range(first, u32::MAX, 0)
}

/// Moves `fd` to the number `target` (closing what was there), close-on-exec cleared.
pub fn move_fd(fd: OwnedFd, target: RawFd) -> Result<OwnedFd, SysError> {
    if fd.as_raw_fd() != target {
        dup_onto(fd.as_fd(), target)?;
        drop(fd);
        // SAFETY: dup3 just made `target` a new fd that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(target) });
    }
    dup_onto(fd.as_fd(), target)?;
    Ok(fd)
}

/// The signals whose disposition is not the default (ignored, or caught by a handler),
/// among every one that has a disposition: the classic and realtime ones, and glibc's
/// internal 32 and 33, which its `sigaction` refuses to touch but a parent may have left
/// ignored. Read with raw `rt_sigaction` queries.
pub fn signals_not_default() -> Result<Vec<i32>, SysError> {
    let mut changed = Vec::new();
    for signal in signals_with_disposition() {
        if rt_sigaction_raw(signal, None)? != libc::SIG_DFL {
            changed.push(signal);
        }
    }
    Ok(changed)
}

/// Every signal that has a disposition (all but `SIGKILL` and `SIGSTOP`), realtime ones
/// and glibc's internal 32 and 33 included.
pub fn signals_with_disposition() -> impl Iterator<Item = i32> {
    (1..=libc::SIGRTMAX()).filter(|&s| !matches!(s, libc::SIGKILL | libc::SIGSTOP))
}

/// Resets `signals` to their default disposition (an ignored signal would otherwise
/// stay ignored across `execve`), with raw `rt_sigaction` calls: glibc's 32 and 33 too.
pub fn reset_signals(signals: &[i32]) -> Result<(), SysError> {
    for &signal in signals {
        rt_sigaction_raw(signal, Some(libc::SIG_DFL))?;
    }
    Ok(())
}

/// `rt_sigaction(signal, handler)` straight to the kernel, past glibc's wrapper: sets
/// the handler (`SIG_DFL` here) when one is given, and returns the one it replaces.
fn rt_sigaction_raw(
    signal: i32,
    handler: Option<libc::sighandler_t>,
) -> Result<libc::sighandler_t, SysError> {
    /// The kernel's `struct sigaction` (with `sa_restorer`, as on x86_64 and arm64).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let new = handler.map(|handler| KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    });
    let mut old = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |new| new as *const KernelSigaction);
    // SAFETY: `new_ptr` is null or a valid kernel sigaction, `old` is writable for the
    // call, and the size argument is the kernel's sigset size (8 bytes); the only
    // handler ever set is SIG_DFL.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            new_ptr,
            &mut old as *mut KernelSigaction,
            std::mem::size_of::<u64>(),
        )
    };
    if ret == -1 {
        return Err(SysError::new(
            format!("rt_sigaction({signal})"),
            Errno::last(),
        ));
    }
    Ok(old.handler)
}

/// `memfd_create(2)`: an anonymous file, close-on-exec, with `extra_flags` (e.g.
/// `MFD_ALLOW_SEALING`).
pub fn memfd_create(name: &CStr, extra_flags: libc::c_uint) -> Result<OwnedFd, SysError> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | extra_flags) };
    if fd == -1 {
        return Err(SysError::new("memfd_create", Errno::last()));
    }
    // SAFETY: memfd_create succeeded, so `fd` is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A `MAP_SHARED` mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub struct SharedMapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain memory owned by this value; `&SharedMapping` hands out
// only `&[u8]`, and writing needs `&mut SharedMapping`.
unsafe impl Send for SharedMapping {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// `mmap(2)` of the first `len` bytes of `fd`, shared, read-only unless `writable`.
    /// `len` must not be 0 (mmap refuses it).
    pub fn map(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<SharedMapping, SysError> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new mapping at an address of the kernel's choosing overlaps nothing
        // of ours; the fd is live for the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::new("mmap", Errno::last()));
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| SysError::new("mmap", Errno::EINVAL))?;
        Ok(SharedMapping { ptr, len, writable })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives; they are
        // changed only through `bytes_mut`, which borrows `self` mutably.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, writable; `None` for a read-only mapping.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        // SAFETY: as for `bytes`, and the mapping is writable; `&mut self` makes the
        // borrow exclusive.
        self.writable
            .then(|| unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) })
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `map`; no borrow of it outlives
        // `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `mprotect(2)`: asks for the pages holding `region` to become readable and writable.
///
/// A test hook for the sealed, read-only mappings of [`crate::Preloaded`], which the
/// kernel must refuse (`EACCES`). Making memory more accessible cannot break a Rust
/// borrow; if it did succeed, nothing here writes to it.
pub fn mprotect_read_write(region: &[u8]) -> Result<(), SysError> {
    let page = 4096usize;
    let start = region.as_ptr() as usize & !(page - 1);
    let end = region.as_ptr() as usize + region.len();
    // SAFETY: only changes protections (to more permissive ones) of pages that `region`
    // shows are mapped; no memory is read or written.
    let ret = unsafe {
        libc::mprotect(
            start as *mut libc::c_void,
            end - start,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    if ret == -1 {
        return Err(SysError::new("mprotect", Errno::last()));
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds (through the vDSO: no system call).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill; CLOCK_MONOTONIC always
    // exists, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
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

/// The fd a new-mount-API call returned, or its error.
fn new_fd(ret: libc::c_long, what: &'static str) -> Result<OwnedFd, SysError> {
    if ret < 0 {
        return Err(SysError::new(what, Errno::last()));
    }
    // SAFETY: the call succeeded, so `ret` is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

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

/// The mapping of this process that holds `address`, from `/proc/self/maps`.
struct Mapping {
    start: usize,
    end: usize,
    /// `r-xp`, ...
    perms: String,
    /// Whether a file backs it (its inode is not 0).
    from_file: bool,
}

fn mapping_of(address: usize) -> Result<Mapping, SysError> {
    let maps = std::fs::read_to_string("/proc/self/maps").op_path("read", "/proc/self/maps")?;
    maps.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            let perms = fields.next()?.to_string();
            let inode = fields.nth(2)?;
            (start..end).contains(&address).then(|| Mapping {
                start,
                end,
                perms,
                from_file: inode != "0",
            })
        })
        .ok_or_else(|| SysError::with_path("find own code", "/proc/self/maps", Errno::ENOENT))
}

/// Replaces the hot middle of this program's machine code, every whole 2 MiB huge page
/// of the executable's `r-xp` segment, with an anonymous copy at the same address,
/// backed by transparent huge pages. A fork copies an anonymous huge page's mapping in
/// one page-table entry, where it leaves a file mapping's for the child to fault in, a
/// few pages at a time: a zygote's children then run most of its code without those
/// faults, and have fewer entries to tear down when they exit. Returns the bytes
/// copied: none when the segment holds no whole huge page or the kernel gives none
/// (`MADV_COLLAPSE`). The caller must be single-threaded; on failure the file mapping
/// stays.
pub fn copy_own_code_to_huge_pages() -> Result<usize, SysError> {
    const HUGE_PAGE: usize = 2 << 20;
    // Not in libc 0.2.191; Linux 6.1.
    const MADV_COLLAPSE: libc::c_int = 25;
    let here = copy_own_code_to_huge_pages as fn() -> Result<usize, SysError> as usize;
    let code = mapping_of(here)?;
    if code.perms != "r-xp" {
        return Err(SysError::new("find own code (r-xp)", Errno::EINVAL));
    }
    let first = code.start.next_multiple_of(HUGE_PAGE);
    let last = code.end / HUGE_PAGE * HUGE_PAGE;
    // Copied already (by an earlier zygote of this process: `here` is in the copy, or in
    // the file-mapped rest around it), or too small to hold a huge page.
    if !code.from_file || last <= first {
        return Ok(0);
    }
    let len = last - first;
    // A copy aligned to a huge page, as [first, last) is, so that its huge pages move
    // whole: map a huge page more than needed and keep the part that lines up.
    let span = len + HUGE_PAGE;
    let base = map_anonymous(span, libc::MAP_NORESERVE, "mmap(code copy)")? as usize;
    let offset = (HUGE_PAGE - base % HUGE_PAGE) % HUGE_PAGE;
    let copy = base + offset;
    // SAFETY: the parts of the mapping made above before and after [copy, copy + len),
    // which nothing uses.
    unsafe {
        if offset > 0 {
            libc::munmap(base as *mut libc::c_void, offset);
        }
        libc::munmap((copy + len) as *mut libc::c_void, span - offset - len);
    }
    let discard = |op: &str, errno: Errno| {
        // SAFETY: the copy, mapped above and not moved over the code.
        unsafe { libc::munmap(copy as *mut libc::c_void, len) };
        Err(SysError::new(op, errno))
    };
    // SAFETY: `copy` is the start of `len` bytes mapped above; advice only.
    unsafe { libc::madvise(copy as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    // SAFETY: [first, last) is within this program's code, mapped readable;
    // [copy, copy + len) is the writable mapping above; they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(first as *const u8, copy as *mut u8, len) };
    // SAFETY: the copy's own pages: made huge pages, if not already.
    if unsafe { libc::madvise(copy as *mut libc::c_void, len, MADV_COLLAPSE) } == -1 {
        return discard("madvise(code copy, MADV_COLLAPSE)", Errno::last());
    }
    // SAFETY: the copy's own pages; it becomes read-only and executable (never both
    // writable and executable).
    if unsafe {
        libc::mprotect(
            copy as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_EXEC,
        )
    } == -1
    {
        return discard("mprotect(code copy, PROT_EXEC)", Errno::last());
    }
    // SAFETY: moves the copy over the code, atomically replacing that part of its
    // mapping: the bytes at every address stay the same, so code running there (this
    // very call's caller may) goes on in an identical copy of itself. No other thread
    // runs (the caller's contract).
    let moved = unsafe {
        libc::mremap(
            copy as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            first as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        return discard("mremap(code copy)", Errno::last());
    }
    Ok(len)
}
