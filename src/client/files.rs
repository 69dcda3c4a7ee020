//! `Sandbox::put` and `Sandbox::fetch`: files into and out of a persistent sandbox,
//! written and read by a command inside it, as the sandbox's user. Runs in the client.
//!
//! The daemon never opens a path of the sandbox's: a symlink planted inside resolves
//! inside the sandbox's root, with the sandbox's user's rights, like any path a command
//! there opens. The commands are the sandbox's own `/bin/sh` and `cat` (a root without
//! them cannot take files this way). A fetch takes regular files only, is bounded in
//! size by the caller and in time by a wall limit, so that a FIFO, `/dev/zero` or a file
//! swapped for one cannot hold the client.

use std::io::{Read, Write};

use super::sandbox::Sandbox;
use super::{ClientError, SpawnError};
use crate::protocol::{ExecRequest, ExitStatus, Stdio};

/// How long a `put` or `fetch` command may run.
pub const TRANSFER_WALL_TIME_MS: u64 = 30_000;

/// The most a command's error message is read, in bytes.
const MAX_ERROR: usize = 4096;

/// Why a file could not be put into or fetched from a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The path is not absolute (paths are the sandbox's, from its root).
    #[error("{path:?}: a path in the sandbox must be absolute")]
    RelativePath {
        /// The path as given.
        path: String,
    },
    /// The command inside could not be started.
    #[error("cannot start the transfer's command in the sandbox")]
    Spawn(#[source] SpawnError),
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ClientError),
    /// Writing or reading the command's pipes failed.
    #[error("{path:?}: the transfer's pipe failed")]
    Pipe {
        /// The path in the sandbox.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The command inside refused or failed (the message is its own, e.g. "not a
    /// regular file", "Permission denied").
    #[error("{path:?} in the sandbox: {message}")]
    Refused {
        /// The path in the sandbox.
        path: String,
        /// What the command said, or how it ended.
        message: String,
    },
    /// The file is larger than the caller's bound.
    #[error("{path:?} in the sandbox is larger than {limit} bytes")]
    TooLarge {
        /// The path in the sandbox.
        path: String,
        /// The bound.
        limit: usize,
    },
}

/// Writes `$2` (the file's bytes on stdin) at `$1`, with mode `$3`; replaces a file,
/// never follows a symlink at `$1` out of the root (every path resolves in the root).
const PUT: &str = r#"umask 077; cat > "$1" && chmod "$2" "$1""#;

/// Prints `$1` if it is a regular file.
const FETCH: &str =
    r#"if [ ! -f "$1" ]; then echo "not a regular file" >&2; exit 3; fi; exec cat -- "$1""#;

impl Sandbox {
    /// Writes `bytes` to `path` in the sandbox with `mode` (e.g. `0o644`), as the
    /// sandbox's user, through a command inside (so a symlink there cannot lead out of
    /// its root). The sandbox's limits bound it (its `/tmp` size, its file-size limit).
    pub fn put(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), TransferError> {
        absolute(path)?;
        let request = ExecRequest::new("/bin/sh")
            .args(["-c", PUT, "put", path, &format!("{:o}", mode & 0o7777)])
            .env("PATH", "/usr/bin:/bin")
            .stdout(Stdio::Null)
            .wall_time_ms(TRANSFER_WALL_TIME_MS);
        let mut child = self.spawn(request).map_err(TransferError::Spawn)?;
        let pipe = |source| TransferError::Pipe {
            path: path.into(),
            source,
        };
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| pipe(std::io::Error::other("no stdin pipe")))?;
        // A write error (EPIPE: it failed early) is explained by its stderr below.
        let written = stdin.write_all(bytes);
        drop(stdin);
        let message = read_bounded(child.stderr.take(), MAX_ERROR).map_err(pipe)?;
        let verdict = child.wait()?;
        if !verdict.status.success() {
            return Err(refused(path, &message, verdict.status));
        }
        written.map_err(pipe)
    }

    /// Reads the regular file `path` in the sandbox, as the sandbox's user, through a
    /// command inside; at most `limit` bytes (a larger file is refused, and the command
    /// killed). A FIFO, a device or a directory is refused.
    pub fn fetch(&self, path: &str, limit: usize) -> Result<Vec<u8>, TransferError> {
        absolute(path)?;
        let request = ExecRequest::new("/bin/sh")
            .args(["-c", FETCH, "fetch", path])
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::Null)
            .wall_time_ms(TRANSFER_WALL_TIME_MS);
        let mut child = self.spawn(request).map_err(TransferError::Spawn)?;
        let pipe = |source| TransferError::Pipe {
            path: path.into(),
            source,
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let errors = std::thread::spawn(move || read_bounded(stderr, MAX_ERROR));
        let read = read_bounded(stdout, limit.saturating_add(1));
        let too_large = read.as_ref().is_ok_and(|bytes| bytes.len() > limit);
        if too_large || read.is_err() {
            let _ = child.kill();
        }
        let message = errors
            .join()
            .unwrap_or_else(|_| Ok(String::new().into_bytes()))
            .map_err(pipe)?;
        let verdict = child.wait()?;
        let bytes = read.map_err(pipe)?;
        if too_large {
            return Err(TransferError::TooLarge {
                path: path.into(),
                limit,
            });
        }
        if !verdict.status.success() {
            return Err(refused(path, &message, verdict.status));
        }
        Ok(bytes)
    }
}

fn absolute(path: &str) -> Result<(), TransferError> {
    match path.starts_with('/') {
        true => Ok(()),
        false => Err(TransferError::RelativePath { path: path.into() }),
    }
}

fn refused(path: &str, message: &[u8], status: ExitStatus) -> TransferError {
    let said = String::from_utf8_lossy(message).trim().to_string();
    TransferError::Refused {
        path: path.into(),
        message: match said.is_empty() {
            true => format!("the command ended with status {}", status.code()),
            false => said,
        },
    }
}

/// Reads `stream` to its end or until `limit` bytes.
fn read_bounded(stream: Option<impl Read>, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        stream.take(limit as u64).read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}
