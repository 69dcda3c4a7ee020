//! The workload's seccomp filter, kept as data: `seccomp/default.json` (a default-allow
//! denylist, what every sandbox gets) and `seccomp/strict.json` (an allowlist whose
//! unknown and unlisted syscalls get `ENOSYS`), both embedded in the binary.
//!
//! Runs in two processes, and the files are cut along that line:
//! - the zygote reads, validates and compiles the policy once, at start-up, so that no
//!   spawn pays for it and a bad policy file stops the daemon before it serves anyone:
//!   `policy` reads the file ([`SeccompPolicy::default_policy`],
//!   [`SeccompPolicy::from_json`]), `bpf` compiles it into one classic BPF program
//!   ([`SeccompPolicy::compile`]), and `syscalls` holds the syscall numbers of each
//!   supported architecture that both of them look names up in;
//! - the sandbox installs what the zygote compiled (`install`,
//!   [`CompiledSeccomp::apply`]): the workload as its last step before `execve`, so that
//!   the filter need allow nothing of the setup, or, for hatchery's own policies, a
//!   warm-pool sandbox's init before it has a request
//!   ([`CompiledSeccomp::fits_pooled_init`]). Nothing is parsed or compiled there.
//!
//! The file format, and the reason for every blocked group, are in `seccomp/README.md`.
//! In short: a `default_action` (`"allow"` unless the file says otherwise) for every
//! syscall no rule names, and rules that name syscalls, an action (`"allow"`,
//! `{"errno": "EPERM"}` or `"kill_process"`) and optional argument conditions.
//!
//! Compiled shape: one program, an ABI guard against foreign architectures and x32
//! numbers, then a binary search over the syscall numbers, then the blocks that check
//! the arguments of the syscalls that conditional rules name (see `bpf`).

mod bpf;
#[cfg(test)]
mod emulator;
mod install;
mod policy;
mod syscalls;

pub use install::{CompiledPolicies, CompiledSeccomp};
pub use policy::{SeccompPolicy, DEFAULT_POLICY, STRICT_POLICY};
pub use syscalls::syscall_number;

use policy::POLICY_VERSION;

/// Why a policy could not be read or compiled.
///
/// ```
/// use hatchery::seccomp::{SeccompError, SeccompPolicy};
/// let text = r#"{"version": 1, "rules": [{"syscalls": ["foo"], "action": {"errno": "EPERM"}}]}"#;
/// let err = SeccompPolicy::from_json(text).unwrap_err();
/// assert!(matches!(err, SeccompError::UnknownSyscall { .. }));
/// assert_eq!(err.to_string(), "unknown syscall name \"foo\" in rules[0]");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The text is not JSON of the policy's shape (this includes unknown fields).
    #[error("invalid seccomp policy json")]
    Json(#[source] serde_json::Error),
    /// The file's `version` is not one this build reads.
    #[error("unsupported seccomp policy version {0}, expected {POLICY_VERSION}")]
    Version(u32),
    /// A rule names a syscall that no supported architecture has.
    #[error("unknown syscall name {name:?} in rules[{rule}]")]
    UnknownSyscall {
        /// Index of the rule in the file's `rules` array.
        rule: usize,
        /// The name as written.
        name: String,
    },
    /// A rule's action names an errno this module does not know.
    #[error("unknown errno name {name:?} in rules[{rule}]")]
    UnknownErrno {
        /// Index of the rule in the file's `rules` array.
        rule: usize,
        /// The name as written.
        name: String,
    },
    /// A syscall appears in two rules (or twice in one), which would make its verdict
    /// depend on the order of the programs.
    #[error("syscall {name:?} in rules[{rule}] already appears in rules[{first}]")]
    DuplicateSyscall {
        /// Index of the rule that repeats it.
        rule: usize,
        /// Index of the rule that named it first.
        first: usize,
        /// The syscall's name.
        name: String,
    },
    /// A rule has the right shape but cannot work as written: no syscalls, a condition
    /// that can never match, a value wider than its width, and the like.
    #[error("invalid rules[{rule}]: {problem}")]
    InvalidRule {
        /// Index of the rule in the file's `rules` array.
        rule: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// `default_action` names an errno this module does not know.
    #[error("unknown errno name {0:?} in default_action")]
    UnknownDefaultErrno(String),
    /// A `--seccomp-policy` name that is neither a built-in policy nor a file path.
    #[error("unknown built-in seccomp policy {0:?}, expected default or strict")]
    UnknownBuiltin(String),
    /// hatchery compiles filters for x86_64 and aarch64 only.
    #[error("unsupported architecture {0} for seccomp filters")]
    UnsupportedArchitecture(&'static str),
    /// seccompiler refused to build a program.
    #[error("seccompiler backend error")]
    Backend(#[source] seccompiler::BackendError),
    /// A compiled program is longer than the kernel accepts.
    #[error("seccomp program of {0} instructions exceeds the kernel's limit of 4096")]
    TooLarge(usize),
}
