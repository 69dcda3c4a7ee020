//! A failed sandbox setup on the wire: the step ([`SetupStep`]) and what went wrong in it
//! ([`SetupFailure`]), carried by [`ErrorKind::Setup`](super::ErrorKind::Setup).
//!
//! Built in the sandbox's init, which sends it to the zygote on its channel; the zygote
//! passes it on to the client, which gets it as `SpawnError::Setup`. The same
//! [`SetupStep`] names the parts of a sandbox's setup timeline (`sandbox::timeline`): a
//! step's failure and its time are one vocabulary. The order of the steps, and why each
//! is where it is, is documented once, on the recipe in `sandbox::init`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sys::SysError;

/// One step of a sandbox's setup: what a failed setup names, and what its timeline times.
///
/// The wire index of a step is its place in this declaration, so the list is
/// append-only: a new step goes at the end (whatever its place in the recipe), and no
/// step is removed or moved. Listed here in the order a fresh sandbox performs them
/// (see the recipe in `sandbox::init` for why).
///
/// ```
/// use hatchery::protocol::SetupStep;
/// assert_eq!(SetupStep::IdMaps.to_string(), "id maps");
/// assert_eq!(SetupStep::ALL[SetupStep::IdMaps as usize], SetupStep::IdMaps);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetupStep {
    /// The zygote's `clone3`, until the init runs. Only ever timed: a failed `clone3` is
    /// the daemon's own error ([`ErrorKind::Internal`](super::ErrorKind::Internal)).
    Clone,
    /// The workload's stdio placed on 0, 1 and 2, the channel on 3, an entry's result
    /// pipe on 4, every other fd inherited from the zygote closed.
    PlaceFds,
    /// Signal dispositions reset to their defaults, the forwarded signals held.
    HoldSignals,
    /// The exec's arguments and environment built as C strings (or the entry paired
    /// with its result pipe).
    PrepareWorkload,
    /// The wait for the zygote to write the uid/gid maps.
    IdMaps,
    /// Supplementary groups dropped, the sandbox's uid and gid taken.
    UserIds,
    /// The parent-death signal armed, and the zygote checked to be still alive.
    DieWithZygote,
    /// Mounts made private; a scratch root (or the copy of the zygote's root template)
    /// attached.
    ScratchRoot,
    /// The root's directories: the host's, bound read-only, or the request's chroot
    /// directory.
    RootDirectories,
    /// A fresh `/proc` and the sandbox's own `/tmp` mounted.
    ProcAndTmp,
    /// `/dev` built (or the template's copied) with its own `/dev/shm`.
    Dev,
    /// The request's bind mounts made.
    Binds,
    /// The new root pivoted to.
    PivotRoot,
    /// The host's tree, stacked on the new root by the pivot, detached, and the zygote's
    /// root template (kept open for the root) closed.
    DetachOldRoot,
    /// The new root made read-only.
    ReadOnlyRoot,
    /// The sandbox's hostname set.
    Hostname,
    /// `lo` brought up.
    Loopback,
    /// The securebits locked and the bounding set emptied.
    BoundingSet,
    /// The ambient, inheritable, permitted and effective capabilities dropped.
    DropCapabilities,
    /// `no_new_privs` set.
    NoNewPrivs,
    /// The kernel asked whether any capability is left and `no_new_privs` is set.
    VerifyPrivileges,
    /// A warm-pool sandbox receiving its request and putting the workload's stdio in
    /// place.
    Handover,
    /// The request's working directory entered.
    WorkingDirectory,
    /// A new session started (no controlling terminal).
    Session,
    /// The per-process resource limits set.
    ResourceLimits,
    /// The wait for the zygote to bring the sandbox's veth network up.
    Network,
    /// The workload started (forked, or cloned sharing the init's memory).
    StartWorkload,
    /// The workload's own open-files limit set.
    OpenFilesLimit,
    /// The seccomp filter installed.
    Seccomp,
    /// The workload's `execve`. Its own failure is [`ErrorKind::NotFound`] or
    /// [`ErrorKind::CannotExecute`]; a setup failure names this step when the init
    /// cannot learn how the exec went.
    ///
    /// [`ErrorKind::NotFound`]: super::ErrorKind::NotFound
    /// [`ErrorKind::CannotExecute`]: super::ErrorKind::CannotExecute
    Exec,
    /// The init's signal forwarding set up, once the workload runs.
    ForwardSignals,
    /// A persistent sandbox's init made undumpable (`PR_SET_DUMPABLE` 0), so that no
    /// command, though it runs as the init's user, can ptrace it or open its
    /// `/proc/1/mem`.
    Undumpable,
    /// A persistent sandbox's own devpts instance mounted at `/dev/pts` (`newinstance`,
    /// `ptmxmode=0666`), where its commands' terminals come from.
    Devpts,
}

impl SetupStep {
    /// Every step, in declaration (wire) order.
    pub const ALL: [SetupStep; 33] = [
        SetupStep::Clone,
        SetupStep::PlaceFds,
        SetupStep::HoldSignals,
        SetupStep::PrepareWorkload,
        SetupStep::IdMaps,
        SetupStep::UserIds,
        SetupStep::DieWithZygote,
        SetupStep::ScratchRoot,
        SetupStep::RootDirectories,
        SetupStep::ProcAndTmp,
        SetupStep::Dev,
        SetupStep::Binds,
        SetupStep::PivotRoot,
        SetupStep::DetachOldRoot,
        SetupStep::ReadOnlyRoot,
        SetupStep::Hostname,
        SetupStep::Loopback,
        SetupStep::BoundingSet,
        SetupStep::DropCapabilities,
        SetupStep::NoNewPrivs,
        SetupStep::VerifyPrivileges,
        SetupStep::Handover,
        SetupStep::WorkingDirectory,
        SetupStep::Session,
        SetupStep::ResourceLimits,
        SetupStep::Network,
        SetupStep::StartWorkload,
        SetupStep::OpenFilesLimit,
        SetupStep::Seccomp,
        SetupStep::Exec,
        SetupStep::ForwardSignals,
        SetupStep::Undumpable,
        SetupStep::Devpts,
    ];

    /// The step's name as users see it, in errors and in the setup timeline, e.g.
    /// `"root directories"`.
    pub fn name(self) -> &'static str {
        match self {
            SetupStep::Clone => "clone",
            SetupStep::PlaceFds => "place fds",
            SetupStep::HoldSignals => "hold signals",
            SetupStep::PrepareWorkload => "prepare workload",
            SetupStep::IdMaps => "id maps",
            SetupStep::UserIds => "user ids",
            SetupStep::DieWithZygote => "die with zygote",
            SetupStep::ScratchRoot => "scratch root",
            SetupStep::RootDirectories => "root directories",
            SetupStep::ProcAndTmp => "proc and tmp",
            SetupStep::Dev => "dev",
            SetupStep::Binds => "binds",
            SetupStep::PivotRoot => "pivot root",
            SetupStep::DetachOldRoot => "detach old root",
            SetupStep::ReadOnlyRoot => "read-only root",
            SetupStep::Hostname => "hostname",
            SetupStep::Loopback => "loopback",
            SetupStep::BoundingSet => "bounding set",
            SetupStep::DropCapabilities => "drop capabilities",
            SetupStep::NoNewPrivs => "no_new_privs",
            SetupStep::VerifyPrivileges => "verify privileges",
            SetupStep::Handover => "handover",
            SetupStep::WorkingDirectory => "working directory",
            SetupStep::Session => "session",
            SetupStep::ResourceLimits => "resource limits",
            SetupStep::Network => "network",
            SetupStep::StartWorkload => "start workload",
            SetupStep::OpenFilesLimit => "open files limit",
            SetupStep::Seccomp => "seccomp",
            SetupStep::Exec => "execve",
            SetupStep::ForwardSignals => "forward signals",
            SetupStep::Undumpable => "undumpable",
            SetupStep::Devpts => "devpts",
        }
    }
}

impl fmt::Display for SetupStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong in a failed setup step.
///
/// Only a failed system call carries an errno; a failure that is no system call has a
/// kind of its own.
///
/// ```
/// use hatchery::protocol::SetupFailure;
/// let gone = SetupFailure::ZygoteGone;
/// assert_eq!(gone.errno(), None);
/// assert_eq!(gone.to_string(), "the zygote closed its end of the channel");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SetupFailure {
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A peer (the zygote on the channel, the workload on its exec pipe) sent something
    /// other than what the step waits for, or bytes that do not decode.
    #[error("expected {expected}, received {received}")]
    Protocol {
        /// What the step waits for.
        expected: String,
        /// What came instead.
        received: String,
    },
    /// The zygote's end of the channel is closed: it gave up on this sandbox, or died.
    #[error("the zygote closed its end of the channel")]
    ZygoteGone,
    /// A check of what the step did failed: the kernel says it is not done, e.g. `"a
    /// capability is left in the bounding set"`.
    #[error("verification failed: {0}")]
    Verification(String),
    /// The request cannot be run as it is (a check the daemon's validation makes first).
    #[error("the request cannot be run: {0}")]
    Request(String),
}

impl SetupFailure {
    /// The failed system call, if a system call failed.
    pub fn sys_error(&self) -> Option<&SysError> {
        match self {
            SetupFailure::Sys(error) => Some(error),
            _ => None,
        }
    }

    /// The errno of the failed system call, if a system call failed.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        self.sys_error().map(SysError::errno)
    }
}
