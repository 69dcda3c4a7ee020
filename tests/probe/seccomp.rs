//! Commands that try the kernel's attack surface against the seccomp filter and the
//! dropped capabilities: `syscalls` (bubblewrap's try-syscall method over a fixed list),
//! `try-syscall` (any number, every argument bad), `try` (real uses of keyrings,
//! io_uring, bpf, namespaces, other ABIs, ...) and `memfd-exec` (fileless execution).
//!
//! Runs in the workload. Each attempt that could kill the probe, or change it when
//! allowed, runs in a throwaway child ([`crate::processes::in_child`]), so a seccomp
//! kill shows as `killed:SIGSYS` instead of ending the command.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};

use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::unistd::{self, ForkResult};

use crate::output::{errno_name, io_error_name, io_failure, nix_failure, verdict};
use crate::processes::{in_child, reap};
use crate::{sys, Outcome};

/// `syscalls`: tries each syscall in [`sys::Probe::ALL`] and prints `<name>=<ERRNO|ok>`.
/// Calls whose success would change this process (or create one) run in a forked child,
/// which also survives a seccomp policy that kills instead of failing the call.
pub fn syscalls() -> Outcome {
    for &probe in sys::Probe::ALL {
        let verdict = if probe.needs_child() {
            in_child(|| probe.call())
        } else {
            match probe.call() {
                Ok(_) => "ok".to_string(),
                Err(e) => errno_name(e as i32),
            }
        };
        println!("{}={verdict}", probe.name());
    }
    // Other syscall ABIs: a filter that only checks syscall numbers for x86_64 would let
    // x32 numbers or the i386 `int 0x80` entry through. Either may kill the caller.
    #[cfg(target_arch = "x86_64")]
    {
        println!("x32_getpid={}", in_child(sys::x32_getpid));
        println!("i386_getpid={}", in_child(sys::i386_getpid));
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        println!("x32_getpid=unsupported");
        println!("i386_getpid=unsupported");
    }
    Ok(())
}

/// `try <attempt>...`: makes each named attempt (see [`attempt`]) for real and prints
/// `<attempt>=ok`, the errno name, or `killed:<SIGNAL>` for one that killed the throwaway
/// child it ran in.
pub fn try_calls(names: &[OsString]) -> Outcome {
    if names.is_empty() {
        return Err("expected at least one attempt".to_string());
    }
    for name in names {
        let name = name.to_string_lossy();
        let result = attempt(&name).ok_or_else(|| format!("unknown attempt {name:?}"))?;
        println!("{name}={result}");
    }
    Ok(())
}

/// `try-syscall NAME=NR...`: bubblewrap's try-syscall method. Calls each syscall number
/// with every argument -1 (fd -1 is EBADF, address -1 is never mapped: EFAULT, flags -1
/// are EINVAL) and prints `NAME=<ERRNO|ok|killed:SIGNAL>`. A call the filter refuses
/// shows the policy's errno and never reaches the kernel. Each call runs in a throwaway
/// child with a 2-second alarm, so a call that got through and blocks (or exits, or
/// changes the process) affects only that child.
pub fn try_syscalls(pairs: &[OsString]) -> Outcome {
    if pairs.is_empty() {
        return Err("expected at least one NAME=NR".to_string());
    }
    for pair in pairs {
        let pair = pair.to_string_lossy();
        let (name, number) = pair
            .split_once('=')
            .and_then(|(name, nr)| Some((name, nr.parse::<libc::c_long>().ok()?)))
            .ok_or_else(|| format!("expected NAME=NR, got {pair:?}"))?;
        let result = in_child(|| {
            nix::unistd::alarm::set(2);
            sys::all_bad_arguments(number)
        });
        println!("{name}={result}");
    }
    Ok(())
}

/// One real use of kernel attack surface, by name; `None` for an unknown name. Every fd
/// made is closed again; what would create a process, a namespace or a key runs in a
/// throwaway child.
fn attempt(name: &str) -> Option<String> {
    use nix::sched::{unshare, CloneFlags};
    let unshare_in_child = |flags: CloneFlags| in_child(move || unshare(flags).map(|()| 0));
    let result = match name {
        // Keyrings: a new session keyring; a key in the process keyring.
        "keyctl_join" => in_child(sys::join_session_keyring),
        "add_key" => in_child(sys::add_process_key),
        "userfaultfd" => verdict(sys::userfaultfd()),
        "io_uring_setup" => verdict(sys::io_uring_setup()),
        "bpf_map_create" => verdict(sys::bpf_map_create()),
        "perf_event_open" => verdict(sys::perf_event_open_self()),
        // The "shocker" escape: a handle of "/" (a made-up one if that is refused too),
        // opened again without a path lookup.
        "name_to_handle_at" => verdict(sys::name_to_handle_at_root()),
        "open_by_handle_at" => {
            let handle = sys::name_to_handle_at_root().unwrap_or_default();
            match fs::File::open("/") {
                Ok(root) => verdict(sys::open_by_handle_at(&root, &handle)),
                Err(e) => format!("open /: {}", io_error_name(&e)),
            }
        }
        "fsopen" => verdict(sys::fsopen_tmpfs()),
        // vsock is not network-namespaced: its peer is the hypervisor. Nothing is sent;
        // binding only takes a free port of our own.
        "vsock" => verdict(socket(
            AddressFamily::Vsock,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )),
        "vsock_bind" => verdict(vsock_bind()),
        // No protocol: even where allowed, the socket receives nothing before it is closed.
        "packet" => verdict(socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )),
        "unshare_user" => unshare_in_child(CloneFlags::CLONE_NEWUSER),
        "unshare_mount" => unshare_in_child(CloneFlags::CLONE_NEWNS),
        "unshare_user_mount" => {
            unshare_in_child(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        }
        "clone_user" => in_child(|| sys::clone_and_reap(libc::CLONE_NEWUSER)),
        "clone3_user" => in_child(|| sys::clone3_and_reap(libc::CLONE_NEWUSER as u64)),
        // Seccomp bypasses: other syscall ABIs, and junk in the upper 32 bits of arguments
        // the kernel truncates (the bad fd or the CLONE_FS|CLONE_NEWNS conflict make the
        // call fail harmlessly once past the filter: EBADF or EINVAL, not EPERM).
        #[cfg(target_arch = "x86_64")]
        "i386_unshare_user" => in_child(sys::i386_unshare_user),
        #[cfg(target_arch = "x86_64")]
        "x32_unshare_user" => in_child(sys::x32_unshare_user),
        #[cfg(not(target_arch = "x86_64"))]
        "i386_unshare_user" | "x32_unshare_user" => "unsupported".to_string(),
        "ioctl_tiocsti_high_bits" => verdict(sys::ioctl_high_bits(libc::TIOCSTI)),
        "ioctl_tioclinux_high_bits" => verdict(sys::ioctl_high_bits(libc::TIOCLINUX)),
        "clone_user_high_bits" => in_child(sys::clone_user_high_bits),
        _ => return None,
    };
    Some(result)
}

/// A vsock stream socket bound to any free port of our own address.
fn vsock_bind() -> Result<(), Errno> {
    use nix::sys::socket::{bind, VsockAddr};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let any = VsockAddr::new(libc::VMADDR_CID_ANY, libc::VMADDR_PORT_ANY);
    bind(sock.as_raw_fd(), &any)
}

/// `memfd-exec`: copies this probe into a memfd and runs it from there with `execveat`
/// (`AT_EMPTY_PATH`), as `privs memfd`: an exec from memory must not bring back anything
/// the sandbox took away. Prints `memfd_create`, then the new program's `memfd.*` facts,
/// or `execveat=<ERRNO>` if the exec was refused.
pub fn memfd_exec() -> Outcome {
    use nix::fcntl::AtFlags;
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let image = fs::read("/proc/self/exe").map_err(|e| io_failure("read /proc/self/exe", e))?;
    let memfd = match memfd_create(c"hatchery-probe", MFdFlags::MFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            println!("memfd_create={}", errno_name(e as i32));
            return Ok(());
        }
    };
    println!("memfd_create=ok");
    let mut memfd = fs::File::from(memfd);
    memfd
        .write_all(&image)
        .map_err(|e| io_failure("write memfd", e))?;
    let _ = io::stdout().flush();
    match sys::fork().map_err(|e| nix_failure("fork", e))? {
        ForkResult::Child => {
            let argv = [c"hatchery-probe", c"privs", c"memfd"];
            let env: [&std::ffi::CStr; 0] = [];
            let Err(e) = unistd::execveat(&memfd, c"", &argv, &env, AtFlags::AT_EMPTY_PATH);
            println!("execveat={}", errno_name(e as i32));
            let _ = io::stdout().flush();
            sys::exit_now(0)
        }
        ForkResult::Parent { child } => reap(child),
    }
}
