//! hatchery: a sandboxed process spawner for Linux.
//!
//! A long-lived zygote daemon ([`zygote`]) takes spawn requests on a Unix socket and
//! clones each child into fresh user, pid, mount, network, IPC, UTS and cgroup
//! namespaces, with a read-only root, every capability dropped, `no_new_privs` and a
//! seccomp filter (`sandbox`). The child's stdio and a pidfd go back to the client
//! ([`client`]) over `SCM_RIGHTS`; the wire format is in [`protocol`].
//!
//! A Rust program can also be a zygote of its own ([`Zygote::builder`]): it preloads its
//! state once (bulk data in a [`Preloaded`] region, whose size does not slow a fork) and
//! serves named entries, which run in children forked from it inside the same sandbox;
//! [`Client::call`] returns an entry's typed result.
//!
//! ```no_run
//! use std::io::Read;
//! use hatchery::{Client, SpawnRequest};
//!
//! let client = Client::connect("/run/hatchery/hatchery.sock")?;
//! let mut child = client.spawn_child(SpawnRequest::new("/bin/echo").arg("hi"))?;
//! let mut out = String::new();
//! child.stdout.take().unwrap().read_to_string(&mut out)?;
//! assert_eq!(child.wait()?.status.code(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// `unsafe` lives in `sys` alone, and every `unsafe fn` there says what its caller owes.
#![deny(unsafe_code)]
#![deny(clippy::missing_safety_doc)]

pub mod call;
pub mod client;
pub mod limits;
pub(crate) mod network;
pub mod preload;
pub mod protocol;
pub(crate) mod sandbox;
pub mod seccomp;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod zygote;

/// An error and its whole chain of causes on one line, `outer: cause: root cause`, as
/// logs and the CLI print them.
///
/// ```
/// let err = hatchery::SysError::with_path("mount", "/proc", nix::errno::Errno::EPERM);
/// assert_eq!(hatchery::error_chain(&err), "mount(\"/proc\"): EPERM (Operation not permitted)");
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub use call::{CallError, CallOutput};
pub use client::{ChildProcess, Client, ClientError, ConnectError, SpawnError};
pub use network::{Cidr, NetworkError, NetworkSettings};
pub use preload::Preloaded;
pub use protocol::{
    Bind, ExitStatus, Layer, NetworkConfig, SandboxConfig, SpawnRequest, Stdio, Verdict, VethConfig,
};
pub use sandbox::HostIds;
pub use sys::SysError;
pub use zygote::{Zygote, ZygoteBuilder, ZygoteConfig};

/// Not part of the API: what this crate's own tests, benchmarks and test programs reach
/// into (the raw system calls, the spare-namespace helper's name). It may change in any
/// release.
#[doc(hidden)]
pub mod internals {
    /// The system-call wrappers (`src/sys/`).
    pub mod sys {
        pub use crate::sys::*;
    }

    pub use crate::protocol::one_of_each_error_kind;

    /// The daemon's helper that makes network and IPC namespaces ahead.
    pub mod spare_namespaces {
        pub use crate::sandbox::spare_namespaces::{HELPER_NAME, SPARES};
    }
}

/// Compiles the README's Rust examples as doc tests, so that they stay true to the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// A zygote may be built on one thread and served on another (with the rest of the
    /// process then single-threaded), and clients may go to worker threads.
    #[test]
    fn the_public_handles_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<crate::Zygote>();
        send::<crate::Client>();
        send::<crate::ChildProcess>();
    }
}
