//! Resource limits, from the flag a person types to the cgroup file the kernel enforces.
//!
//! What runs where:
//! - [`parse`]: the CLI (and the daemon's flags) read `256M`, `10s`, `0.5` into the
//!   wire's [`Limits`](crate::protocol::Limits). Pure logic.
//! - `flags`: those values as command-line flags (`run --memory`, `serve
//!   --default-memory`, `serve --max-memory`). Runs in the CLI.
//! - [`policy`]: the daemon's defaults and ceilings, checked once at start-up; the zygote
//!   resolves each request's limits against them. Pure logic.
//! - `enforce`: the zygote's side of a running sandbox's limits: the cgroup made for it
//!   before the clone, the watchdog for wall time, CPU time and OOM kills, and the
//!   removal of the cgroup after the reap. Runs in the zygote's loop only.
//! - `cgroup`: cgroup v1/v2 discovery at the zygote's start, one cgroup per sandbox,
//!   its usage, its removal. Runs in the zygote only.
//!
//! Nothing here runs inside a sandbox: the sandbox is cloned into its cgroup
//! (`CLONE_INTO_CGROUP`, or moved by the zygote right after the clone), and the limits
//! that are rlimits (open files, file size) or mount options (`/tmp` size) are applied by
//! the sandbox's own setup. The wire types (`Limits`, `Limit`, `EndReason`) live in
//! [`protocol`](crate::protocol), and the rules a request's values must follow in
//! [`protocol::validate`](crate::protocol::validate).

// The zygote's side and the command-line flags come with the `daemon` feature; the
// parsers and the policy's rules are the client's too.
#[cfg(feature = "daemon")]
pub mod cgroup;
#[cfg(feature = "daemon")]
mod enforce;
#[cfg(feature = "daemon")]
pub mod flags;
pub mod parse;
pub mod policy;

#[cfg(feature = "daemon")]
pub(crate) use enforce::{Enforcement, Enforcer, Refusal, CGROUP_LIMITS};
#[cfg(feature = "daemon")]
pub use flags::{DefaultPrefix, FlagPrefix, LimitFlags, MaxPrefix, NoPrefix};
pub use parse::{
    format_duration_ms, format_limit, parse_count, parse_cpus, parse_duration_ms, parse_limit,
    parse_limit_or_unlimited, parse_size, ParseError,
};
pub use policy::{BadPolicy, LimitPolicy, NotAllowed, SAFE_DEFAULTS};
