//! Making, running and ending processes: `clone3`, `fork`, the memory-sharing spawn of
//! the workload, `execve`, `_exit`, the waits and pidfds, and the clock; and the proofs
//! a clone requires ([`SingleThreaded`], from the zygote's [`ThreadCounter`] or a
//! child's [`NewProcess`]).
//!
//! `clone3` and `fork` run in the zygote (a sandbox's init, the spare-namespace helper)
//! and in the init (an entry's workload); the spawn and `execve` in the init and the
//! workload; the waits in the zygote (its children) and the init (the workload and
//! orphans).

use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::memory::ChildStack;
use super::{Context, SysError};

/// The value of `CLONE_INTO_CGROUP`; `libc::CLONE_INTO_CGROUP` overflows to 0 on x86_64.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A check, just made on this thread, that the process runs no other thread: what
/// [`clone3`], [`fork`] and [`spawn_sharing_memory`] require, since their child is a
/// copy of the calling thread alone, and a lock another thread held would stay locked
/// in it forever.
///
/// Made only by [`ThreadCounter::check`], [`Threads::now`] and
/// [`NewProcess::single_threaded`]; neither `Clone` nor `Send`, and each clone consumes
/// one, so a check serves one clone, on the thread that made it. (Between the check and
/// the clone only this thread runs, so only it could start another.)
#[derive(Debug)]
pub struct SingleThreaded {
    _this_thread: PhantomData<*const ()>,
}

impl SingleThreaded {
    fn checked() -> SingleThreaded {
        SingleThreaded {
            _this_thread: PhantomData,
        }
    }
}

/// How many threads the process runs, as [`ThreadCounter::check`] found.
#[derive(Debug)]
pub enum Threads {
    /// This one alone: it may clone.
    One(SingleThreaded),
    /// This many: it must not.
    Many(usize),
}

impl Threads {
    /// Counts them now, from `/proc/self/stat` (opened for the one read).
    pub fn now() -> Result<Threads, SysError> {
        Ok(Threads::from_count(thread_count()?))
    }

    /// The proof, if the process runs one thread.
    pub fn single(self) -> Option<SingleThreaded> {
        match self {
            Threads::One(single) => Some(single),
            Threads::Many(_) => None,
        }
    }

    fn from_count(threads: usize) -> Threads {
        match threads {
            1 => Threads::One(SingleThreaded::checked()),
            threads => Threads::Many(threads),
        }
    }
}

/// The number of threads of this process, from `/proc/self/stat` (field 20).
pub fn thread_count() -> Result<usize, SysError> {
    let stat = std::fs::read("/proc/self/stat").op_path("read", "/proc/self/stat")?;
    threads_in_stat(&stat)
}

/// Field 20 (`num_threads`) of a `/proc/PID/stat`.
fn threads_in_stat(stat: &[u8]) -> Result<usize, SysError> {
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_comm = stat
        .iter()
        .rposition(|&b| b == b')')
        .map_or(&[][..], |end| &stat[end + 1..]);
    std::str::from_utf8(after_comm)
        .ok()
        .and_then(|rest| rest.split_whitespace().nth(17))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| SysError::with_path("parse", "/proc/self/stat", nix::errno::Errno::EINVAL))
}

/// Counts this process's threads before each clone: [`thread_count`] from an fd of
/// `/proc/self/stat` kept open, one `pread` into a buffer on the stack (no path lookup,
/// no allocation to touch pages shared with live sandboxes). Kept by the zygote.
#[derive(Debug)]
pub struct ThreadCounter(OwnedFd);

impl ThreadCounter {
    /// Opens `/proc/self/stat` (of this process: a child's copy of the fd still shows
    /// its parent).
    pub fn open() -> Result<ThreadCounter, SysError> {
        nix::fcntl::open(
            "/proc/self/stat",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(ThreadCounter)
        .op_path("open", "/proc/self/stat")
    }

    /// The number of threads now.
    pub fn count(&self) -> Result<usize, SysError> {
        let mut stat = [0u8; 2048];
        let read =
            nix::sys::uio::pread(&self.0, &mut stat, 0).op_path("read", "/proc/self/stat")?;
        if read == stat.len() {
            // Longer than any stat line should be: read it whole.
            return thread_count();
        }
        threads_in_stat(&stat[..read])
    }

    /// Counts them, with the proof a clone needs when there is one.
    pub fn check(&self) -> Result<Threads, SysError> {
        self.count().map(Threads::from_count)
    }
}

/// The process that [`clone3`] or [`fork`] just made, as that process holds it: one
/// thread, with a copy of its parent's memory and fds that it never hands back (the
/// code on its side of the clone ends in `execve` or [`exit_now`]: every function it
/// runs returns `!`). Only the child's side of a clone gets one; neither `Clone` nor
/// `Send`.
///
/// It vouches for what only such a process may do: clone again without counting its
/// threads, and place and close the fds it inherited (see its fd methods, in
/// [`super::fd`]).
#[derive(Debug)]
pub struct NewProcess {
    _this_thread: PhantomData<*const ()>,
}

impl NewProcess {
    fn made() -> NewProcess {
        NewProcess {
            _this_thread: PhantomData,
        }
    }

    /// The proof that it runs one thread: a new process does, until it starts one (the
    /// processes that hold a `NewProcess` never do).
    pub fn single_threaded(&self) -> SingleThreaded {
        SingleThreaded::checked()
    }
}

/// What `clone3` returned in each process.
pub enum Cloned {
    /// We are the new process.
    Child(NewProcess),
    /// We are the caller; the new process has this pid (in our pid namespace) and pidfd.
    Parent { pid: i32, pidfd: OwnedFd },
}

/// The only flags [`clone3`] takes: new namespaces. Any other would make the child share
/// something with its parent (`CLONE_VM`, `CLONE_FILES`, `CLONE_SIGHAND`,
/// `CLONE_THREAD`...) or take pointers (`CLONE_SETTLS`, `CLONE_*_SETTID`), which the
/// fork semantics below do not allow for.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `clone3(2)` without a new stack (fork semantics) and with `CLONE_PIDFD`.
///
/// `flags` are the namespace flags (any other is refused, `EINVAL`); `SIGCHLD` is
/// delivered to the caller on exit. With `cgroup`, the child starts in that cgroup (v2
/// `CLONE_INTO_CGROUP`). `single` proves the caller single-threaded.
pub fn clone3(
    _single: SingleThreaded,
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Cloned, SysError> {
    // SAFETY: the caller is single-threaded (`single`), so no lock of another thread is
    // copied held into the child.
    unsafe { clone3_any_thread(flags, cgroup) }
}

/// [`clone3`] whose child `_exit`s at once, with status 0: whether this process may
/// clone (a seccomp filter may refuse). Safe from any thread, since the child runs
/// nothing but `_exit`, which takes no lock. The child is left for the caller's reaping.
pub fn clone3_and_exit(flags: u64) -> Result<(), SysError> {
    // SAFETY: the child calls `_exit` and nothing else, which is sound whatever other
    // threads the parent ran.
    match unsafe { clone3_any_thread(flags, None) }? {
        Cloned::Child(_) => exit_now(0),
        Cloned::Parent { .. } => Ok(()),
    }
}

/// [`clone3`] without the proof.
///
/// # Safety
///
/// The caller is single-threaded, or its child calls nothing but async-signal-safe
/// functions until it execs or exits.
unsafe fn clone3_any_thread(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Cloned, SysError> {
    if flags & !NAMESPACE_FLAGS != 0 {
        return Err(SysError::new(
            "clone3(flags beyond namespaces)",
            Errno::EINVAL,
        ));
    }
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
    // no stack given the child continues on a copy of our stack like fork(2), and with
    // namespace flags alone it shares nothing with us (checked above); what it may run
    // is the caller's contract. The kernel writes the pidfd into `pidfd`, which outlives
    // the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        -1 => Err(SysError::new("clone3", Errno::last())),
        0 => Ok(Cloned::Child(NewProcess::made())),
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

/// What `fork` returned in each process.
pub enum Forked {
    /// We are the new process.
    Child(NewProcess),
    /// We are the caller; the new process has this pid.
    Parent(i32),
}

/// `fork(2)`; `single` proves the caller single-threaded.
pub fn fork(_single: SingleThreaded) -> Result<Forked, SysError> {
    // SAFETY: the caller is single-threaded (`single`), so the child cannot inherit a
    // lock held by another thread.
    match unsafe { nix::unistd::fork() }.op("fork")? {
        nix::unistd::ForkResult::Child => Ok(Forked::Child(NewProcess::made())),
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
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
/// [`exit_now`]. `single` proves the caller single-threaded.
///
/// Those rules keep the child's work out of the way of this process's; memory safety
/// rests on less, which the function itself provides: no other thread runs while the
/// child does (`single`, and `CLONE_VFORK` suspends this one), so the child's use of the
/// shared memory is a plain, sequential continuation of ours, as a call would be; it runs
/// on a stack of its own; and it never returns into our frames (`-> !`).
pub fn spawn_sharing_memory<T>(
    _single: SingleThreaded,
    arg: &T,
    child: fn(&T) -> !,
) -> Result<i32, SysError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_count_is_field_20_counted_from_the_end_of_the_command_name() {
        let stat = b"4242 (a (b) c) S 1 4242 4242 0 -1 4194560 99 0 0 0 1 2 0 0 20 0 7 0 123 \
                     4096 1 18446744073709551615";
        assert_eq!(threads_in_stat(stat).unwrap(), 7);
        assert!(threads_in_stat(b"4242 (truncated").is_err());
    }

    /// (Other tests' threads come and go meanwhile: only a floor can be asserted.)
    #[test]
    fn the_kept_counter_counts_a_thread_started_after_it_was_opened() {
        let counter = ThreadCounter::open().unwrap();
        let spare =
            std::thread::spawn(|| std::thread::park_timeout(std::time::Duration::from_secs(5)));
        assert!(counter.count().unwrap() >= 2);
        assert!(thread_count().unwrap() >= 2);
        assert!(matches!(counter.check().unwrap(), Threads::Many(n) if n >= 2));
        spare.thread().unpark();
        spare.join().unwrap();
    }
}
