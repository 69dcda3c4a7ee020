//! `hatchery run -t` and `hatchery shell`: the command on a terminal of the sandbox's own
//! (the CLI's process). A terminal comes only with a command of a persistent sandbox, so
//! the job is one fresh sandbox made from run's options, ending with the command (and
//! with this process's connection, whatever ends it), its one command driven from this
//! terminal by [`crate::sandboxes::terminal`].

use std::ffi::OsString;
use std::io::IsTerminal;

use hatchery::protocol::{Command, SandboxOptions, SpawnRequest};
use hatchery::{
    EndReason, ExecRequest, ExitStatus, Limits, SandboxEndReason, SandboxVerdict, Verdict,
};

use super::profile::Options;
use super::{report, socket, Failure, RunArgs};
use crate::sandboxes::exec::with_terminal;
use crate::sandboxes::terminal::{self, Ended};

/// Bash if the root has it, else sh; interactive either way.
const SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash -i; else exec sh -i; fi";

/// What `shell` adds to run's options where they leave a choice: a shell, a `PATH`, a
/// writable `HOME` and directory (`/tmp`).
pub fn shell_defaults(options: &mut Options, command: &mut Vec<OsString>) {
    if command.is_empty() {
        *command = ["/bin/sh", "-c", SHELL].map(OsString::from).to_vec();
    }
    for (key, value) in [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/tmp")] {
        let set = options
            .env
            .iter()
            .any(|entry| entry.split_once('=').is_some_and(|(k, _)| k == key));
        if !set {
            options.env.push(format!("{key}={value}"));
        }
    }
    options.cwd.get_or_insert_with(|| "/tmp".into());
}

/// `run -t`'s refusal when this process's stdin is not a terminal: the command's
/// terminal is driven from it, key by key, and a pipe or a file has no keys to send, no
/// size and no raw mode.
pub fn check_stdin() -> Result<(), Failure> {
    if std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(Failure::hatchery(
        "-t: stdin is not a terminal (the command's terminal is driven from it); \
         leave out -t to pass stdin to the command as it is",
    ))
}

/// How the job on a terminal ended: its verdict (none when a signal ended this process
/// and the daemon did not answer after), and the exit code.
pub struct Outcome {
    pub verdict: Option<Verdict>,
    pub code: u8,
}

/// Runs `request` (made by `request::sandboxed`) in a fresh sandbox, on a terminal.
/// `shown` is the program as typed, for messages.
pub fn run(
    request: SpawnRequest,
    shown: &OsString,
    args: &RunArgs,
    veth: bool,
) -> Result<Outcome, Failure> {
    let Command::Exec { program, argv } = request.command else {
        return Err(Failure::hatchery("a terminal is for a program"));
    };
    let mut command = ExecRequest::new(shown);
    command.program = program;
    command.argv = argv;
    command.env = request.env;
    command.cwd = request.cwd;
    // The command's own limits, so that its verdict names the one that ended it; the
    // sandbox keeps them too (its wall time is its lifetime).
    command.wall_time_ms = request.sandbox.limits.wall_time_ms;
    command.cpu_time_ms = request.sandbox.limits.cpu_time_ms;
    let command = with_terminal(command);
    // No signal is held: until the command runs, one ends this process, and the daemon
    // ends what it made for the connection; then the session reads them.
    let target = socket::choose(args.socket.as_deref(), args.embedded);
    let (client, embedded) = socket::connect(&target, veth, args.quiet, None)?;
    // Ends with this process's connection, whatever ends it.
    let sandbox = client
        .create_sandbox(request.sandbox, SandboxOptions::default())
        .map_err(|e| report::spawn_failure(&e, shown))?;
    let mut child = sandbox
        .spawn(command)
        .map_err(|e| report::spawn_failure(&e, shown))?;
    let ended = terminal::session(&mut child);
    drop(child);
    let whole = sandbox.destroy().ok();
    drop(client);
    if let Some(zygote) = embedded {
        zygote.wait();
    }
    match ended {
        Ok(ended) => {
            let code = terminal::exit_code(&ended);
            let verdict = match ended {
                Ended::Exited(verdict) => Some(verdict),
                Ended::Signaled(_, verdict) => verdict,
            };
            let verdict = verdict.map(|verdict| as_runs(verdict, whole.as_ref()));
            Ok(Outcome { verdict, code })
        }
        Err(message) => Err(Failure::hatchery(message)),
    }
}

/// The command's verdict as `run` reports a job's: the sandbox's limits and peak memory,
/// and, when a sandbox limit's kill (its memory, CPU time or lifetime) ended it, that
/// limit as the reason.
fn as_runs(mut verdict: Verdict, sandbox: Option<&SandboxVerdict>) -> Verdict {
    let Some(sandbox) = sandbox else {
        return verdict;
    };
    let reason = match sandbox.reason {
        SandboxEndReason::OomKilled => Some(EndReason::OomKilled),
        SandboxEndReason::CpuTimeout => Some(EndReason::CpuTimeout),
        SandboxEndReason::Lifetime => Some(EndReason::WallTimeout),
        _ => None,
    };
    let killed = verdict.status == ExitStatus::Signaled(libc::SIGKILL);
    if let (Some(reason), true, EndReason::Signaled | EndReason::KilledByClient) =
        (reason, killed, verdict.reason)
    {
        verdict.reason = reason;
    }
    let own = verdict.limits;
    verdict.limits = Limits {
        wall_time_ms: own.wall_time_ms.or(sandbox.limits.wall_time_ms),
        cpu_time_ms: own.cpu_time_ms.or(sandbox.limits.cpu_time_ms),
        ..sandbox.limits
    };
    verdict.memory_peak_bytes = sandbox.memory_peak_bytes;
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use hatchery::protocol::LimitSet;

    fn command(status: ExitStatus, reason: EndReason) -> Verdict {
        Verdict {
            status,
            reason,
            wall_time_us: 1,
            user_cpu_us: 0,
            system_cpu_us: 0,
            max_rss_kib: 0,
            memory_peak_bytes: None,
            tasks_started: None,
            limits: Limits {
                wall_time_ms: Some(5_000),
                ..Limits::default()
            },
            skipped_limits: Vec::new(),
            limits_reached: LimitSet::EMPTY,
        }
    }

    fn sandbox(reason: SandboxEndReason) -> SandboxVerdict {
        SandboxVerdict {
            name: "sandbox-1".into(),
            reason,
            wall_time_us: 1,
            user_cpu_us: 0,
            system_cpu_us: 0,
            memory_peak_bytes: Some(32 << 20),
            commands_run: 1,
            limits: Limits {
                memory_bytes: Some(32 << 20),
                wall_time_ms: Some(9_000),
                ..Limits::default()
            },
        }
    }

    #[test]
    fn a_sandbox_limits_kill_is_the_commands_reason() {
        let killed = ExitStatus::Signaled(libc::SIGKILL);
        let verdict = as_runs(
            command(killed, EndReason::Signaled),
            Some(&sandbox(SandboxEndReason::OomKilled)),
        );
        assert_eq!(verdict.reason, EndReason::OomKilled);
        assert_eq!(verdict.limits.memory_bytes, Some(32 << 20));
        // The command's own wall time stays its own.
        assert_eq!(verdict.limits.wall_time_ms, Some(5_000));
        assert_eq!(verdict.memory_peak_bytes, Some(32 << 20));
        // Destroyed after the command ended: nothing to name.
        let verdict = as_runs(
            command(killed, EndReason::Signaled),
            Some(&sandbox(SandboxEndReason::Destroyed)),
        );
        assert_eq!(verdict.reason, EndReason::Signaled);
        // An exit is an exit, whatever ended the sandbox after it.
        let verdict = as_runs(
            command(ExitStatus::Exited(0), EndReason::Exited),
            Some(&sandbox(SandboxEndReason::OomKilled)),
        );
        assert_eq!(verdict.reason, EndReason::Exited);
    }

    #[test]
    fn shell_defaults_fill_only_what_is_left_out() {
        let mut options = Options {
            env: vec!["HOME=/home/me".into()],
            ..Options::default()
        };
        let mut command = Vec::new();
        shell_defaults(&mut options, &mut command);
        assert_eq!(command[0], "/bin/sh");
        assert_eq!(
            options.env,
            ["HOME=/home/me", "PATH=/usr/local/bin:/usr/bin:/bin"]
        );
        assert_eq!(options.cwd.as_deref(), Some("/tmp".as_ref()));

        let mut options = Options {
            cwd: Some("/work".into()),
            ..Options::default()
        };
        let mut command = vec![OsString::from("top")];
        shell_defaults(&mut options, &mut command);
        assert_eq!(command, ["top"]);
        assert_eq!(options.cwd.as_deref(), Some("/work".as_ref()));
    }
}
