//! Thin wrappers over the calls that need `unsafe`; nothing else in the probe uses it.
//!
//! Runs in the workload (and in the throwaway children it forks). Every block states
//! the invariant it relies on; the syscalls of [`Probe`] explain next to each call why
//! its arguments make it fail harmlessly.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::ForkResult;

/// `fork(2)`, for a process that must be single-threaded at the time.
///
/// # Panics
/// If /proc shows more than one thread in this process.
pub fn fork() -> nix::Result<ForkResult> {
    // Where /proc is not mounted we cannot check; the probe only starts threads in
    // the `threads` command, which never comes here.
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let count = tasks.count();
        assert_eq!(count, 1, "fork from a process with {count} threads");
    }
    // SAFETY: the process has a single thread (checked above), so the child cannot
    // inherit a lock held by another thread; it runs ordinary code and then exits
    // through `exit_now`.
    unsafe { nix::unistd::fork() }
}

/// `_exit(2)`: ends a forked child without running the parent's exit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Closes fds 0, 1 and 2 (used by a process that will only sleep and exit).
pub fn close_stdio() {
    for fd in 0..=2 {
        // SAFETY: no `OwnedFd` in this process owns the standard streams, so closing
        // them cannot make an owner close a reused number later; a later write to
        // std's stdout would only fail with EBADF.
        unsafe { libc::close(fd) };
    }
}

/// Whether `fd` is an open file descriptor (`fcntl(F_GETFD)` succeeds).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; any number is acceptable
    // (an unused one fails with EBADF).
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The `SIOCGIFFLAGS` flags of interface `name`, asked through socket `sock`.
pub fn interface_flags(sock: &OwnedFd, name: &str) -> Result<i32, Errno> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `ifreq` is plain old data (a byte array and a union of integers and
    // addresses), for which all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, &byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: `request` is a live, NUL-terminated `ifreq` that SIOCGIFFLAGS reads the
    // name from and writes the flags into; `sock` is an open socket.
    let ret = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS as _,
            &mut request as *mut libc::ifreq,
        )
    };
    Errno::result(ret)?;
    // SAFETY: a successful SIOCGIFFLAGS has written the `ifru_flags` member.
    Ok(i32::from(unsafe { request.ifr_ifru.ifru_flags }))
}

/// The last signal that [`catch_signals`]' handler saw, as a number (0 = none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn record_signal(number: libc::c_int) {
    // Async-signal-safe: a single atomic store.
    CAUGHT.store(number, Ordering::SeqCst);
}

/// Installs a handler for each of `signals` that records which one arrived.
pub fn catch_signals(signals: &[Signal]) -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(record_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for &sig in signals {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe,
        // and replacing a disposition cannot break other code in this program.
        unsafe { signal::sigaction(sig, &action) }?;
    }
    Ok(())
}

/// The signal recorded by the [`catch_signals`] handler, if any arrived yet.
pub fn caught_signal() -> Option<Signal> {
    Signal::try_from(CAUGHT.load(Ordering::SeqCst)).ok()
}

/// Restores the default action of `sig`.
pub fn reset_to_default(sig: Signal) -> nix::Result<()> {
    // SAFETY: SIG_DFL installs no Rust code as a handler.
    unsafe { signal::signal(sig, SigHandler::SigDfl) }.map(drop)
}

/// Calls `syscall(2)` with six integer arguments.
///
/// # Safety
/// The call must not write to or unmap memory of this process, nor create a thread
/// or process that shares it: every caller below explains why its call does neither.
unsafe fn raw(nr: libc::c_long, args: [libc::c_long; 6]) -> Result<i64, Errno> {
    let [a, b, c, d, e, f] = args;
    // SAFETY: guaranteed by the caller (see above); extra arguments are ignored by
    // syscalls that take fewer.
    let ret = unsafe { libc::syscall(nr, a, b, c, d, e, f) };
    Errno::result(ret)
}

/// NULL, as a syscall argument.
const NULL: libc::c_long = 0;
/// An address that is never mapped (below `vm.mmap_min_addr`): reading or writing
/// through it fails with EFAULT.
const UNMAPPED: libc::c_long = 1;
/// Every flag bit set: rejected with EINVAL by each call that gets it below.
const BAD_FLAGS: libc::c_long = 0xffff_ffff;
/// A path that does not exist, for calls that want one.
const NO_SUCH_PATH: &std::ffi::CStr = c"/nonexistent-probe";

/// One syscall tried by the `syscalls` command, with arguments that make it fail
/// harmlessly even for root on the host: "allowed" below is the kernel's own answer.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    Mount,
    Umount2,
    PivotRoot,
    Chroot,
    UnshareUser,
    UnshareMount,
    Setns,
    Clone3,
    CloneUser,
    ClonePid,
    Ptrace,
    ProcessVmReadv,
    Keyctl,
    AddKey,
    RequestKey,
    Bpf,
    PerfEventOpen,
    Userfaultfd,
    IoUringSetup,
    IoUringEnter,
    IoUringRegister,
    KexecLoad,
    InitModule,
    FinitModule,
    DeleteModule,
    Reboot,
    Swapon,
    Swapoff,
    OpenByHandleAt,
    NameToHandleAt,
    IoctlTiocsti,
    IoctlTioclinux,
    Acct,
    Syslog,
    Quotactl,
    #[cfg(target_arch = "x86_64")]
    Iopl,
    #[cfg(target_arch = "x86_64")]
    Ioperm,
    #[cfg(target_arch = "x86_64")]
    Uselib,
    PidfdGetfd,
    FanotifyInit,
    Personality,
}

impl Probe {
    /// Every probe, in the order they are printed.
    pub const ALL: &'static [Probe] = &[
        Probe::Mount,
        Probe::Umount2,
        Probe::PivotRoot,
        Probe::Chroot,
        Probe::UnshareUser,
        Probe::UnshareMount,
        Probe::Setns,
        Probe::Clone3,
        Probe::CloneUser,
        Probe::ClonePid,
        Probe::Ptrace,
        Probe::ProcessVmReadv,
        Probe::Keyctl,
        Probe::AddKey,
        Probe::RequestKey,
        Probe::Bpf,
        Probe::PerfEventOpen,
        Probe::Userfaultfd,
        Probe::IoUringSetup,
        Probe::IoUringEnter,
        Probe::IoUringRegister,
        Probe::KexecLoad,
        Probe::InitModule,
        Probe::FinitModule,
        Probe::DeleteModule,
        Probe::Reboot,
        Probe::Swapon,
        Probe::Swapoff,
        Probe::OpenByHandleAt,
        Probe::NameToHandleAt,
        Probe::IoctlTiocsti,
        Probe::IoctlTioclinux,
        Probe::Acct,
        Probe::Syslog,
        Probe::Quotactl,
        #[cfg(target_arch = "x86_64")]
        Probe::Iopl,
        #[cfg(target_arch = "x86_64")]
        Probe::Ioperm,
        #[cfg(target_arch = "x86_64")]
        Probe::Uselib,
        Probe::PidfdGetfd,
        Probe::FanotifyInit,
        Probe::Personality,
    ];

    /// The key printed for this probe.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Mount => "mount",
            Probe::Umount2 => "umount2",
            Probe::PivotRoot => "pivot_root",
            Probe::Chroot => "chroot",
            Probe::UnshareUser => "unshare_user",
            Probe::UnshareMount => "unshare_mount",
            Probe::Setns => "setns",
            Probe::Clone3 => "clone3",
            Probe::CloneUser => "clone_newuser",
            Probe::ClonePid => "clone_newpid",
            Probe::Ptrace => "ptrace",
            Probe::ProcessVmReadv => "process_vm_readv",
            Probe::Keyctl => "keyctl",
            Probe::AddKey => "add_key",
            Probe::RequestKey => "request_key",
            Probe::Bpf => "bpf",
            Probe::PerfEventOpen => "perf_event_open",
            Probe::Userfaultfd => "userfaultfd",
            Probe::IoUringSetup => "io_uring_setup",
            Probe::IoUringEnter => "io_uring_enter",
            Probe::IoUringRegister => "io_uring_register",
            Probe::KexecLoad => "kexec_load",
            Probe::InitModule => "init_module",
            Probe::FinitModule => "finit_module",
            Probe::DeleteModule => "delete_module",
            Probe::Reboot => "reboot",
            Probe::Swapon => "swapon",
            Probe::Swapoff => "swapoff",
            Probe::OpenByHandleAt => "open_by_handle_at",
            Probe::NameToHandleAt => "name_to_handle_at",
            Probe::IoctlTiocsti => "ioctl_tiocsti",
            Probe::IoctlTioclinux => "ioctl_tioclinux",
            Probe::Acct => "acct",
            Probe::Syslog => "syslog",
            Probe::Quotactl => "quotactl",
            #[cfg(target_arch = "x86_64")]
            Probe::Iopl => "iopl",
            #[cfg(target_arch = "x86_64")]
            Probe::Ioperm => "ioperm",
            #[cfg(target_arch = "x86_64")]
            Probe::Uselib => "uselib",
            Probe::PidfdGetfd => "pidfd_getfd",
            Probe::FanotifyInit => "fanotify_init",
            Probe::Personality => "personality",
        }
    }

    /// Whether the call must run in a throwaway child: it really succeeds when
    /// allowed (unshare), or would create a process if the kernel ever accepted it.
    pub fn needs_child(self) -> bool {
        matches!(
            self,
            Probe::UnshareUser | Probe::UnshareMount | Probe::CloneUser | Probe::ClonePid
        )
    }

    /// Makes the call; `Ok` holds its (non-negative) return value.
    pub fn call(self) -> Result<i64, Errno> {
        use libc::*;
        let ptr = |s: &'static std::ffi::CStr| s.as_ptr() as c_long;
        let (nr, args): (c_long, [c_long; 6]) = match self {
            // The fstype is copied in first of all, before any permission check:
            // allowed → EFAULT, blocked → the policy's errno.
            Probe::Mount => (SYS_mount, [NULL, ptr(NO_SUCH_PATH), UNMAPPED, 0, NULL, 0]),
            // Unknown flags are rejected first: allowed → EINVAL.
            Probe::Umount2 => (SYS_umount2, [ptr(NO_SUCH_PATH), BAD_FLAGS, 0, 0, 0, 0]),
            // Allowed → EFAULT with CAP_SYS_ADMIN, EPERM without (as in a sandbox).
            Probe::PivotRoot => (SYS_pivot_root, [NULL, NULL, 0, 0, 0, 0]),
            // The path is looked up before the capability check: allowed → EFAULT.
            Probe::Chroot => (SYS_chroot, [UNMAPPED, 0, 0, 0, 0, 0]),
            // These really unshare when allowed → ok (run in a throwaway child).
            Probe::UnshareUser => (SYS_unshare, [CLONE_NEWUSER as c_long, 0, 0, 0, 0, 0]),
            Probe::UnshareMount => (SYS_unshare, [CLONE_NEWNS as c_long, 0, 0, 0, 0, 0]),
            // Allowed → EBADF.
            Probe::Setns => (SYS_setns, [-1, 0, 0, 0, 0, 0]),
            // The args struct is read from NULL: allowed → EFAULT. Policies usually
            // answer ENOSYS so that libc falls back to clone.
            Probe::Clone3 => (SYS_clone3, [NULL, 88, 0, 0, 0, 0]),
            // CLONE_FS with CLONE_NEWNS (or CLONE_NEWUSER) is rejected before anything
            // is created: allowed → EINVAL, while a policy that filters namespace
            // flags answers its errno.
            Probe::CloneUser => (
                SYS_clone,
                [
                    (CLONE_NEWUSER | CLONE_FS | CLONE_NEWNS) as c_long,
                    NULL,
                    NULL,
                    NULL,
                    0,
                    0,
                ],
            ),
            Probe::ClonePid => (
                SYS_clone,
                [
                    (CLONE_NEWPID | CLONE_FS | CLONE_NEWNS) as c_long,
                    NULL,
                    NULL,
                    NULL,
                    0,
                    0,
                ],
            ),
            // We do not trace pid 1: allowed → ESRCH (the word would go to NULL).
            Probe::Ptrace => (SYS_ptrace, [PTRACE_PEEKDATA as c_long, 1, NULL, NULL, 0, 0]),
            // The local iovec array is read from NULL first: allowed → EFAULT.
            Probe::ProcessVmReadv => (SYS_process_vm_readv, [1, NULL, 1, NULL, 1, 0]),
            // KEYCTL_GET_KEYRING_ID of a key id that is no keyring, without create:
            // allowed → EINVAL (or ENOKEY).
            Probe::Keyctl => (
                SYS_keyctl,
                [KEYCTL_GET_KEYRING_ID as c_long, -1234, 0, 0, 0, 0],
            ),
            // The key type string is read from NULL: allowed → EFAULT.
            Probe::AddKey => (SYS_add_key, [NULL, NULL, NULL, 0, 0, 0]),
            Probe::RequestKey => (SYS_request_key, [NULL, NULL, NULL, 0, 0, 0]),
            // No such command: allowed → EINVAL (EPERM where unprivileged bpf is off).
            Probe::Bpf => (SYS_bpf, [0xffff, NULL, 0, 0, 0, 0]),
            // The attr struct is read from NULL: allowed → EFAULT (or EACCES/EPERM
            // under perf_event_paranoid).
            Probe::PerfEventOpen => (SYS_perf_event_open, [NULL, 0, -1, -1, 0, 0]),
            // Unknown flags: allowed → EINVAL (EPERM where unprivileged use is off).
            Probe::Userfaultfd => (SYS_userfaultfd, [BAD_FLAGS, 0, 0, 0, 0, 0]),
            // Params are read from NULL: allowed → EFAULT (EPERM where disabled).
            Probe::IoUringSetup => (SYS_io_uring_setup, [0, NULL, 0, 0, 0, 0]),
            // Bad fd: allowed → EBADF.
            Probe::IoUringEnter => (SYS_io_uring_enter, [-1, 0, 0, 0, NULL, 0]),
            // fd -1 means "no ring" on new kernels, where opcode 0 is then refused:
            // allowed → EBADF or EINVAL.
            Probe::IoUringRegister => (SYS_io_uring_register, [-1, 0, NULL, 0, 0, 0]),
            // Unknown flags are rejected before anything is loaded or unloaded
            // (valid flags with no segments would unload the crash kernel):
            // allowed → EINVAL for root, EPERM without CAP_SYS_BOOT.
            Probe::KexecLoad => (SYS_kexec_load, [0, 0, NULL, BAD_FLAGS, 0, 0]),
            // An empty image: allowed → ENOEXEC for root, EPERM without the cap.
            Probe::InitModule => (SYS_init_module, [NULL, 0, NULL, 0, 0, 0]),
            // Allowed → EBADF for root, EPERM without the cap.
            Probe::FinitModule => (SYS_finit_module, [-1, NULL, 0, 0, 0, 0]),
            // Name read from NULL: allowed → EFAULT for root, EPERM without the cap.
            Probe::DeleteModule => (SYS_delete_module, [NULL, 0, 0, 0, 0, 0]),
            // Wrong magic numbers: never reboots; allowed → EINVAL, or EPERM
            // without CAP_SYS_BOOT.
            Probe::Reboot => (SYS_reboot, [0, 0, 0, NULL, 0, 0]),
            // Unknown swap flags are rejected first: allowed → EINVAL.
            Probe::Swapon => (SYS_swapon, [NULL, BAD_FLAGS, 0, 0, 0, 0]),
            // Path read from NULL: allowed → EFAULT for root, EPERM without the cap.
            Probe::Swapoff => (SYS_swapoff, [NULL, 0, 0, 0, 0, 0]),
            // Allowed → EBADF, EFAULT or EPERM (needs CAP_DAC_READ_SEARCH).
            Probe::OpenByHandleAt => (SYS_open_by_handle_at, [-1, NULL, 0, 0, 0, 0]),
            // Path read from NULL: allowed → EFAULT.
            Probe::NameToHandleAt => (SYS_name_to_handle_at, [-1, NULL, NULL, NULL, 0, 0]),
            // Bad fd: allowed → EBADF; a policy filtering the request answers EPERM.
            Probe::IoctlTiocsti => (SYS_ioctl, [-1, TIOCSTI as c_long, NULL, 0, 0, 0]),
            Probe::IoctlTioclinux => (SYS_ioctl, [-1, TIOCLINUX as c_long, NULL, 0, 0, 0]),
            // Not NULL, which would switch process accounting off: allowed → EFAULT
            // for root, EPERM without CAP_SYS_PACCT.
            Probe::Acct => (SYS_acct, [UNMAPPED, 0, 0, 0, 0, 0]),
            // No such action: allowed → EINVAL (or EPERM under dmesg_restrict).
            Probe::Syslog => (SYS_syslog, [999, NULL, 0, 0, 0, 0]),
            // Command 0 without a device (only Q_SYNC may omit it): allowed → ENODEV.
            Probe::Quotactl => (SYS_quotactl, [0, NULL, 0, NULL, 0, 0]),
            // Level above 3: allowed → EINVAL.
            #[cfg(target_arch = "x86_64")]
            Probe::Iopl => (SYS_iopl, [99, 0, 0, 0, 0, 0]),
            // An empty port range: allowed → EINVAL.
            #[cfg(target_arch = "x86_64")]
            Probe::Ioperm => (SYS_ioperm, [0, 0, 0, 0, 0, 0]),
            // Allowed → EFAULT, or ENOSYS on kernels built without uselib.
            #[cfg(target_arch = "x86_64")]
            Probe::Uselib => (SYS_uselib, [UNMAPPED, 0, 0, 0, 0, 0]),
            // Allowed → EBADF.
            Probe::PidfdGetfd => (SYS_pidfd_getfd, [-1, -1, 0, 0, 0, 0]),
            // Unknown flags: allowed → EINVAL (or EPERM without CAP_SYS_ADMIN).
            Probe::FanotifyInit => (SYS_fanotify_init, [BAD_FLAGS, 0, 0, 0, 0, 0]),
            // 0xffffffff only queries the current persona: allowed → ok.
            Probe::Personality => (SYS_personality, [BAD_FLAGS, 0, 0, 0, 0, 0]),
        };
        // SAFETY: every argument above is an integer, NULL, the unmapped address 1 or
        // a static NUL-terminated string, and each call fails before acting (see the
        // comment on each) except unshare and personality's query, which change no
        // memory. The only syscall that could write to our memory is ptrace, through
        // NULL (EFAULT); clone gets no CLONE_VM, so a child it made would have its
        // own copy of memory, and runs in a forked throwaway child anyway.
        let ret = unsafe { raw(nr, args) }?;
        if ret == 0 && matches!(self, Probe::CloneUser | Probe::ClonePid) {
            // The kernel accepted the clone after all and we are the new process:
            // leave at once, the probe already runs in a throwaway child.
            exit_now(0);
        }
        Ok(ret)
    }
}

/// `getpid` through the x32 ABI (syscall number with bit 30 set).
#[cfg(target_arch = "x86_64")]
pub fn x32_getpid() -> Result<i64, Errno> {
    const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
    // SAFETY: getpid takes no arguments and touches no memory; a kernel without x32
    // answers ENOSYS, and a seccomp kill is caught by the caller's forked child.
    unsafe { raw(X32_SYSCALL_BIT | libc::SYS_getpid, [0; 6]) }
}

/// `getpid` through the i386 `int 0x80` entry (i386 syscall number 20).
#[cfg(target_arch = "x86_64")]
pub fn i386_getpid() -> Result<i64, Errno> {
    const I386_GETPID: i32 = 20;
    let ret: i32;
    // SAFETY: i386 getpid takes no arguments and touches no memory. The interrupt
    // switches to the kernel stack, so our stack (and red zone) is untouched; eax is
    // the result, and r8-r11, which older kernels clobbered on this path, are marked
    // as clobbered. A kernel without ia32 emulation raises SIGSEGV and a seccomp
    // kill raises SIGSYS: the caller runs this in a forked child.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("eax") I386_GETPID => ret,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw(-ret))
    } else {
        Ok(i64::from(ret))
    }
}

// -----------------------------------------------------------------------------------
// For the escape attempts. Each call either only reads or writes our own locals, or
// makes something (an fd, an IPC object, a key, a process) that the caller closes,
// removes or runs in a throwaway child.
// -----------------------------------------------------------------------------------

/// Wraps a syscall's return value, a new fd, as an owned fd.
fn owned_fd(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    let fd = Errno::result(ret)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `TIOCGSID`: the session whose controlling terminal is on `fd`; fails (`ENOTTY`)
/// unless it is our own controlling terminal.
pub fn controlling_session(fd: &impl AsFd) -> Result<libc::pid_t, Errno> {
    let mut sid: libc::pid_t = 0;
    // SAFETY: TIOCGSID writes one pid_t through the pointer, a live local.
    let ret = unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            libc::TIOCGSID,
            &mut sid as *mut libc::pid_t,
        )
    };
    Errno::result(ret).map(|_| sid)
}

/// `TIOCSTI` with each byte of `bytes` in turn: fakes terminal input. Stops at the
/// first failure.
pub fn tiocsti(fd: &impl AsFd, bytes: &[u8]) -> Result<(), Errno> {
    for byte in bytes {
        // SAFETY: TIOCSTI reads one byte through the pointer, which points into
        // `bytes`.
        let ret = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSTI, byte as *const u8) };
        Errno::result(ret)?;
    }
    Ok(())
}

/// `TIOCLINUX` with the read-only subcode `TIOCL_GETSHIFTSTATE` (6): the request the
/// filter refuses, with no effect even on a real virtual console.
pub fn tioclinux_query(fd: &impl AsFd) -> Result<(), Errno> {
    const TIOCL_GETSHIFTSTATE: u8 = 6;
    let mut arg = [0u8; 8];
    arg[0] = TIOCL_GETSHIFTSTATE;
    // SAFETY: the kernel reads the subcode byte and writes at most one byte of
    // result back through the pointer, into this 8-byte local.
    let ret = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCLINUX, arg.as_mut_ptr()) };
    Errno::result(ret).map(drop)
}

/// `TIOCSCTTY` without stealing (arg 0): makes the terminal on `fd` our controlling
/// terminal, if we lead a session without one and no other session has it.
pub fn tiocsctty(fd: &impl AsFd) -> Result<(), Errno> {
    // SAFETY: the argument is an integer; no memory is passed.
    let ret = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(ret).map(drop)
}

/// `ptrace(PTRACE_SEIZE, pid)` with no options: attaches without stopping the tracee.
/// Callers run it in a throwaway child, whose exit detaches again.
pub fn ptrace_seize(pid: nix::unistd::Pid) -> Result<i64, Errno> {
    // SAFETY: PTRACE_SEIZE with addr and data 0 (no options) passes no memory.
    unsafe {
        raw(
            libc::SYS_ptrace,
            [PTRACE_SEIZE, pid.as_raw().into(), 0, 0, 0, 0],
        )
    }
}

/// `PTRACE_SEIZE` (0x4206), which the libc crate does not name for every target.
const PTRACE_SEIZE: libc::c_long = 0x4206;

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: nix::unistd::Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: integer arguments only.
    owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`: a new anonymous session keyring for
/// this process.
pub fn join_session_keyring() -> Result<i64, Errno> {
    let join = libc::KEYCTL_JOIN_SESSION_KEYRING as libc::c_long;
    // SAFETY: NULL name: nothing is read from our memory.
    unsafe { raw(libc::SYS_keyctl, [join, NULL, 0, 0, 0, 0]) }
}

/// `add_key("user", "hatchery-probe", "x")` in the process keyring, which dies with
/// the process.
pub fn add_process_key() -> Result<i64, Errno> {
    add_key(c"hatchery-probe", libc::KEY_SPEC_PROCESS_KEYRING)
}

/// `add_key("user", description, "x")` in the user keyring; returns the key's serial.
pub fn add_user_key(description: &std::ffi::CStr) -> Result<i64, Errno> {
    add_key(description, libc::KEY_SPEC_USER_KEYRING)
}

fn add_key(description: &std::ffi::CStr, keyring: i32) -> Result<i64, Errno> {
    let payload = b"x";
    // SAFETY: the kernel reads the NUL-terminated type and description and one byte
    // of payload, all live for the call; it writes nothing to our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            keyring,
        )
    };
    Errno::result(ret)
}

/// `keyctl(KEYCTL_SEARCH)` of the user keyring for a "user" key with `description`.
pub fn search_user_key(description: &std::ffi::CStr) -> Result<i64, Errno> {
    // SAFETY: the kernel reads the NUL-terminated type and description; destination
    // keyring 0 means none, so nothing is linked anywhere.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_SEARCH,
            libc::KEY_SPEC_USER_KEYRING,
            c"user".as_ptr(),
            description.as_ptr(),
            0,
        )
    };
    Errno::result(ret)
}

/// `keyctl(KEYCTL_INVALIDATE, serial)`: removes a key we made.
pub fn invalidate_key(serial: i64) {
    let invalidate = libc::KEYCTL_INVALIDATE as libc::c_long;
    // SAFETY: integer arguments only.
    let _ = unsafe {
        raw(
            libc::SYS_keyctl,
            [invalidate, serial as libc::c_long, 0, 0, 0, 0],
        )
    };
}

/// `userfaultfd(O_CLOEXEC | O_NONBLOCK)`.
pub fn userfaultfd() -> Result<OwnedFd, Errno> {
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as libc::c_long;
    // SAFETY: integer argument only; no memory is registered with the fd.
    owned_fd(unsafe { libc::syscall(libc::SYS_userfaultfd, flags) })
}

/// `io_uring_setup` of a one-entry ring (never mapped, never used).
pub fn io_uring_setup() -> Result<OwnedFd, Errno> {
    // struct io_uring_params: 120 bytes, zero asks for the defaults.
    let mut params = [0u64; 15];
    // SAFETY: the kernel reads and writes the 120-byte params, a live local; the
    // rings are mapped into our memory only if we mmap the fd, which we never do.
    owned_fd(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) })
}

/// `bpf(BPF_MAP_CREATE)` of an array map with one 4-byte entry.
pub fn bpf_map_create() -> Result<OwnedFd, Errno> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
    // max_entries, then fields that must be zero.
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[BPF_MAP_TYPE_ARRAY, 4, 4, 1]);
    // SAFETY: the kernel reads `size_of_val(&attr)` bytes of attr, a live local,
    // and writes nothing to our memory.
    owned_fd(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    })
}

/// The first 64 bytes (`PERF_ATTR_SIZE_VER0`) of `struct perf_event_attr`.
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    bp_addr: u64,
}

/// `perf_event_open` of a disabled software counter (CPU clock) of this process, user
/// space only, so that it is allowed wherever perf is allowed at all.
pub fn perf_event_open_self() -> Result<OwnedFd, Errno> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const DISABLED: u64 = 1 << 0;
    const EXCLUDE_KERNEL: u64 = 1 << 5;
    const EXCLUDE_HV: u64 = 1 << 6;
    const PERF_FLAG_FD_CLOEXEC: libc::c_long = 8;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: 0, // PERF_COUNT_SW_CPU_CLOCK
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags: DISABLED | EXCLUDE_KERNEL | EXCLUDE_HV,
        wakeup_events: 0,
        bp_type: 0,
        bp_addr: 0,
    };
    // SAFETY: the kernel reads `attr.size` bytes of attr, a live local of that size;
    // pid 0 and cpu -1 mean this process on any CPU; group -1 means none.
    owned_fd(unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    })
}

/// `struct file_handle` with room for the largest handle (`MAX_HANDLE_SZ`, 128).
#[repr(C)]
pub struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

impl Default for FileHandle {
    /// A made-up 8-byte handle, for when no real one can be had.
    fn default() -> Self {
        FileHandle {
            handle_bytes: 8,
            handle_type: 1,
            f_handle: [0; 128],
        }
    }
}

/// `name_to_handle_at(AT_FDCWD, "/")`: the file handle of the root directory.
pub fn name_to_handle_at_root() -> Result<FileHandle, Errno> {
    let mut handle = FileHandle {
        handle_bytes: 128,
        ..FileHandle::default()
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: the path is a static C string; the kernel writes the header and at
    // most `handle_bytes` (128) bytes into `handle`, and one int into `mount_id`,
    // both live locals.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    };
    Errno::result(ret).map(|_| handle)
}

/// `open_by_handle_at(mount_fd, handle, O_RDONLY)`.
pub fn open_by_handle_at(mount: &impl AsFd, handle: &FileHandle) -> Result<OwnedFd, Errno> {
    // SAFETY: the kernel reads the handle's header and at most 128 bytes after it,
    // which `FileHandle` holds; it writes nothing to our memory.
    owned_fd(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_fd().as_raw_fd(),
            handle as *const FileHandle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })
}

/// `fsopen("tmpfs", FSOPEN_CLOEXEC)`: a filesystem context, which mounts nothing by
/// itself.
pub fn fsopen_tmpfs() -> Result<OwnedFd, Errno> {
    const FSOPEN_CLOEXEC: libc::c_long = 1;
    // SAFETY: the kernel reads the static C string; it writes nothing to our memory.
    owned_fd(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) })
}

/// `clone(flags | SIGCHLD)` with no new stack, as `fork` does: a process it makes
/// exits at once, and is reaped before this returns.
pub fn clone_and_reap(flags: libc::c_int) -> Result<i64, Errno> {
    let flags = libc::c_long::from(flags | libc::SIGCHLD);
    // SAFETY: no CLONE_VM: a new process gets its own copy of our memory and stack,
    // and only calls `_exit`; nothing in this process changes.
    let pid = unsafe { raw(libc::SYS_clone, [flags, NULL, NULL, NULL, 0, 0]) }?;
    reap_clone(pid)
}

/// `clone3` with `flags` and `SIGCHLD` as exit signal, no new stack: as
/// [`clone_and_reap`].
pub fn clone3_and_reap(flags: u64) -> Result<i64, Errno> {
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    // stack_size, tls, set_tid, set_tid_size, cgroup.
    let mut args = [0u64; 11];
    args[0] = flags;
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: the kernel reads the 88-byte args, a live local; with no pidfd or tid
    // pointers it writes nothing to our memory. No CLONE_VM: as in `clone_and_reap`.
    let pid = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args.as_ptr(),
            std::mem::size_of_val(&args),
        )
    })?;
    reap_clone(pid)
}

/// In the new process (0): exit at once. In the caller: wait for it.
fn reap_clone(pid: i64) -> Result<i64, Errno> {
    if pid == 0 {
        exit_now(0);
    }
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None)?;
    Ok(0)
}

/// Syscall `nr` with every argument -1, for `try-syscall`.
pub fn all_bad_arguments(nr: libc::c_long) -> Result<i64, Errno> {
    // SAFETY: called only in a throwaway child of `in_child`. Address -1 is in no
    // mapping user space can have, so nothing is read or written through any
    // argument; length and flag arguments of -1 are rejected before use. Whatever
    // the call does beyond failing (exit, signal, block) happens to that child only,
    // which its parent reaps (a blocked one is ended by its alarm).
    unsafe { raw(nr, [-1; 6]) }
}

/// Junk for the upper half of a 64-bit argument that the kernel truncates to 32 bits.
const HIGH_JUNK: libc::c_long = 0x7eed_beef << 32;

/// `ioctl(-1, request | junk << 32, NULL)`: a filter comparing all 64 bits would let
/// it through to the kernel, which truncates the request and fails on the bad fd
/// (EBADF); a filter comparing the low 32 bits refuses it.
pub fn ioctl_high_bits(request: libc::Ioctl) -> Result<i64, Errno> {
    let request = HIGH_JUNK | request as libc::c_long;
    // SAFETY: the fd is invalid, so nothing is read or written through NULL.
    unsafe { raw(libc::SYS_ioctl, [-1, request, NULL, 0, 0, 0]) }
}

/// `clone(junk << 32 | CLONE_NEWUSER | CLONE_FS | CLONE_NEWNS)`: past a filter that
/// misses it, the kernel truncates the flags and rejects CLONE_FS with CLONE_NEWNS
/// (EINVAL) before creating anything.
pub fn clone_user_high_bits() -> Result<i64, Errno> {
    let flags =
        HIGH_JUNK | (libc::CLONE_NEWUSER | libc::CLONE_FS | libc::CLONE_NEWNS) as libc::c_long;
    // SAFETY: as in `clone_and_reap` (no CLONE_VM); a process it made anyway exits.
    let pid = unsafe { raw(libc::SYS_clone, [flags, NULL, NULL, NULL, 0, 0]) }?;
    reap_clone(pid)
}

/// `unshare(CLONE_NEWUSER)` through the x32 ABI (syscall number with bit 30 set).
#[cfg(target_arch = "x86_64")]
pub fn x32_unshare_user() -> Result<i64, Errno> {
    const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
    let flags = libc::c_long::from(libc::CLONE_NEWUSER);
    // SAFETY: unshare takes an integer; a new user namespace would belong to the
    // throwaway child the caller runs this in.
    unsafe { raw(X32_SYSCALL_BIT | libc::SYS_unshare, [flags, 0, 0, 0, 0, 0]) }
}

/// `unshare(CLONE_NEWUSER)` through the i386 `int 0x80` entry (i386 number 310).
#[cfg(target_arch = "x86_64")]
pub fn i386_unshare_user() -> Result<i64, Errno> {
    const I386_UNSHARE: i32 = 310;
    let ret: i32;
    // SAFETY: as in `i386_getpid`. The flags go in ebx, which LLVM reserves, so they
    // are swapped in and out around the interrupt. unshare touches no memory; a new
    // user namespace would belong to the throwaway child the caller runs this in.
    unsafe {
        std::arch::asm!(
            "xchg {flags:r}, rbx",
            "int 0x80",
            "xchg {flags:r}, rbx",
            flags = inout(reg) i64::from(libc::CLONE_NEWUSER) => _,
            inlateout("eax") I386_UNSHARE => ret,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw(-ret))
    } else {
        Ok(i64::from(ret))
    }
}

/// SysV shared memory of one page under `key`, which must not exist yet.
pub fn shm_create(key: libc::key_t) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    Errno::result(unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o644) })
}

/// The SysV shared memory under `key`, if any.
pub fn shm_lookup(key: libc::key_t) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    Errno::result(unsafe { libc::shmget(key, 0, 0) })
}

pub fn shm_remove(id: i32) {
    // SAFETY: IPC_RMID takes no buffer (NULL).
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

/// A SysV semaphore set of one under `key`, which must not exist yet.
pub fn sem_create(key: libc::key_t) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    Errno::result(unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o644) })
}

pub fn sem_lookup(key: libc::key_t) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    Errno::result(unsafe { libc::semget(key, 0, 0) })
}

pub fn sem_remove(id: i32) {
    // SAFETY: IPC_RMID reads no variadic argument.
    unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
}

/// A SysV message queue under `key`, which must not exist yet.
pub fn msg_create(key: libc::key_t) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    Errno::result(unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o644) })
}

pub fn msg_lookup(key: libc::key_t) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    Errno::result(unsafe { libc::msgget(key, 0) })
}

pub fn msg_remove(id: i32) {
    // SAFETY: IPC_RMID takes no buffer (NULL).
    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

/// A POSIX message queue `name`, which must not exist yet; closed again at once (it
/// lives on until [`mqueue_remove`]).
pub fn mqueue_create(name: &std::ffi::CStr) -> Result<(), Errno> {
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: the name is NUL-terminated; with O_CREAT mq_open reads a mode and an
    // attributes pointer (NULL: the defaults) from its variadic arguments.
    let queue = unsafe {
        libc::mq_open(
            name.as_ptr(),
            flags,
            0o644 as libc::mode_t,
            std::ptr::null::<libc::mq_attr>(),
        )
    };
    let queue = Errno::result(queue)?;
    // SAFETY: `queue` was just opened and is not used again.
    unsafe { libc::mq_close(queue) };
    Ok(())
}

/// Whether the POSIX message queue `name` exists (opened read-only and closed).
pub fn mqueue_lookup(name: &std::ffi::CStr) -> Result<(), Errno> {
    // SAFETY: the name is NUL-terminated; without O_CREAT no variadic is read.
    let queue = unsafe { libc::mq_open(name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    let queue = Errno::result(queue)?;
    // SAFETY: `queue` was just opened and is not used again.
    unsafe { libc::mq_close(queue) };
    Ok(())
}

pub fn mqueue_remove(name: &std::ffi::CStr) {
    // SAFETY: the name is NUL-terminated.
    unsafe { libc::mq_unlink(name.as_ptr()) };
}
