//! Which daemon `hatchery run` uses, and never a silent fallback: a socket named by
//! `--socket` or `HATCHERY_SOCKET` is used or nothing runs ([`EXIT_NO_DAEMON`], with
//! what is at the path and what to do); an embedded zygote starts only when asked for
//! (`--embedded`) or when no socket is named and nothing is at the default path, and
//! then `run` says so once.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use hatchery::client::{
    default_socket_path, ConnectError, ForwardedSignals, SOCKET_ENV, SYSTEM_SOCKET,
};
use hatchery::zygote::embedded::{self, EmbeddedZygote};
use hatchery::{error_chain as chain, Client, NetworkSettings};

use super::{Failure, EXIT_NO_DAEMON};

/// Where the daemon is to be found.
pub enum Target {
    /// Named by the user: used, or `run` fails.
    Named {
        path: PathBuf,
        /// How it was named, as the message shows it (`--socket`, `HATCHERY_SOCKET=`).
        by: &'static str,
    },
    /// The default path: used if anything is there, else an embedded zygote.
    Default(PathBuf),
    /// `--embedded`.
    Embedded,
}

/// The target for `--socket` and `--embedded` (which clap keeps apart) and the
/// environment.
pub fn choose(socket: Option<&Path>, embedded: bool) -> Target {
    if embedded {
        return Target::Embedded;
    }
    if let Some(path) = socket {
        return Target::Named {
            path: path.to_path_buf(),
            by: "--socket ",
        };
    }
    if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return Target::Named {
            path: path.into(),
            by: "HATCHERY_SOCKET=",
        };
    }
    let own = default_socket_path();
    if !exists(&own) && exists(Path::new(SYSTEM_SOCKET)) {
        return Target::Default(SYSTEM_SOCKET.into());
    }
    Target::Default(own)
}

/// Whether anything (even a broken symlink) is at `path`.
fn exists(path: &Path) -> bool {
    match path.symlink_metadata() {
        Ok(_) => true,
        // Something may be there that we may not see: not "nothing".
        Err(e) => !matches!(e.kind(), ErrorKind::NotFound) && e.raw_os_error() != Some(20),
    }
}

/// Connects to the target's daemon, or starts an embedded zygote. Returns the embedded
/// zygote, to be reaped at the end. The embedded zygote networks with the embedded pools
/// when `veth` is asked for (see `NetworkSettings::embedded`). With `signals` held, a
/// signal ends the wait for a daemon that does not answer (`run`); without, the
/// signal's own default does (`mcp`).
pub fn connect(
    target: &Target,
    veth: bool,
    quiet: bool,
    signals: Option<&ForwardedSignals>,
) -> Result<(Client, Option<EmbeddedZygote>), Failure> {
    let (path, by) = match target {
        Target::Embedded => return start_embedded(veth),
        Target::Default(path) if !exists(path) => {
            if !quiet {
                eprintln!(
                    "hatchery: no daemon at {}; running in an embedded zygote, under no \
                     daemon's policy (--embedded asks for this, --quiet silences this line)",
                    path.display()
                );
            }
            return start_embedded(veth);
        }
        Target::Default(path) => (path, "the default socket "),
        Target::Named { path, by } => (path, *by),
    };
    let connected = match signals {
        Some(signals) => signals
            .unless_interrupted(|| Client::connect(path), super::interrupted)
            .map_err(|e| Failure::hatchery(chain(&e)))?,
        None => Client::connect(path),
    };
    match connected {
        Ok(client) => Ok((client, None)),
        Err(ConnectError::Unreachable(error)) => Err(Failure {
            code: EXIT_NO_DAEMON,
            message: format!(
                "{by}{}: {}; nothing ran{}",
                path.display(),
                unreachable(path, Errno::from_raw(error.errno)),
                match target {
                    Target::Default(_) => " (--embedded runs without a daemon)",
                    _ => "",
                }
            ),
        }),
        Err(e) => Err(Failure::hatchery(format!(
            "{by}{}: {}",
            path.display(),
            chain(&e)
        ))),
    }
}

fn start_embedded(veth: bool) -> Result<(Client, Option<EmbeddedZygote>), Failure> {
    // The thread that connected (if any) has ended: an embedded zygote may be forked.
    embedded::start(veth.then(NetworkSettings::embedded))
        .map(|(client, zygote)| (client, Some(zygote)))
        .map_err(|e| Failure::hatchery(chain(&e)))
}

/// Why no daemon could be reached at `path`, in the user's words: what is there.
fn unreachable(path: &Path, errno: Errno) -> String {
    let uid = nix::unistd::geteuid();
    let denied = || {
        format!(
            "permission denied: uid {uid} may not open it (the daemon's operator can admit \
             this uid with `hatchery serve --allow-uid {uid}`, or a group with --group)"
        )
    };
    match path.symlink_metadata() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            "no such file: no daemon listens there".to_string()
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => denied(),
        Err(e) => super::report::io_reason(&e),
        Ok(meta) if meta.is_dir() => "is a directory, not a daemon's socket".to_string(),
        Ok(meta) if meta.is_file() => "is a regular file, not a daemon's socket".to_string(),
        Ok(meta) if !meta.file_type().is_socket() => "is not a socket".to_string(),
        Ok(_) => match errno {
            Errno::ECONNREFUSED => {
                "no daemon is listening on this socket (a stale one, left by a daemon that \
                 is gone?)"
                    .to_string()
            }
            Errno::EACCES | Errno::EPERM => denied(),
            Errno::EPROTOTYPE => "is a socket of another kind, not a hatchery daemon's".to_string(),
            other => format!("cannot connect: {other:?} ({})", other.desc()),
        },
    }
}
