//! Types shared by the test zygote (`tests/zygote/main.rs`) and `tests/entries.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The bytes the test zygote preloads into its [`hatchery::Preloaded`] region.
pub const PRELOADED_TEXT: &[u8] = b"preloaded by the zygote, never to change";

/// The "random" seed the test zygote starts with; its `after_fork` hook re-seeds each
/// child from `/dev/urandom`.
pub const ZYGOTE_SEED: u64 = 12345;

/// The value the test zygote preloads into ordinary (heap) memory.
pub const HEAP_VALUE: u64 = 42;

/// What an entry sees from the inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inside {
    /// The preloaded region's bytes.
    pub preloaded: Vec<u8>,
    /// The preloaded heap value.
    pub heap_value: u64,
    /// `/proc/self/status` facts: the capability sets, NoNewPrivs, Seccomp.
    pub status: BTreeMap<String, String>,
    /// `/proc/self/ns/*` link targets.
    pub namespaces: BTreeMap<String, String>,
    /// The pid in its own pid namespace.
    pub pid: u32,
    /// The uid it runs as.
    pub uid: u32,
    /// The hostname.
    pub hostname: String,
    /// Its open fds (the one listing them left out).
    pub fds: Vec<i32>,
    /// Its environment.
    pub env: Vec<(String, String)>,
}

/// What came of each attempt to change the preloaded region from a child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tampering {
    /// `process_vm_writev` into it (the kernel's user copy, as a store would do).
    pub process_vm_writev: Result<(), String>,
    /// A write through `/proc/self/mem` (which can force writes past page protections).
    pub proc_self_mem: Result<(), String>,
    /// `mprotect` to read-write.
    pub mprotect: Result<(), String>,
    /// Opening the memfd again through `/proc/self/map_files` for writing.
    pub map_files: Result<(), String>,
    /// The heap value after the child overwrote its own copy.
    pub heap_value_after: u64,
    /// The region's bytes after all of it.
    pub preloaded_after: Vec<u8>,
}

/// The arguments of the `lookup` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupArgs {
    /// Index into the preloaded region.
    pub index: u32,
}

/// The error of the `lookup` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LookupError {
    /// The index is past the end.
    OutOfRange { index: u32, len: u32 },
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::OutOfRange { index, len } => {
                write!(f, "index {index} is out of range (length {len})")
            }
        }
    }
}
