//! Making, running and ending processes: `clone3`, `fork`, the memory-sharing spawn of
//! the workload, `execve`, `_exit`, the waits and pidfds, and the clock.
//!
//! `clone3` and `fork` run in the zygote (a sandbox's init, the spare-namespace helper)
//! and in the init (an entry's workload); the spawn and `execve` in the init and the
//! workload; the waits in the zygote (its children) and the init (the workload and
//! orphans).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::memory::ChildStack;
use super::{Context, SysError};

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

/// `_exit(2)`: ends the process at once, running no destructors or atexit handlers
/// (which belong to the zygote whose memory a sandbox process is a copy of).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
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
