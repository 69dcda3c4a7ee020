//! hatchery: a sandboxed process spawner for Linux.
//!
//! A long-lived zygote daemon (`hatchery serve`, or `hatchery::zygote` in a program of your own)
//! takes spawn requests on a Unix socket and clones each child into fresh user, pid,
//! mount, network, IPC, UTS and cgroup namespaces, with a read-only root, every
//! capability dropped, `no_new_privs` and a seccomp filter. The child's stdio and a pidfd
//! go back to the client ([`client`]) over `SCM_RIGHTS`; the wire format is in
//! [`protocol`].
//!
//! ```no_run
//! use hatchery::{Client, Limits, SandboxConfig, SpawnRequest};
//!
//! let client = Client::connect("/run/hatchery/hatchery.sock")?;
//! let request = SpawnRequest::new("/bin/echo").arg("hi").sandbox(SandboxConfig {
//!     limits: Limits { wall_time_ms: Some(10_000), ..Limits::default() },
//!     ..SandboxConfig::default()
//! });
//! let output = client.output(request)?;
//! assert_eq!(output.stdout, b"hi\n");
//! assert_eq!(output.verdict.status.code(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `daemon` (on by default): the daemon's side — `hatchery::zygote` (and the `hatchery`
//!   command), the sandbox setup, seccomp, veth networking, cgroups, `Preloaded`. A
//!   program that only spawns children depends on hatchery with `default-features =
//!   false` and gets the client alone ([`Client`], [`ChildProcess`], the [`protocol`]'s
//!   types, [`Limits`] and its parsers): no async runtime, netlink, seccomp compiler or
//!   command-line parser is built.
#![cfg_attr(
    feature = "daemon",
    doc = r#"
A Rust program can also be a zygote of its own ([`Zygote::builder`]): it preloads its
state once (bulk data in a [`Preloaded`] region, whose size does not slow a fork) and
serves named entries, which run in children forked from it inside the same sandbox;
[`Client::call`] returns an entry's typed result."#
)]
// `unsafe` lives in `sys` alone, and every `unsafe fn` there says what its caller owes.
#![deny(unsafe_code)]
#![deny(clippy::missing_safety_doc)]

// The client side, always built: the client library, the wire protocol, the limits'
// types and parsers, and the system calls they make.
pub mod call;
pub mod client;
pub mod limits;
pub mod protocol;
#[allow(unsafe_code)]
pub(crate) mod sys;

// The daemon side (the `daemon` feature, on by default): everything that makes, runs
// and polices sandboxes.
#[cfg(feature = "daemon")]
pub(crate) mod network;
#[cfg(feature = "daemon")]
pub mod preload;
#[cfg(feature = "daemon")]
pub(crate) mod sandbox;
#[cfg(feature = "daemon")]
pub mod seccomp;
#[cfg(feature = "daemon")]
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
pub use client::{ChildProcess, Client, ClientError, ConnectError, Output, Sandbox, SpawnError};
pub use limits::{parse_duration_ms, parse_limit, parse_size, ParseError};
#[cfg(feature = "daemon")]
pub use network::{Cidr, NetworkError, NetworkSettings};
#[cfg(feature = "daemon")]
pub use preload::Preloaded;
pub use protocol::{
    Bind, EndReason, ExecRequest, ExitStatus, Layer, Limit, Limits, NetworkConfig, SandboxConfig,
    SandboxEndReason, SandboxOptions, SandboxVerdict, SpawnRequest, Stdio, Verdict, VethConfig,
};
#[cfg(feature = "daemon")]
pub use sandbox::HostIds;
pub use sys::SysError;
#[cfg(feature = "daemon")]
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
    #[cfg(feature = "daemon")]
    pub mod spare_namespaces {
        pub use crate::sandbox::spare_namespaces::{HELPER_NAME, SPARES};
    }
}

/// Compiles the README's Rust examples as doc tests, so that they stay true to the API
/// (they use the daemon's side too).
#[cfg(all(doctest, feature = "daemon"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// A zygote may be built on one thread and served on another (with the rest of the
    /// process then single-threaded), and clients may go to worker threads.
    #[test]
    fn the_public_handles_can_move_between_threads() {
        fn send<T: Send>() {}
        #[cfg(feature = "daemon")]
        send::<crate::Zygote>();
        send::<crate::Client>();
        send::<crate::ChildProcess>();
    }
}
