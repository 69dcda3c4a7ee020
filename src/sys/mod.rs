//! Thin wrappers over the system calls that nix does not cover safely, one file per
//! concern: [`process`] (clone, fork, exec, wait, pidfds), [`fd`] (placing and closing
//! fds), [`signal`], [`caps`], [`mount`] (the new mount API), [`socket`] (accept, fd
//! passing, loopback), [`terminal`] (a pty pair, its size, the controlling terminal) and [`memory`]
//! (mappings, the child stack, the code copy).
//!
//! This is the only module allowed `unsafe`. Each wrapper is named after its system call,
//! takes and returns owned or borrowed file descriptors (never a bare `RawFd` that
//! outlives the call) and reports failure as a [`SysError`] naming the operation, the
//! path if there is one, and the errno. Runs in the zygote, the sandbox init and the
//! workload alike. Every item is re-exported here, so that `sys::clone3` names it
//! whichever file holds it.

use std::fmt;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

pub mod caps;
pub mod fd;
pub mod memory;
pub mod mount;
pub mod namespace;
pub mod process;
pub mod signal;
pub mod socket;
pub mod terminal;

pub use caps::*;
pub use fd::*;
pub use memory::*;
pub use mount::*;
pub use namespace::*;
pub use process::*;
pub use signal::*;
pub use socket::*;
pub use terminal::*;

/// A failed system call: which operation, on which path, and the errno.
///
/// Displayed as `pivot_root("/new"): EPERM (Operation not permitted)`. It is
/// serialisable so a sandbox whose setup fails can send it to the zygote.
///
/// ```
/// use hatchery::SysError;
/// let err = SysError::with_path("mount", "/proc", nix::errno::Errno::EPERM);
/// assert_eq!(err.to_string(), "mount(\"/proc\"): EPERM (Operation not permitted)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct SysError {
    /// The system call or operation, e.g. `"pivot_root"`.
    pub op: String,
    /// The path it acted on, when there is one.
    pub path: Option<String>,
    /// The raw errno value.
    pub errno: i32,
}

impl SysError {
    /// An error of `op` without a path.
    pub fn new(op: impl Into<String>, errno: Errno) -> Self {
        SysError {
            op: op.into(),
            path: None,
            errno: errno as i32,
        }
    }

    /// An error of `op` on `path`.
    pub fn with_path(
        op: impl Into<String>,
        path: impl AsRef<std::path::Path>,
        errno: Errno,
    ) -> Self {
        SysError {
            op: op.into(),
            path: Some(path.as_ref().to_string_lossy().into_owned()),
            errno: errno as i32,
        }
    }

    /// The same error, on `path`.
    pub fn on(self, path: impl AsRef<std::path::Path>) -> Self {
        let errno = self.errno();
        SysError::with_path(self.op, path, errno)
    }

    /// The errno as a nix value.
    pub fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }

    /// Converts an `io::Error` from the standard library.
    pub fn from_io(
        op: impl Into<String>,
        path: Option<&std::path::Path>,
        err: &std::io::Error,
    ) -> Self {
        let errno = Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO));
        match path {
            Some(p) => SysError::with_path(op, p, errno),
            None => SysError::new(op, errno),
        }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errno = self.errno();
        match &self.path {
            Some(path) => write!(f, "{}({:?}): {:?} ({})", self.op, path, errno, errno.desc()),
            None => write!(f, "{}: {:?} ({})", self.op, errno, errno.desc()),
        }
    }
}

/// Attaches the operation (and path) to a nix result.
pub trait Context<T> {
    /// Names the operation that failed.
    fn op(self, op: &str) -> Result<T, SysError>;
    /// Names the operation and the path it acted on.
    fn op_path(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T, SysError>;
}

impl<T> Context<T> for nix::Result<T> {
    fn op(self, op: &str) -> Result<T, SysError> {
        self.map_err(|e| SysError::new(op, e))
    }
    fn op_path(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T, SysError> {
        self.map_err(|e| SysError::with_path(op, path, e))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn op(self, op: &str) -> Result<T, SysError> {
        self.map_err(|e| SysError::from_io(op, None, &e))
    }
    fn op_path(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T, SysError> {
        self.map_err(|e| SysError::from_io(op, Some(path.as_ref()), &e))
    }
}
