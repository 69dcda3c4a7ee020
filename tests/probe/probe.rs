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
        other => Err(format!("unknown command {other:?}; {}", usage())),
    };
    report(outcome)
}

fn usage() -> String {
    "usage: hatchery-probe <pid|ids|status|net|hostname|writable PATH...|ls DIR|mounts|fds|\
     env|cwd|syscalls|uid-map|threads|cat|echo-both OUT ERR|exit CODE|kill-self SIGNUM|\
     wait-signal|orphan SECONDS|spawn-sleepers N|whoami-setuid|sleep SECONDS>"
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

/// `status`: the capability sets, no_new_privs and seccomp mode from /proc/self/status.
fn status() -> Outcome {
    const KEYS: [&str; 7] = [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
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
// The only unsafe code
// ---------------------------------------------------------------------------------------

/// Thin wrappers over the calls that need `unsafe`; nothing else in the probe uses it.
mod sys {
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
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
}
