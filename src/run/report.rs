//! What `hatchery run` prints of its own, in the user's words: the line that names why a
//! job was ended (a limit, the daemon's shutdown, a lost daemon), and the failures of a
//! spawn with the flags and the program as typed.

use std::ffi::OsString;
use std::path::Path;

use hatchery::client::{ClientError, ForwardError};
use hatchery::protocol::{EndReason, Limit};
use hatchery::{error_chain as chain, SpawnError, Verdict};

use super::{Failure, EXIT_CANNOT_EXECUTE, EXIT_HATCHERY, EXIT_NOT_FOUND};

/// The line naming what ended the job, when hatchery or the daemon ended it (not when it
/// exited, or a signal of its own or of the user's ended it).
pub fn end_reason(verdict: &Verdict) -> Option<String> {
    let limit = |kind: Limit, shown: String| format!("killed: {kind} limit {shown} reached");
    let limits = &verdict.limits;
    match verdict.reason {
        EndReason::Exited | EndReason::Signaled | EndReason::KilledByClient => None,
        EndReason::WallTimeout => Some(limit(
            Limit::WallTime,
            duration(limits.wall_time_ms.unwrap_or_default()),
        )),
        EndReason::CpuTimeout => Some(limit(
            Limit::CpuTime,
            duration(limits.cpu_time_ms.unwrap_or_default()),
        )),
        EndReason::OomKilled => Some(match limits.memory_bytes {
            Some(bytes) => limit(Limit::Memory, size(bytes)),
            None => "killed: out of memory".to_string(),
        }),
        EndReason::DaemonShutdown => Some("killed: the daemon shut down".to_string()),
    }
}

/// The line naming a limit the job ran into without being ended by it: the pids limit,
/// where the host could tell that forks were refused.
pub fn limits_reached(verdict: &Verdict) -> Option<String> {
    let pids = verdict.limits.pids?;
    verdict
        .limits_reached
        .contains(Limit::Pids)
        .then(|| format!("pids limit {pids} reached: forks were refused"))
}

/// A job whose daemon went away before its verdict came: the sandbox dies with its
/// daemon (or is killed with its client's connection).
pub fn lost_daemon(error: &ForwardError) -> Failure {
    match error {
        ForwardError::Client(ClientError::Disconnected | ClientError::Closed(_)) => {
            Failure::hatchery(format!(
                "killed: the daemon went away while the job ran ({})",
                chain(error)
            ))
        }
        other => Failure::hatchery(chain(other)),
    }
}

/// A size as a user types it: `64 MiB`, `1.5 GiB`, `4096 bytes`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for name in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(name);
    }
    match unit {
        None => format!("{bytes} bytes"),
        Some(unit) if value.fract() == 0.0 => format!("{value} {unit}"),
        Some(unit) => format!("{value:.1} {unit}"),
    }
}

/// A duration as a user types it: `1s`, `1.5s`, `250ms`, `2m`.
pub use hatchery::limits::format_duration_ms as duration;

/// An I/O error without Rust's "(os error N)".
pub fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// A spawn that failed, with its exit code and the line that says why in the flags' and
/// the program's words.
pub fn spawn_failure(error: &SpawnError, program: &OsString) -> Failure {
    let shown = Path::new(program).display();
    match error {
        SpawnError::NotFound { .. } => Failure {
            code: EXIT_NOT_FOUND,
            message: format!(
                "{shown}: not found in the sandbox{}",
                not_found_hint(program)
            ),
        },
        SpawnError::CannotExecute { errno, .. } => Failure {
            code: EXIT_CANNOT_EXECUTE,
            message: format!(
                "{shown}: cannot be executed in the sandbox: {errno:?} ({})",
                errno.desc()
            ),
        },
        SpawnError::UnenforceableLimits { limits, .. } => {
            let flags: Vec<String> = limits.iter().map(|kind| format!("--{kind}")).collect();
            Failure::hatchery(format!(
                "this host cannot enforce {} (no cgroup controller for it); leave it out, \
                 or add --allow-unenforced-limits to run without it",
                flags.join(", ")
            ))
        }
        SpawnError::InvalidRequest(message) => {
            Failure::hatchery(format!("invalid request: {}", in_flag_words(message)))
        }
        SpawnError::Connection(ClientError::Disconnected | ClientError::Closed(_)) => {
            Failure::hatchery(format!(
                "the daemon went away before the job started ({})",
                chain(error)
            ))
        }
        other => Failure {
            code: EXIT_HATCHERY,
            message: chain(other),
        },
    }
}

/// The hint for a program that is not found: the sandbox sees only its root and binds,
/// not the current directory.
fn not_found_hint(program: &OsString) -> String {
    const BIND_CWD: &str = "bind it with `--bind .:/job --cwd /job`";
    let path = Path::new(program);
    let bare = !path.as_os_str().as_encoded_bytes().contains(&b'/');
    if path.is_relative() && !bare {
        format!("; the sandbox does not see the current directory; {BIND_CWD}")
    } else if path.exists() {
        format!(
            "; it is on the host, but the sandbox sees only its root and binds: bind it \
             with `--ro-bind {}`, or for the current directory {BIND_CWD}",
            path.parent().unwrap_or(path).display()
        )
    } else if bare {
        " (looked up in the sandbox's PATH: the one --env gives, or \
         /usr/local/bin:/usr/bin:/bin)"
            .to_string()
    } else {
        String::new()
    }
}

/// The daemon names a request's fields (`chroot_dir`, `cwd`, ...); `run`'s user typed
/// flags. `run` checks its paths before they are sent, so this is what is left.
fn in_flag_words(message: &str) -> String {
    const FIELDS: [(&str, &str); 6] = [
        ("chroot_dir", "--chroot"),
        ("a bind source", "a --bind/--ro-bind source"),
        ("a bind target", "a --bind/--ro-bind destination"),
        ("use chroot_dir", "use --chroot"),
        ("allow_unenforced_limits", "--allow-unenforced-limits"),
        ("cwd must", "--cwd must"),
    ];
    FIELDS
        .iter()
        .fold(message.to_string(), |text, (field, flag)| {
            text.replace(field, flag)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_typed() {
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(100), "100 bytes");
        assert_eq!(duration(1000), "1s");
        assert_eq!(duration(1500), "1.5s");
        assert_eq!(duration(250), "250ms");
        assert_eq!(duration(120_000), "2m");
    }

    #[test]
    fn wire_fields_become_flags() {
        assert_eq!(
            in_flag_words("chroot_dir must be an absolute path without \"..\": x"),
            "--chroot must be an absolute path without \"..\": x"
        );
    }
}
