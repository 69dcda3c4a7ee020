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
//!
//! It runs as the workload of a sandbox. The commands that try a way out (for
//! `tests/escape.rs`) stay harmless if run on the host as root by mistake: nothing is
//! written to an existing file, nothing is mounted but on a fresh directory of the
//! probe's own (and unmounted at once), whatever could create a process or a namespace
//! does so in a throwaway child that exits at once, every fd made is closed, and every
//! object made is removed before the command ends.
//!
//! This file only dispatches; the commands live by what they look at: [`identity`]
//! (ids, capabilities, hostname, environment), [`files`] (paths, mounts, fds, the root),
//! [`processes`] (exits, signals, process trees, other processes' memory), [`stdio`]
//! (the streams and the terminal on them), [`network`], [`ipc`] (covert channels
//! between sandboxes) and [`seccomp`] (syscall attempts). [`output`] writes the facts,
//! and [`sys`] holds the only `unsafe` code.

mod files;
mod identity;
mod ipc;
mod network;
mod output;
mod processes;
mod seccomp;
mod stdio;
mod sys;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use output::io_failure;

/// What a command returns: `Err` carries the message printed as `error=<message>`.
type Outcome = Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(command) = args.first().and_then(|c| c.to_str()) else {
        return report(Err(usage()));
    };
    let rest = &args[1..];
    let outcome = match command {
        "pid" => identity::pid(),
        "ids" => identity::ids(),
        "status" => identity::status(),
        "net" => network::net(),
        "hostname" => identity::hostname(),
        "writable" => files::writable(rest),
        "ls" => files::ls(rest),
        "mounts" => files::mounts(),
        "fds" => files::fds(),
        "env" => identity::env(),
        "cwd" => identity::cwd(),
        "syscalls" => seccomp::syscalls(),
        "uid-map" => identity::uid_map(),
        "threads" => processes::threads(),
        "cat" => stdio::cat(),
        "echo-both" => stdio::echo_both(rest),
        "exit" => processes::exit(rest),
        "kill-self" => processes::kill_self(rest),
        "wait-signal" => processes::wait_signal(),
        "orphan" => processes::orphan(rest),
        "spawn-sleepers" => processes::spawn_sleepers(rest),
        "whoami-setuid" => identity::whoami_setuid(),
        "sleep" => processes::sleep(rest),
        "privs" => identity::privs(rest),
        "tty-inject" => stdio::tty_inject(),
        "exe-write" => files::exe_write(),
        "root-walk" => files::root_walk(),
        "set-ids" => identity::set_ids(),
        "peek" => processes::peek(),
        "try" => seccomp::try_calls(rest),
        "try-syscall" => seccomp::try_syscalls(rest),
        "memfd-exec" => seccomp::memfd_exec(),
        "mount-tmpfs" => files::mount_tmpfs(),
        "ls-after-line" => files::ls_after_line(rest),
        "connect" => network::connect(rest),
        "ipc-hold" => ipc::ipc_hold(rest),
        "ipc-look" => ipc::ipc_look(rest),
        "lock-hold" => files::lock_hold(rest),
        "lock-look" => files::lock_look(rest),
        "signal-pids" => processes::signal_pids(rest),
        "detach-tree" => processes::detach_tree(rest),
        "tcp" => network::tcp(rest),
        "udp-from" => network::udp_from(rest),
        "resolve" => network::resolve(rest),
        "udp-ask" => network::udp_ask(rest),
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
     tcp LISTEN_PORT SECONDS [--wait] TARGET...|udp-from TARGET SOURCE...|\
     resolve NAME...|udp-ask TARGET...>"
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

/// Parses the single argument as a number of seconds (fractions allowed).
fn parse_duration(args: &[OsString]) -> Result<Duration, String> {
    let seconds: f64 = one_arg(args, "seconds")?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid seconds: {e}"))
}
