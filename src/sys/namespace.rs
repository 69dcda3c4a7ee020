//! Namespaces of the calling thread: an fd of one to come back to, and the way back.
//! Used by the zygote around work it does in a sandbox's or a spare network namespace
//! (the veth setup, the clone into spare namespaces) and by the spare-namespace helper.

use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;

use super::{Context, SysError};

/// An fd of this thread's namespace of `kind` (`net`, `ipc`, ...), from
/// `/proc/thread-self/ns/KIND`.
pub fn own_namespace(kind: &str) -> Result<OwnedFd, SysError> {
    let path = format!("/proc/thread-self/ns/{kind}");
    nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .op_path("open", &path)
}

/// An fd of this thread's network namespace, to come back to with [`return_to_netns`].
pub fn own_netns() -> Result<OwnedFd, SysError> {
    own_namespace("net")
}

/// Returns the calling thread to its own network namespace `home` after it worked in
/// another. A daemon that cannot aborts rather than go on serving from a sandbox's
/// namespace.
pub fn return_to_netns(home: &OwnedFd) {
    if let Err(e) = nix::sched::setns(home, CloneFlags::CLONE_NEWNET) {
        tracing::error!(error = %e, "cannot return to the daemon's network namespace");
        std::process::abort();
    }
}
