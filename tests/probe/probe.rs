//! `hatchery-probe`: a small program the integration tests run *inside* a sandbox.
//!
//! It reports what the process can see and do from the inside (ids, capabilities,
//! namespaces, mounts, network, seccomp) as plain `key=value` lines on stdout, one fact
//! per line, so that a test can assert on them. It is the counterpart of youki's
//! `runtimetest` and bubblewrap's `try-syscall.c`.
//!
//! Usage: `hatchery-probe <command> [args...]`. Every command exits 0 unless its
//! description says otherwise; a failure prints `error=<message>` on stderr and exits 1.
//!
//! The `syscalls` command follows bubblewrap's try-syscall method: each syscall is made
//! with arguments that are wrong in a harmless way (a bad fd, a NULL or unmapped pointer,
//! invalid flags), so an allowed call fails with the kernel's own errno (`EBADF`,
//! `EFAULT`, `EINVAL`, ...) and does nothing, while a call that seccomp blocks shows the
//! policy's errno. Every argument choice is explained next to the call in [`sys`].
//!
//! The probe is single-threaded except in the `threads` command, which never forks
//! by hand; every hand-made `fork` goes through [`sys::fork`], which asserts it.

use std::ffi::OsString;
use std::fmt::Display;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, AccessFlags, ForkResult, Pid};

/// What a command returns: `Err` carries the message printed as `error=<message>`.
type Outcome = Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(command) = args.first().and_then(|c| c.to_str()) else {
        return report(Err(usage()));
    };
    let rest = &args[1..];
    let outcome = match command {
        "pid" => pid(),
        "ids" => ids(),
        "status" => status(),
        "net" => net(),
        "hostname" => hostname(),
        "writable" => writable(rest),
        "ls" => ls(rest),
        "mounts" => mounts(),
        "fds" => fds(),
        "env" => env(),
        "cwd" => cwd(),
        "syscalls" => syscalls(),
        "uid-map" => uid_map(),
        "threads" => threads(),
        "cat" => cat(),
        "echo-both" => echo_both(rest),
        "exit" => exit(rest),
        "kill-self" => kill_self(rest),
        "wait-signal" => wait_signal(),
        "orphan" => orphan(rest),
        "spawn-sleepers" => spawn_sleepers(rest),
        "whoami-setuid" => whoami_setuid(),
        "sleep" => sleep(rest),
        "privs" => privs(rest),
        "tty-inject" => tty_inject(),
        "exe-write" => exe_write(),
        "root-walk" => root_walk(),
        "set-ids" => set_ids(),
        "peek" => peek(),
        "try" => try_calls(rest),
        "try-syscall" => try_syscalls(rest),
        "memfd-exec" => memfd_exec(),
        "mount-tmpfs" => mount_tmpfs(),
        "ls-after-line" => ls_after_line(rest),
        "connect" => connect(rest),
        "ipc-hold" => ipc_hold(rest),
        "ipc-look" => ipc_look(rest),
        "lock-hold" => lock_hold(rest),
        "lock-look" => lock_look(rest),
        "signal-pids" => signal_pids(rest),
        "detach-tree" => detach_tree(rest),
        "tcp" => tcp(rest),
        other => Err(format!("unknown command {other:?}; {}", usage())),
    };
    report(outcome)
}

fn usage() -> String {
    "usage: hatchery-probe <pid|ids|status|net|hostname|writable PATH...|ls DIR|mounts|fds|\
     env|cwd|syscalls|uid-map|threads|cat|echo-both OUT ERR|exit CODE|kill-self SIGNUM|\
     wait-signal|orphan SECONDS|spawn-sleepers N|whoami-setuid|sleep SECONDS|privs [PREFIX]|\
     tty-inject|exe-write|root-walk|set-ids|peek|try ATTEMPT...|try-syscall NAME=NR...|\
     memfd-exec|mount-tmpfs|\
     ls-after-line DIR|connect PATH|@NAME...|ipc-hold NAME|ipc-look NAME|lock-hold PATH|\
     lock-look PATH|signal-pids PID...|detach-tree WALKERS SECONDS|\
     tcp LISTEN_PORT SECONDS [--wait] TARGET...>"
        .to_string()
}

/// Turns a command's outcome into the exit code, printing the error line on failure.
fn report(outcome: Outcome) -> ExitCode {
    // Whatever the command printed must reach stdout before we exit.
    let flushed = io::stdout().flush();
    match outcome.and_then(|()| flushed.map_err(|e| io_failure("flush stdout", e))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error={message}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// The symbolic name of an errno (`EPERM`, `ENOSYS`, ...), or `errno<N>` if unknown.
fn errno_name(code: i32) -> String {
    match Errno::from_raw(code) {
        Errno::UnknownErrno => format!("errno{code}"),
        known => format!("{known:?}"),
    }
}

/// Names an I/O error by its errno when it has one, else by its message.
fn io_error_name(err: &io::Error) -> String {
    err.raw_os_error()
        .map_or_else(|| err.to_string(), errno_name)
}

/// An error message of the form `<operation>: <ERRNO>`.
fn io_failure(op: impl Display, err: io::Error) -> String {
    format!("{op}: {}", io_error_name(&err))
}

/// Same as [`io_failure`] for nix results.
fn nix_failure(op: impl Display, err: Errno) -> String {
    format!("{op}: {}", errno_name(err as i32))
}

/// Prints `key=value` with the value as raw bytes (paths and env may not be UTF-8).
fn print_bytes(key: &str, value: &[u8]) -> Outcome {
    let mut out = io::stdout().lock();
    out.write_all(key.as_bytes())
        .and_then(|()| out.write_all(b"="))
        .and_then(|()| out.write_all(value))
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| io_failure("write stdout", e))
}

/// Writes `ready` and flushes, so a test waiting for that line sees it at once.
fn say_ready() -> Outcome {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| io_failure("write stdout", e))
}

/// The single argument of a command, parsed.
fn one_arg<T: std::str::FromStr>(args: &[OsString], what: &str) -> Result<T, String> {
    match args {
        [arg] => arg
            .to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("invalid {what}: {arg:?}")),
        _ => Err(format!("expected exactly one argument: {what}")),
    }
}

/// Comma-joins displayable items.
fn join<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn read_file(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| io_failure(format!("read {path}"), e))
}

/// Parses the single argument as a number of seconds (fractions allowed).
fn parse_duration(args: &[OsString]) -> Result<Duration, String> {
    let seconds: f64 = one_arg(args, "seconds")?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid seconds: {e}"))
}

fn sleep_forever() -> ! {
    loop {
        // pause() returns only when a handled signal arrives; none is handled here.
        unistd::pause();
    }
}

/// Forks a child that runs `f` and exits with its result; returns what the parent saw:
/// `ok`, the errno name, `killed:<SIGNAL>` if the child died of a signal (a seccomp
/// kill shows as `killed:SIGSYS`), or `fork:<ERRNO>` if the fork itself failed.
fn in_child(f: impl FnOnce() -> Result<i64, Errno>) -> String {
    // Anything buffered would otherwise be written twice, once by each process.
    let _ = io::stdout().flush();
    match sys::fork() {
        Err(e) => format!("fork:{}", errno_name(e as i32)),
        Ok(ForkResult::Child) => {
            let code = match f() {
                Ok(_) => 0,
                // Errno values are below 256, so the exit code carries them whole.
                Err(Errno::UnknownErrno) => 255,
                Err(e) => e as i32,
            };
            sys::exit_now(code)
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => "ok".to_string(),
            Ok(WaitStatus::Exited(_, 255)) => "unknown-errno".to_string(),
            Ok(WaitStatus::Exited(_, code)) => errno_name(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => format!("killed:{}", signal.as_str()),
            Ok(other) => format!("unexpected:{other:?}"),
            Err(e) => format!("waitpid:{}", errno_name(e as i32)),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Commands: identity and kernel view
// ---------------------------------------------------------------------------------------

/// `pid`: our pid, our parent's, and every pid visible in /proc (the pid namespace).
fn pid() -> Outcome {
    println!("pid={}", unistd::getpid());
    println!("ppid={}", unistd::getppid());
    let entries = fs::read_dir("/proc").map_err(|e| io_failure("read_dir /proc", e))?;
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    println!("visible_pids={}", join(pids));
    Ok(())
}

/// `ids`: real and effective user and group ids, and the supplementary groups.
fn ids() -> Outcome {
    println!("uid={}", unistd::getuid());
    println!("euid={}", unistd::geteuid());
    println!("gid={}", unistd::getgid());
    println!("egid={}", unistd::getegid());
    let groups = unistd::getgroups().map_err(|e| nix_failure("getgroups", e))?;
    println!("groups={}", join(groups));
    Ok(())
}

/// `status`: the capability sets, no_new_privs, the seccomp mode and how many filters
/// are installed, from /proc/self/status.
fn status() -> Outcome {
    const KEYS: [&str; 8] = [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
        "Seccomp_filters",
    ];
    let text = read_file("/proc/self/status")?;
    for key in KEYS {
        let value = text.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name == key).then(|| value.trim())
        });
        // A kernel too old for a field says so instead of hiding the line.
        println!("{key}={}", value.unwrap_or("missing"));
    }
    Ok(())
}

/// `net`: interfaces, route counts and whether loopback is up (the network namespace).
fn net() -> Outcome {
    // /proc/net/dev has two header lines, then `  name: counters...` per interface.
    let dev = read_file("/proc/net/dev")?;
    let interfaces = dev
        .lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim()));
    println!("interfaces={}", join(interfaces));

    // /proc/net/route has one header line; /proc/net/ipv6_route has none and is absent
    // when IPv6 is disabled. Its last field is the device: a fresh namespace has only
    // routes on `lo` (its own address and the unreachable default).
    let ipv4 = read_file("/proc/net/route")?;
    let ipv4_routes = ipv4
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    println!("ipv4_routes={ipv4_routes}");
    let ipv6 = match fs::read_to_string("/proc/net/ipv6_route") {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_failure("read /proc/net/ipv6_route", e)),
    };
    let ipv6_devices: Vec<&str> = ipv6
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    println!("ipv6_routes={}", ipv6_devices.len());
    let off_lo = ipv6_devices.iter().filter(|&&dev| dev != "lo").count();
    println!("ipv6_non_loopback_routes={off_lo}");

    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| nix_failure("socket(AF_INET, SOCK_DGRAM)", e))?;
    // An interface that cannot be asked about (e.g. no `lo` at all) shows its errno.
    match sys::interface_flags(&sock, "lo") {
        Ok(flags) => println!("lo_up={}", flags & libc::IFF_UP != 0),
        Err(e) => println!("lo_up={}", errno_name(e as i32)),
    }
    Ok(())
}

/// `hostname`: the UTS namespace's node name (glibc's gethostname reads uname's nodename).
fn hostname() -> Outcome {
    let name = unistd::gethostname().map_err(|e| nix_failure("gethostname", e))?;
    print_bytes("hostname", name.as_bytes())
}

/// `writable <path>...`: whether each path can be written, without changing anything
/// that was there: a directory gets a fresh file created and removed again, anything
/// else is opened for writing (no truncation, nothing written).
fn writable(paths: &[OsString]) -> Outcome {
    if paths.is_empty() {
        return Err("expected at least one path".to_string());
    }
    let me = std::process::id();
    for path in paths {
        let path = Path::new(path);
        let verdict = match fs::metadata(path) {
            Err(e) => io_error_name(&e),
            Ok(meta) if meta.is_dir() => {
                let file = path.join(format!(".probe-{me}"));
                let created = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&file);
                match created {
                    Err(e) => io_error_name(&e),
                    Ok(_) => match fs::remove_file(&file) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("unlink:{}", io_error_name(&e)),
                    },
                }
            }
            Ok(_) => match fs::OpenOptions::new().write(true).open(path) {
                Ok(_) => "ok".to_string(),
                Err(e) => io_error_name(&e),
            },
        };
        print_bytes(&path.to_string_lossy(), verdict.as_bytes())?;
    }
    Ok(())
}

/// `ls <dir>`: the directory's entries, sorted bytewise (`.` and `..` are never listed).
fn ls(args: &[OsString]) -> Outcome {
    let [dir] = args else {
        return Err("expected exactly one argument: dir".to_string());
    };
    let entries = fs::read_dir(dir).map_err(|e| io_failure(format!("read_dir {dir:?}"), e))?;
    let mut names = entries
        .map(|entry| entry.map(|e| e.file_name().into_vec()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| io_failure(format!("read_dir {dir:?}"), e))?;
    names.sort();
    print_bytes("entries", &names.join(&b","[..]))
}

/// `mounts`: /proc/self/mountinfo verbatim (the mount namespace).
fn mounts() -> Outcome {
    let text =
        fs::read("/proc/self/mountinfo").map_err(|e| io_failure("read /proc/self/mountinfo", e))?;
    io::stdout()
        .write_all(&text)
        .map_err(|e| io_failure("write stdout", e))
}

/// `fds`: the open file descriptors (what the sandbox let the job inherit).
fn fds() -> Outcome {
    // Listing /proc/self/fd opens a descriptor of its own, which shows in the listing.
    // Once the listing is closed, that number is no longer open, so keeping only the
    // numbers that are still open afterwards leaves exactly the inherited ones.
    let listed: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| io_failure("read_dir /proc/self/fd", e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut open: Vec<i32> = listed
        .into_iter()
        .filter(|&fd| sys::fd_is_open(fd))
        .collect();
    open.sort_unstable();
    println!("fds={}", join(open));
    Ok(())
}

/// `env`: every environment variable as `env:KEY=VALUE`, in the order the process has them.
fn env() -> Outcome {
    for (key, value) in std::env::vars_os() {
        print_bytes(&format!("env:{}", key.to_string_lossy()), value.as_bytes())?;
    }
    Ok(())
}

/// `cwd`: the working directory.
fn cwd() -> Outcome {
    let dir = unistd::getcwd().map_err(|e| nix_failure("getcwd", e))?;
    print_bytes("cwd", dir.as_os_str().as_bytes())
}

/// `syscalls`: tries each syscall in [`sys::Probe::ALL`] and prints `<name>=<ERRNO|ok>`.
/// Calls whose success would change this process (or create one) run in a forked child,
/// which also survives a seccomp policy that kills instead of failing the call.
fn syscalls() -> Outcome {
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

/// `uid-map`: whether this process may (re)write its own uid map. Inside a sandbox the
/// map was written by the parent and is write-once, so this must fail.
fn uid_map() -> Outcome {
    let written = fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/uid_map")
        .and_then(|mut map| map.write_all(b"0 0 1\n"));
    match written {
        Ok(()) => println!("uid_map_write=ok"),
        Err(e) => println!("uid_map_write={}", io_error_name(&e)),
    }
    Ok(())
}

/// `threads`: what a normal multi-threaded program does works under the filter:
/// threads, a shell pipeline through std's `Command` (which may use clone3 or
/// posix_spawn and falls back on ENOSYS), `faccessat`, and close-on-exec of our files.
/// Prints one `key=ok` or `key=<error>` line per check; exits 1 if any failed.
fn threads() -> Outcome {
    let workers: Vec<_> = (0..4u64)
        .map(|n| thread::spawn(move || (1..=1000u64).map(|i| i * n).sum::<u64>()))
        .collect();
    let sums: Result<Vec<u64>, _> = workers.into_iter().map(|w| w.join()).collect();
    let threads = match sums {
        Ok(sums) if sums == [0, 500_500, 1_001_000, 1_501_500] => "ok".to_string(),
        Ok(sums) => format!("wrong-sums:{sums:?}"),
        Err(_) => "panicked".to_string(),
    };

    let subprocess = match std::process::Command::new("/bin/sh")
        .args(["-c", "echo sub | cat"])
        .output()
    {
        Ok(out) if out.status.success() && out.stdout == b"sub\n" => "ok".to_string(),
        Ok(out) => format!(
            "{}:{:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Err(e) => io_error_name(&e),
    };

    let access = match unistd::access("/", AccessFlags::R_OK) {
        Ok(()) => "ok".to_string(),
        Err(e) => errno_name(e as i32),
    };

    let cloexec = check_cloexec();

    println!("threads={threads}");
    println!("subprocess={subprocess}");
    println!("access={access}");
    println!("cloexec={cloexec}");
    let all = [&threads, &subprocess, &access, &cloexec];
    if all.iter().all(|v| *v == "ok") {
        Ok(())
    } else {
        Err("a threads check failed".to_string())
    }
}

/// A file std opened for us must not leak into a child: std opens with O_CLOEXEC.
fn check_cloexec() -> String {
    use std::os::fd::AsRawFd;
    let file = match fs::File::open("/") {
        Ok(file) => file,
        Err(e) => return format!("open:{}", io_error_name(&e)),
    };
    let fd = file.as_raw_fd();
    // A POSIX shell only promises redirections of fds 0 to 9.
    if fd > 9 {
        return "ok".to_string();
    }
    let script = format!("if (: <&{fd}); then echo open; else echo closed; fi");
    match std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
    {
        Ok(out) if out.stdout == b"closed\n" => "ok".to_string(),
        Ok(out) => format!(
            "leaked:{fd}:{}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Err(e) => io_error_name(&e),
    }
}

// ---------------------------------------------------------------------------------------
// Commands: I/O, exit and signals
// ---------------------------------------------------------------------------------------

/// `cat`: stdin to stdout until EOF.
fn cat() -> Outcome {
    io::copy(&mut io::stdin().lock(), &mut io::stdout().lock())
        .map(drop)
        .map_err(|e| io_failure("copy stdin to stdout", e))
}

/// `echo-both <out> <err>`: one line on each stream.
fn echo_both(args: &[OsString]) -> Outcome {
    let [out, err] = args else {
        return Err("expected two arguments: out err".to_string());
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| io_failure("write stdout", e))?;
    let mut stderr = io::stderr().lock();
    stderr
        .write_all(err.as_bytes())
        .and_then(|()| stderr.write_all(b"\n"))
        .map_err(|e| io_failure("write stderr", e))
}

/// `exit <code>`: exits with that code.
fn exit(args: &[OsString]) -> Outcome {
    let code: i32 = one_arg(args, "exit code")?;
    let _ = io::stdout().flush();
    std::process::exit(code)
}

/// `kill-self <signum>`: dies of that signal's default action.
fn kill_self(args: &[OsString]) -> Outcome {
    let number: i32 = one_arg(args, "signal number")?;
    let signal = Signal::try_from(number).map_err(|e| nix_failure("signal", e))?;
    // SIGKILL and SIGSTOP cannot be caught, blocked or reset; everything else may have
    // inherited an ignore disposition or a blocked mask, so undo both.
    if !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
        sys::reset_to_default(signal).map_err(|e| nix_failure("sigaction", e))?;
        let mut set = SigSet::empty();
        set.add(signal);
        sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)
            .map_err(|e| nix_failure("sigprocmask", e))?;
    }
    let _ = io::stdout().flush();
    kill(unistd::getpid(), signal).map_err(|e| nix_failure("kill", e))?;
    // An unblocked signal sent to oneself is delivered before kill() returns, so still
    // running means its default action is to ignore (or stop, and we were continued).
    Err(format!("survived {}", signal.as_str()))
}

/// `wait-signal`: prints `ready`, waits for SIGTERM, SIGINT or SIGHUP, prints `got=<SIG>`.
fn wait_signal() -> Outcome {
    let signals = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
    let mut set = SigSet::empty();
    for signal in signals {
        set.add(signal);
    }
    // Block them until we sleep, so one sent right after `ready` is not lost between
    // checking the flag and sleeping: sigsuspend unblocks and sleeps atomically.
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| nix_failure("sigprocmask", e))?;
    sys::catch_signals(&signals).map_err(|e| nix_failure("sigaction", e))?;
    say_ready()?;
    let mut waiting = old;
    for signal in signals {
        waiting.remove(signal);
    }
    let got = loop {
        if let Some(signal) = sys::caught_signal() {
            break signal;
        }
        waiting
            .suspend()
            .map_err(|e| nix_failure("sigsuspend", e))?;
    };
    println!("got={}", got.as_str());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Commands: process trees
// ---------------------------------------------------------------------------------------

/// `orphan <seconds>`: leaves behind a grandchild that sleeps `<seconds>` and exits, and
/// checks that the sandbox's init reaps it. Prints `grandchild=<pid>`, then, as soon as
/// the grandchild has vanished from /proc (or after `<seconds>` + 2 s),
/// `grandchild_reaped=<true|false>`; when false, `grandchild_state=<state>` too (`Z` is a
/// zombie nobody reaped). The grandchild closes its stdio, so our output ends with us.
fn orphan(args: &[OsString]) -> Outcome {
    let nap = parse_duration(args)?;
    // Without /proc, "gone from /proc" would prove nothing.
    fs::metadata("/proc/self/stat").map_err(|e| io_failure("stat /proc/self/stat", e))?;
    let (pid_reader, pid_writer) = unistd::pipe().map_err(|e| nix_failure("pipe", e))?;
    let _ = io::stdout().flush();
    match sys::fork().map_err(|e| nix_failure("fork", e))? {
        ForkResult::Child => {
            drop(pid_reader);
            let code = match sys::fork() {
                Ok(ForkResult::Child) => {
                    drop(pid_writer);
                    sys::close_stdio();
                    thread::sleep(nap);
                    sys::exit_now(0)
                }
                // The middle process hands the pid over, then exits at once so that the
                // grandchild is reparented to the sandbox's init.
                Ok(ForkResult::Parent { child }) => {
                    let sent = fs::File::from(pid_writer).write_all(&child.as_raw().to_ne_bytes());
                    i32::from(sent.is_err())
                }
                Err(_) => 1,
            };
            sys::exit_now(code)
        }
        ForkResult::Parent { child } => {
            drop(pid_writer);
            reap(child)?;
            let mut bytes = [0; 4];
            fs::File::from(pid_reader)
                .read_exact(&mut bytes)
                .map_err(|e| io_failure("read grandchild pid", e))?;
            let grandchild = i32::from_ne_bytes(bytes);
            println!("grandchild={grandchild}");

            let deadline = Instant::now() + nap + Duration::from_secs(2);
            loop {
                match process_state(grandchild) {
                    None => {
                        println!("grandchild_reaped=true");
                        break;
                    }
                    Some(state) if Instant::now() >= deadline => {
                        println!("grandchild_reaped=false");
                        println!("grandchild_state={state}");
                        break;
                    }
                    Some(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            Ok(())
        }
    }
}

/// The state letter of process `pid` (`S`, `R`, `Z`, ...), or `None` once it is gone.
fn process_state(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may contain anything, so split at the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// `spawn-sleepers <n>`: leaves n orphaned sleepers, each in a session of its own, prints
/// `ready` (its first and only line) and sleeps forever. The sleepers keep the probe's
/// stdio, so its stdout reaches EOF only once every one of them is dead.
fn spawn_sleepers(args: &[OsString]) -> Outcome {
    let count: u32 = one_arg(args, "count")?;
    for _ in 0..count {
        let _ = io::stdout().flush();
        match sys::fork().map_err(|e| nix_failure("fork", e))? {
            ForkResult::Child => {
                let code = match sys::fork() {
                    Ok(ForkResult::Child) => {
                        // A session of its own, so killing our process group misses it.
                        let _ = unistd::setsid();
                        sleep_forever()
                    }
                    // The middle process exits at once: the sleeper is reparented.
                    Ok(ForkResult::Parent { .. }) => 0,
                    Err(e) => {
                        eprintln!("error={}", nix_failure("fork", e));
                        1
                    }
                };
                sys::exit_now(code)
            }
            ForkResult::Parent { child } => reap(child)?,
        }
    }
    say_ready()?;
    sleep_forever()
}

/// Waits for a middle process of a double fork and checks it succeeded.
fn reap(child: Pid) -> Outcome {
    match waitpid(child, None).map_err(|e| nix_failure("waitpid", e))? {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(format!("intermediate child failed: {other:?}")),
    }
}

/// `whoami-setuid`: effective and real uid (the test runs a setuid-root copy of the probe,
/// which no_new_privs must keep from gaining root).
fn whoami_setuid() -> Outcome {
    println!("euid={}", unistd::geteuid());
    println!("uid={}", unistd::getuid());
    Ok(())
}

/// `sleep <seconds>`.
fn sleep(args: &[OsString]) -> Outcome {
    thread::sleep(parse_duration(args)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Commands: escape attempts (tests/escape.rs)
//
// Each tries a known way out of a sandbox and prints what the kernel answered. They are
// meant for the inside of a sandbox, but each stays harmless if run on the host as root
// by mistake: nothing is written to an existing file, nothing is mounted but on a fresh
// directory of our own (and unmounted at once), whatever could create a process or a
// namespace does so in a throwaway child that exits at once, every fd made is closed,
// and every object made is removed before the command ends.
// ---------------------------------------------------------------------------------------

/// `ok`, or the errno name.
fn verdict<T>(result: Result<T, Errno>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_name(e as i32),
    }
}

/// `ok`, or the errno name (or message) of an I/O error.
fn io_verdict<T>(result: &io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => io_error_name(e),
    }
}

/// The value of `key` in /proc/self/status text, or `missing`.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name == key).then(|| value.trim())
        })
        .unwrap_or("missing")
}

/// `privs [PREFIX]`: real, effective and saved user and group ids, and the capability
/// sets. With a prefix, every key is `PREFIX.<key>`, so that a program this probe execs
/// can report next to it.
fn privs(args: &[OsString]) -> Outcome {
    let prefix = match args {
        [] => String::new(),
        [prefix] => format!("{}.", prefix.to_string_lossy()),
        _ => return Err("expected at most one argument: prefix".to_string()),
    };
    let uids = unistd::getresuid().map_err(|e| nix_failure("getresuid", e))?;
    let gids = unistd::getresgid().map_err(|e| nix_failure("getresgid", e))?;
    println!("{prefix}uid={}", uids.real);
    println!("{prefix}euid={}", uids.effective);
    println!("{prefix}suid={}", uids.saved);
    println!("{prefix}gid={}", gids.real);
    println!("{prefix}egid={}", gids.effective);
    println!("{prefix}sgid={}", gids.saved);
    let status = read_file("/proc/self/status")?;
    for key in ["CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs"] {
        println!("{prefix}{key}={}", status_field(&status, key));
    }
    Ok(())
}

/// What `tty-inject` pushes into a terminal's input: a shell comment, so that even a shell
/// that read it would do nothing.
const INJECTED: &[u8] = b"#hatchery-escape\n";

/// `tty-inject`: CVE-2017-5226. Tries to push [`INJECTED`] into the input of the terminal
/// on stdin with `TIOCSTI`, and `TIOCLINUX` (a read-only subcode), as the process is; then
/// the whole attack: `setsid`, `TIOCSCTTY` to take that terminal as the controlling
/// terminal of the new session, and `TIOCSTI` again. Prints `stdin_is_tty`, `dev_tty`
/// (opening the controlling terminal), `tiocsti`, `tioclinux`, `setsid`, `tiocsctty` and
/// `tiocsti_as_ctty`. If stdin already is our controlling terminal (run by mistake from
/// an interactive shell), it injects nothing and prints `skipped=controlling-terminal`.
fn tty_inject() -> Outcome {
    let stdin = io::stdin();
    println!("stdin_is_tty={}", unistd::isatty(&stdin).unwrap_or(false));
    if sys::controlling_session(&stdin).is_ok() {
        println!("skipped=controlling-terminal");
        return Ok(());
    }
    let dev_tty = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/tty");
    println!("dev_tty={}", io_verdict(&dev_tty));
    println!("tiocsti={}", verdict(sys::tiocsti(&stdin, INJECTED)));
    println!("tioclinux={}", verdict(sys::tioclinux_query(&stdin)));
    println!("setsid={}", verdict(unistd::setsid()));
    println!("tiocsctty={}", verdict(sys::tiocsctty(&stdin)));
    println!(
        "tiocsti_as_ctty={}",
        verdict(sys::tiocsti(&stdin, INJECTED))
    );
    Ok(())
}

/// `exe-write`: CVE-2019-5736. Whether the running binaries can be reached for writing
/// through `/proc/self/exe` (this probe) and `/proc/1/exe` (the sandbox init, a copy of the
/// zygote: the runtime itself), directly (`<key>_open_write`) or as runc's attackers did,
/// by an `O_PATH` handle reopened for writing through `/proc/self/fd`
/// (`<key>_open_path`, `<key>_reopen_write`); and where each link points (`<key>_link`).
/// Nothing is truncated or written.
fn exe_write() -> Outcome {
    for (key, path) in [("self_exe", "/proc/self/exe"), ("init_exe", "/proc/1/exe")] {
        let direct = fs::OpenOptions::new().write(true).open(path);
        println!("{key}_open_write={}", io_verdict(&direct));
        let handle = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path);
        println!("{key}_open_path={}", io_verdict(&handle));
        if let Ok(handle) = handle {
            use std::os::fd::AsRawFd;
            let reopened = fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
            println!("{key}_reopen_write={}", io_verdict(&reopened));
        }
        match fs::read_link(path) {
            Ok(target) => print_bytes(&format!("{key}_link"), target.as_os_str().as_bytes())?,
            Err(e) => println!("{key}_link={}", io_error_name(&e)),
        }
    }
    Ok(())
}

/// `root-walk`: CVE-2024-21626. Whether anything leads out of the root: `/..`
/// (`dotdot_is_root`), `chdir("..")` from the working directory again and again
/// (`cwd_after_dotdot`), the working directory and root as /proc shows them
/// (`proc_self_cwd`, `proc_self_cwd_is_cwd`, `proc_self_root`), what each open fd is
/// (`fd.<n>`), and the init's fds, among them its channel to the zygote (`init_fds`,
/// `init_fd3`, `init_cwd`).
fn root_walk() -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let same = |a: &str, b: &str| match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev() == b.dev() && a.ino() == b.ino()).to_string(),
        (Err(e), _) | (_, Err(e)) => io_error_name(&e),
    };
    println!("dotdot_is_root={}", same("/..", "/"));
    let cwd = unistd::getcwd().map_err(|e| nix_failure("getcwd", e))?;
    for _ in 0..64 {
        unistd::chdir("..").map_err(|e| nix_failure("chdir ..", e))?;
    }
    let after = unistd::getcwd().map_err(|e| nix_failure("getcwd", e))?;
    print_bytes("cwd_after_dotdot", after.as_os_str().as_bytes())?;
    println!("cwd_after_dotdot_is_root={}", same(".", "/"));
    unistd::chdir(&cwd).map_err(|e| nix_failure("chdir back", e))?;
    for (key, link) in [
        ("proc_self_cwd", "/proc/self/cwd"),
        ("proc_self_root", "/proc/self/root"),
    ] {
        match fs::read_link(link) {
            Ok(target) => print_bytes(key, target.as_os_str().as_bytes())?,
            Err(e) => println!("{key}={}", io_error_name(&e)),
        }
    }
    println!("proc_self_cwd_is_cwd={}", same("/proc/self/cwd", "."));
    // As in `fds`: the listing's own fd is gone once the listing is.
    let listed: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| io_failure("read_dir /proc/self/fd", e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in listed.into_iter().filter(|&fd| sys::fd_is_open(fd)) {
        match fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(target) => print_bytes(&format!("fd.{fd}"), target.as_os_str().as_bytes())?,
            Err(e) => println!("fd.{fd}={}", io_error_name(&e)),
        }
    }
    println!(
        "init_fds={}",
        io_verdict(&fs::read_dir("/proc/1/fd").map(|d| d.count()))
    );
    println!("init_fd3={}", io_verdict(&fs::File::open("/proc/1/fd/3")));
    println!("init_cwd={}", io_verdict(&fs::read_link("/proc/1/cwd")));
    Ok(())
}

/// `set-ids`: tries to become root or join its group: `setuid(0)`, `setgid(0)`,
/// `setresuid(0, 0, 0)`, `setresgid(0, 0, 0)`, `setgroups([0])`, `setfsuid(0)` (which
/// reports no error, so `ok` means the fsuid did become 0). Each runs in a throwaway child.
fn set_ids() -> Outcome {
    use nix::unistd::{Gid, Uid};
    let (root, root_group) = (Uid::from_raw(0), Gid::from_raw(0));
    let done = |result: nix::Result<()>| result.map(|()| 0);
    println!("setuid={}", in_child(|| done(unistd::setuid(root))));
    println!("setgid={}", in_child(|| done(unistd::setgid(root_group))));
    println!(
        "setresuid={}",
        in_child(|| done(unistd::setresuid(root, root, root)))
    );
    println!(
        "setresgid={}",
        in_child(|| done(unistd::setresgid(root_group, root_group, root_group)))
    );
    println!(
        "setgroups={}",
        in_child(|| done(unistd::setgroups(&[root_group])))
    );
    println!(
        "setfsuid={}",
        in_child(|| {
            unistd::setfsuid(root);
            // An invalid id changes nothing and returns the current fsuid.
            match unistd::setfsuid(Uid::from_raw(u32::MAX)) {
                uid if uid == root => Ok(0),
                _ => Err(Errno::EPERM),
            }
        })
    );
    Ok(())
}

/// A word that `peek`'s child reads out of its parent at its own address of it (a forked
/// child has the same memory layout).
static PEEK_TARGET: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0x6861_7463_6865_7279);

/// Reads [`PEEK_TARGET`] out of process `pid` with `process_vm_readv`; `Ok` only if the
/// value arrived.
fn read_peek_target(pid: Pid) -> Result<i64, Errno> {
    use nix::sys::uio::{process_vm_readv, RemoteIoVec};
    let mut word = [0u8; 8];
    let remote = RemoteIoVec {
        base: PEEK_TARGET.as_ptr() as usize,
        len: word.len(),
    };
    let read = process_vm_readv(pid, &mut [io::IoSliceMut::new(&mut word)], &[remote])?;
    let expected = PEEK_TARGET.load(std::sync::atomic::Ordering::Relaxed);
    if read == 8 && u64::from_ne_bytes(word) == expected {
        Ok(0)
    } else {
        Err(Errno::EIO)
    }
}

/// `peek`: reading or controlling another process of the sandbox. First the init (PID 1,
/// which holds a copy of the zygote's memory and its channel to the zygote) and our parent
/// (the init again, inside a sandbox): `<who>_ptrace_seize` (`PTRACE_SEIZE`, which does
/// not stop the tracee, from a throwaway child whose exit detaches),
/// `<who>_process_vm_readv`, `<who>_mem_read` and `<who>_mem_write` (opening
/// `/proc/<pid>/mem`; nothing is read or written). Then the same two calls against a
/// process the kernel alone would let us trace, this probe itself, from a forked child of
/// it (same user, dumpable): `child_ptrace_seize_parent`, `child_process_vm_readv_parent`.
fn peek() -> Outcome {
    let parent = unistd::getppid();
    println!("ppid={parent}");
    for (who, pid) in [("init", Pid::from_raw(1)), ("parent", parent)] {
        println!("{who}_ptrace_seize={}", in_child(|| sys::ptrace_seize(pid)));
        println!("{who}_process_vm_readv={}", verdict(read_peek_target(pid)));
        let mem = format!("/proc/{pid}/mem");
        let read = fs::File::open(&mem);
        println!("{who}_mem_read={}", io_verdict(&read));
        let write = fs::OpenOptions::new().read(true).write(true).open(&mem);
        println!("{who}_mem_write={}", io_verdict(&write));
    }
    let me = unistd::getpid();
    println!(
        "child_ptrace_seize_parent={}",
        in_child(|| sys::ptrace_seize(me))
    );
    println!(
        "child_process_vm_readv_parent={}",
        in_child(|| read_peek_target(me))
    );
    Ok(())
}

/// `try <attempt>...`: makes each named attempt (see [`attempt`]) for real and prints
/// `<attempt>=ok`, the errno name, or `killed:<SIGNAL>` for one that killed the throwaway
/// child it ran in.
fn try_calls(names: &[OsString]) -> Outcome {
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
fn try_syscalls(pairs: &[OsString]) -> Outcome {
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
fn memfd_exec() -> Outcome {
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

/// `mount-tmpfs`: tries to mount a tmpfs on a fresh directory of our own under /tmp, and
/// to bind-mount `/` there; whatever got mounted is unmounted at once, and the directory
/// removed. Prints `mount_tmpfs` and `mount_bind`.
fn mount_tmpfs() -> Outcome {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let dir = format!("/tmp/hatchery-probe-mount-{}", unistd::getpid());
    fs::create_dir(&dir).map_err(|e| io_failure(format!("mkdir {dir}"), e))?;
    for (key, source, fstype, flags) in [
        ("mount_tmpfs", "tmpfs", Some("tmpfs"), MsFlags::empty()),
        ("mount_bind", "/", None, MsFlags::MS_BIND),
    ] {
        let mounted = mount(Some(source), dir.as_str(), fstype, flags, None::<&str>);
        println!("{key}={}", verdict(mounted));
        if mounted.is_ok() {
            umount2(dir.as_str(), MntFlags::MNT_DETACH)
                .map_err(|e| nix_failure(format!("umount {dir}"), e))?;
        }
    }
    fs::remove_dir(&dir).map_err(|e| io_failure(format!("rmdir {dir}"), e))
}

/// `ls-after-line <dir>`: prints `ready`, waits for one line on stdin, then lists `<dir>`
/// as `ls` does (the test changes the host's mounts in between).
fn ls_after_line(args: &[OsString]) -> Outcome {
    say_ready()?;
    let mut line = String::new();
    io::stdin()
        .read_line(&mut line)
        .map_err(|e| io_failure("read stdin", e))?;
    ls(args)
}

/// `connect <path|@name>...`: connects a Unix stream socket to each path, or to each
/// abstract name written `@name`, and prints `<target>=ok` or the errno, and
/// `<target>.listed=<true|false>`: whether /proc/net/unix, which lists the sockets of our
/// network namespace, names it. Each connection is closed at once.
fn connect(targets: &[OsString]) -> Outcome {
    use nix::sys::socket::{connect, UnixAddr};
    use std::os::fd::AsRawFd;
    if targets.is_empty() {
        return Err("expected at least one path or @name".to_string());
    }
    let listing = read_file("/proc/net/unix")?;
    for target in targets {
        let bytes = target.as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => UnixAddr::new_abstract(name),
            None => UnixAddr::new(bytes),
        }
        .map_err(|e| nix_failure(format!("address {target:?}"), e))?;
        let sock = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| nix_failure("socket(AF_UNIX)", e))?;
        let connected = connect(sock.as_raw_fd(), &address);
        let key = target.to_string_lossy();
        println!("{key}={}", verdict(connected));
        // Columns: Num RefCount Protocol Flags Type St Inode Path.
        let listed = listing
            .lines()
            .any(|line| line.split_whitespace().nth(7) == Some(&*key));
        println!("{key}.listed={listed}");
    }
    Ok(())
}

/// The SysV IPC key of `ipc-hold` and `ipc-look` for `name`: FNV-1a of it, never 0
/// (`IPC_PRIVATE`).
fn ipc_key(name: &str) -> libc::key_t {
    let hash = name.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (hash | 1) as libc::key_t
}

/// The names `ipc-hold` and `ipc-look` use for `name`: a POSIX message queue, a file in
/// /dev/shm, an abstract socket and a key description.
struct IpcNames {
    queue: std::ffi::CString,
    shm_file: String,
    socket: String,
    key: std::ffi::CString,
}

fn ipc_names(name: &str) -> Result<IpcNames, String> {
    let c = |s: String| std::ffi::CString::new(s).map_err(|_| "NUL in name".to_string());
    Ok(IpcNames {
        queue: c(format!("/hatchery-{name}"))?,
        shm_file: format!("/dev/shm/hatchery-{name}"),
        socket: format!("hatchery-{name}"),
        key: c(format!("hatchery-{name}"))?,
    })
}

/// `ipc-hold <name>`: creates every kind of object by which processes of one machine find
/// each other by name: SysV shared memory (`shm`), a semaphore set (`sem`) and a message
/// queue (`msg`) under [`ipc_key`], a POSIX message queue (`mqueue`), a file in /dev/shm
/// (`dev_shm`), a listening abstract socket (`abstract`), and a key in the user keyring
/// (`keyring`). Prints `ok` or the errno for each, then `ready`; holds them until stdin
/// reaches end of file, then removes them all.
fn ipc_hold(args: &[OsString]) -> Outcome {
    use nix::sys::socket::{bind, listen, Backlog, UnixAddr};
    use std::os::fd::AsRawFd;
    let name: String = one_arg(args, "name")?;
    let (key, names) = (ipc_key(&name), ipc_names(&name)?);
    let shm = sys::shm_create(key);
    println!("shm={}", verdict(shm));
    let sem = sys::sem_create(key);
    println!("sem={}", verdict(sem));
    let msg = sys::msg_create(key);
    println!("msg={}", verdict(msg));
    let queue = sys::mqueue_create(&names.queue);
    println!("mqueue={}", verdict(queue));
    let shm_file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&names.shm_file);
    println!("dev_shm={}", io_verdict(&shm_file));
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .and_then(|sock| {
        let address = UnixAddr::new_abstract(names.socket.as_bytes())?;
        bind(sock.as_raw_fd(), &address)?;
        listen(&sock, Backlog::new(1)?)?;
        Ok(sock)
    });
    println!("abstract={}", verdict(listener.as_ref().map_err(|e| *e)));
    let user_key = sys::add_user_key(&names.key);
    println!("keyring={}", verdict(user_key));
    say_ready()?;
    io::copy(&mut io::stdin().lock(), &mut io::sink()).map_err(|e| io_failure("read stdin", e))?;

    if let Ok(id) = shm {
        sys::shm_remove(id);
    }
    if let Ok(id) = sem {
        sys::sem_remove(id);
    }
    if let Ok(id) = msg {
        sys::msg_remove(id);
    }
    if queue.is_ok() {
        sys::mqueue_remove(&names.queue);
    }
    if shm_file.is_ok() {
        let _ = fs::remove_file(&names.shm_file);
    }
    if let Ok(serial) = user_key {
        sys::invalidate_key(serial);
    }
    Ok(())
}

/// `ipc-look <name>`: looks for what `ipc-hold <name>` made, by name only, and prints the
/// same keys (`ok` when found, else the errno); also `proc_keys` (whether /proc/keys lists
/// the key) and `sysvipc_objects` (how many SysV objects of any key /proc/sysvipc lists).
fn ipc_look(args: &[OsString]) -> Outcome {
    use nix::sys::socket::{connect, UnixAddr};
    use std::os::fd::AsRawFd;
    let name: String = one_arg(args, "name")?;
    let (key, names) = (ipc_key(&name), ipc_names(&name)?);
    println!("shm={}", verdict(sys::shm_lookup(key)));
    println!("sem={}", verdict(sys::sem_lookup(key)));
    println!("msg={}", verdict(sys::msg_lookup(key)));
    println!("mqueue={}", verdict(sys::mqueue_lookup(&names.queue)));
    println!("dev_shm={}", io_verdict(&fs::metadata(&names.shm_file)));
    let connected = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .and_then(|sock| {
        let address = UnixAddr::new_abstract(names.socket.as_bytes())?;
        connect(sock.as_raw_fd(), &address)
    });
    println!("abstract={}", verdict(connected));
    println!("keyring={}", verdict(sys::search_user_key(&names.key)));
    let description = names.key.to_string_lossy();
    let listed = fs::read_to_string("/proc/keys").map(|keys| keys.contains(&*description));
    println!(
        "proc_keys={}",
        listed.map_or_else(|e| io_error_name(&e), |found| found.to_string())
    );
    let mut objects = 0;
    for kind in ["shm", "sem", "msg"] {
        // One header line, then one line per object.
        let table = read_file(&format!("/proc/sysvipc/{kind}"))?;
        objects += table.lines().skip(1).count();
    }
    println!("sysvipc_objects={objects}");
    Ok(())
}

/// A POSIX lock request over the whole file.
fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// `lock-hold <path>`: opens `<path>` read-only and takes a POSIX read lock (`posix_lock`)
/// and a shared `flock` (`flock`) on it, neither of which needs write access; prints
/// `ready` and holds them until stdin reaches end of file.
fn lock_hold(args: &[OsString]) -> Outcome {
    use nix::fcntl::{fcntl, FcntlArg, Flock, FlockArg};
    let [path] = args else {
        return Err("expected exactly one argument: path".to_string());
    };
    let file = fs::File::open(path).map_err(|e| io_failure(format!("open {path:?}"), e))?;
    let read_lock = whole_file_lock(libc::F_RDLCK);
    println!(
        "posix_lock={}",
        verdict(fcntl(&file, FcntlArg::F_SETLK(&read_lock)))
    );
    let _held = match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(held) => {
            println!("flock=ok");
            Some(held)
        }
        Err((_, e)) => {
            println!("flock={}", errno_name(e as i32));
            None
        }
    };
    say_ready()?;
    io::copy(&mut io::stdin().lock(), &mut io::sink()).map_err(|e| io_failure("read stdin", e))?;
    Ok(())
}

/// `lock-look <path>`: opens `<path>` read-only and asks whether another process holds a
/// lock on it: `posix_lock_seen` (`F_GETLK` for a write lock finds a conflicting lock:
/// `true`/`false`) and `flock_exclusive` (a non-blocking exclusive `flock`: `ok`, or
/// `EAGAIN` while another process holds one).
fn lock_look(args: &[OsString]) -> Outcome {
    use nix::fcntl::{fcntl, FcntlArg, Flock, FlockArg};
    let [path] = args else {
        return Err("expected exactly one argument: path".to_string());
    };
    let file = fs::File::open(path).map_err(|e| io_failure(format!("open {path:?}"), e))?;
    let mut probe = whole_file_lock(libc::F_WRLCK);
    match fcntl(&file, FcntlArg::F_GETLK(&mut probe)) {
        Ok(_) => println!(
            "posix_lock_seen={}",
            probe.l_type != libc::F_UNLCK as libc::c_short
        ),
        Err(e) => println!("posix_lock_seen={}", errno_name(e as i32)),
    }
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_) => println!("flock_exclusive=ok"),
        Err((_, e)) => println!("flock_exclusive={}", errno_name(e as i32)),
    }
    Ok(())
}

/// `signal-pids <pid>...`: for pids of another pid namespace (the zygote's, another
/// sandbox's), whether we can reach them: `kill.<pid>` (signal 0: checks, sends nothing),
/// `proc.<pid>` (whether /proc lists it), `pidfd.<pid>` (`pidfd_open`) and `ptrace.<pid>`
/// (`PTRACE_SEIZE` from a throwaway child).
fn signal_pids(pids: &[OsString]) -> Outcome {
    if pids.is_empty() {
        return Err("expected at least one pid".to_string());
    }
    for arg in pids {
        let pid: i32 = one_arg(std::slice::from_ref(arg), "pid")?;
        let target = Pid::from_raw(pid);
        println!("kill.{pid}={}", verdict(kill(target, None)));
        println!("proc.{pid}={}", Path::new(&format!("/proc/{pid}")).exists());
        println!("pidfd.{pid}={}", verdict(sys::pidfd_open(target)));
        println!("ptrace.{pid}={}", in_child(|| sys::ptrace_seize(target)));
    }
    Ok(())
}

/// `detach-tree <walkers> <seconds>`: leaves `<walkers>` processes that each start a
/// session of their own, clear their parent-death signal and keep moving: every few
/// milliseconds a walker forks a copy of itself and exits, so its pid never stays the
/// same (how fork bombs dodge a kill by pid). Prints `ready` once they run, then waits.
/// Everything ends after `<seconds>` at the latest. The walkers keep our stdout, so a
/// reader sees end of file only once the last of them is gone.
fn detach_tree(args: &[OsString]) -> Outcome {
    let [walkers, seconds] = args else {
        return Err("expected two arguments: walkers seconds".to_string());
    };
    let walkers: u32 = one_arg(std::slice::from_ref(walkers), "walkers")?;
    let deadline = Instant::now() + parse_duration(std::slice::from_ref(seconds))?;
    for _ in 0..walkers {
        let _ = io::stdout().flush();
        match sys::fork().map_err(|e| nix_failure("fork", e))? {
            ForkResult::Child => {
                let code = match sys::fork() {
                    Ok(ForkResult::Child) => {
                        let _ = unistd::setsid();
                        walk(deadline)
                    }
                    // The middle process exits at once: the walker is reparented.
                    Ok(ForkResult::Parent { .. }) => 0,
                    Err(_) => 1,
                };
                sys::exit_now(code)
            }
            ForkResult::Parent { child } => reap(child)?,
        }
    }
    say_ready()?;
    thread::sleep(deadline.saturating_duration_since(Instant::now()));
    Ok(())
}

/// A walker of `detach-tree`: hops to a new pid every 5 ms until `deadline`.
fn walk(deadline: Instant) -> ! {
    loop {
        // A fork clears the parent-death signal anyway; a walker asks for none, so the
        // death of whoever forked it changes nothing for it.
        let _ = nix::sys::prctl::set_pdeathsig(None);
        if Instant::now() >= deadline {
            sys::exit_now(0);
        }
        thread::sleep(Duration::from_millis(5));
        if let Ok(ForkResult::Parent { .. }) = sys::fork() {
            sys::exit_now(0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The only unsafe code
// ---------------------------------------------------------------------------------------

/// Thin wrappers over the calls that need `unsafe`; nothing else in the probe uses it.
mod sys {
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
            let ret =
                unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSTI, byte as *const u8) };
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
}

// ---------------------------------------------------------------------------------------
// TCP over a veth network
// ---------------------------------------------------------------------------------------

/// `tcp LISTEN_PORT SECONDS [--wait] TARGET...`: listens on `[::]:LISTEN_PORT` (IPv4 and
/// IPv6; port 0 for none), prints `ready`, waits for a line on stdin if `--wait` is
/// given, then connects to each TARGET (`ADDR:PORT`, `[ADDR6]:PORT`, or `gw4:PORT` /
/// `gw6:PORT` for the default gateway of that family), sends `ping`, and prints
/// `<target>.connect=ok|<ERRNO>`, `<target>.local=<addr>`, `<target>.reply=<line>`.
/// Then answers connections with `pong` until SECONDS have passed since the start, and
/// prints `accepted=<N>`. Connects time out after one second.
fn tcp(args: &[OsString]) -> Outcome {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(str::to_string).ok_or("non-UTF-8 argument"))
        .collect::<Result<_, _>>()?;
    let [port, seconds, rest @ ..] = args.as_slice() else {
        return Err("expected LISTEN_PORT SECONDS [--wait] TARGET...".into());
    };
    let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
    let seconds: f64 = seconds
        .parse()
        .map_err(|_| format!("invalid seconds {seconds:?}"))?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let (wait, targets) = match rest {
        [flag, targets @ ..] if flag == "--wait" => (true, targets),
        targets => (false, targets),
    };
    let listener = match port {
        0 => None,
        port => {
            let listener = TcpListener::bind(("::", port))
                .map_err(|e| io_failure(format!("bind [::]:{port}"), e))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| io_failure("set_nonblocking", e))?;
            Some(listener)
        }
    };
    say_ready()?;
    if wait {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .map_err(|e| io_failure("read stdin", e))?;
    }
    for target in targets {
        let address: SocketAddr = match target.split_once(':') {
            Some(("gw4", port)) => SocketAddr::new(gateway(false)?, port_of(port)?),
            Some(("gw6", port)) => SocketAddr::new(gateway(true)?, port_of(port)?),
            _ => target
                .parse()
                .map_err(|_| format!("invalid target {target:?}"))?,
        };
        match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
            Ok(mut stream) => {
                println!("{target}.connect=ok");
                if let Ok(local) = stream.local_addr() {
                    println!("{target}.local={}", local.ip());
                }
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut reply = String::new();
                let _ = stream.write_all(b"ping\n");
                let _ = io::BufRead::read_line(&mut io::BufReader::new(&mut stream), &mut reply);
                println!("{target}.reply={}", reply.trim_end());
            }
            Err(e) => println!("{target}.connect={}", io_error_name(&e)),
        }
    }
    let mut accepted = 0;
    if let Some(listener) = listener {
        while Instant::now() < until {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    accepted += 1;
                    let _ = stream.write_all(b"pong\n");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(io_failure("accept", e)),
            }
        }
    }
    println!("accepted={accepted}");
    Ok(())
}

fn port_of(text: &str) -> Result<u16, String> {
    text.parse().map_err(|_| format!("invalid port {text:?}"))
}

/// The next hop of the default route of one family, from `/proc/net/route` (gateway in
/// the third column, as hex of the address's bytes in memory order) or
/// `/proc/net/ipv6_route` (destination, prefix length, ..., next hop in the fifth).
fn gateway(v6: bool) -> Result<std::net::IpAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    if !v6 {
        let table = read_file("/proc/net/route")?;
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 2 && fields[1] == "00000000" {
                let raw = u32::from_str_radix(fields[2], 16).map_err(|e| e.to_string())?;
                return Ok(IpAddr::V4(Ipv4Addr::from(raw.to_le_bytes())));
            }
        }
        return Err("no IPv4 default route".into());
    }
    let table = read_file("/proc/net/ipv6_route")?;
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let zero = "0".repeat(32);
        if fields.len() == 10 && fields[0] == zero && fields[1] == "00" && fields[4] != zero {
            let raw = u128::from_str_radix(fields[4], 16).map_err(|e| e.to_string())?;
            return Ok(IpAddr::V6(Ipv6Addr::from(raw)));
        }
    }
    Err("no IPv6 default route".into())
}
