//! Commands about processes and signals: exit codes, deaths by signal, signal delivery,
//! orphans and sleepers left for the init to reap, threads under the filter, trees that
//! try to outlive the sandbox, and reaching other processes (`ptrace`,
//! `process_vm_readv`, `/proc/PID/mem`, `kill`, `pidfd_open`).
//!
//! Runs in the workload, single-threaded except in `threads`: every hand-made fork goes
//! through [`crate::sys::fork`], which asserts it. [`in_child`] is also how the other
//! modules try something that could change or kill the probe.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, AccessFlags, ForkResult, Pid};

use crate::output::{
    errno_name, io_error_name, io_failure, io_verdict, nix_failure, say_ready, verdict,
};
use crate::{one_arg, parse_duration, sys, Outcome};

fn sleep_forever() -> ! {
    loop {
        // pause() returns only when a handled signal arrives; none is handled here.
        unistd::pause();
    }
}

/// Forks a child that runs `f` and exits with its result; returns what the parent saw:
/// `ok`, the errno name, `killed:<SIGNAL>` if the child died of a signal (a seccomp
/// kill shows as `killed:SIGSYS`), or `fork:<ERRNO>` if the fork itself failed.
pub fn in_child(f: impl FnOnce() -> Result<i64, Errno>) -> String {
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

/// `threads`: what a normal multi-threaded program does works under the filter:
/// threads, a shell pipeline through std's `Command` (which may use clone3 or
/// posix_spawn and falls back on ENOSYS), `faccessat`, and close-on-exec of our files.
/// Prints one `key=ok` or `key=<error>` line per check; exits 1 if any failed.
pub fn threads() -> Outcome {
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

/// `exit <code>`: exits with that code.
pub fn exit(args: &[OsString]) -> Outcome {
    let code: i32 = one_arg(args, "exit code")?;
    let _ = io::stdout().flush();
    std::process::exit(code)
}

/// `kill-self <signum>`: dies of that signal's default action.
pub fn kill_self(args: &[OsString]) -> Outcome {
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
pub fn wait_signal() -> Outcome {
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

/// `orphan <seconds>`: leaves behind a grandchild that sleeps `<seconds>` and exits, and
/// checks that the sandbox's init reaps it. Prints `grandchild=<pid>`, then, as soon as
/// the grandchild has vanished from /proc (or after `<seconds>` + 2 s),
/// `grandchild_reaped=<true|false>`; when false, `grandchild_state=<state>` too (`Z` is a
/// zombie nobody reaped). The grandchild closes its stdio, so our output ends with us.
pub fn orphan(args: &[OsString]) -> Outcome {
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
pub fn spawn_sleepers(args: &[OsString]) -> Outcome {
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
pub fn reap(child: Pid) -> Outcome {
    match waitpid(child, None).map_err(|e| nix_failure("waitpid", e))? {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(format!("intermediate child failed: {other:?}")),
    }
}

/// `sleep <seconds>`.
pub fn sleep(args: &[OsString]) -> Outcome {
    thread::sleep(parse_duration(args)?);
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
pub fn peek() -> Outcome {
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

/// `signal-pids <pid>...`: for pids of another pid namespace (the zygote's, another
/// sandbox's), whether we can reach them: `kill.<pid>` (signal 0: checks, sends nothing),
/// `proc.<pid>` (whether /proc lists it), `pidfd.<pid>` (`pidfd_open`) and `ptrace.<pid>`
/// (`PTRACE_SEIZE` from a throwaway child).
pub fn signal_pids(pids: &[OsString]) -> Outcome {
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
pub fn detach_tree(args: &[OsString]) -> Outcome {
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
pub fn walk(deadline: Instant) -> ! {
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
