//! [`Client::call`]: run a zygote's entry in a fresh sandbox and get its typed result.
//!
//! Runs in the client. The child is untrusted: its result pipe is read up to a bound,
//! the bytes are decoded strictly (one [`EntryResult`], nothing after it, then the value
//! as `R`, nothing after it), and everything it could get wrong is a [`CallError`],
//! never a panic. What it printed is captured (up to [`OUTPUT_LIMIT`] per stream) and
//! comes with the error when the entry fails.

use std::fs::File;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::streams::collect;
use crate::client::{ClientError, SpawnError};
use crate::protocol::{
    self, EntryResult, ExitStatus, ProtocolError, SandboxConfig, SpawnRequest, Verdict,
    DEFAULT_RESULT_LIMIT,
};
use crate::sys::SysError;
use crate::Client;

/// The most bytes of stdout, and of stderr, a call keeps; the rest is read and dropped.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// What a called entry printed, and how its sandbox ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallOutput {
    /// Its stdout (at most [`OUTPUT_LIMIT`] bytes).
    pub stdout: Vec<u8>,
    /// Its stderr (at most [`OUTPUT_LIMIT`] bytes).
    pub stderr: Vec<u8>,
    /// The sandbox's verdict.
    pub verdict: Option<Verdict>,
}

impl CallOutput {
    /// Stderr as text, for messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why [`Client::call`] produced no value.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The arguments cannot be encoded.
    #[error("the arguments cannot be encoded")]
    EncodeArgs(#[source] postcard::Error),
    /// The sandbox could not be started: unknown entry, bad arguments, a failed setup
    /// step, a busy daemon ([`SpawnError`] says which).
    #[error("the entry could not be started")]
    Spawn(#[source] SpawnError),
    /// The entry returned an error: its text and its postcard encoding.
    #[error("the entry failed: {message}")]
    Failed {
        /// The error's text.
        message: String,
        /// The error, postcard-encoded (see [`CallError::entry_error`]).
        error: Vec<u8>,
        /// What it printed.
        output: Box<CallOutput>,
    },
    /// The entry panicked.
    #[error("the entry panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
        /// What it printed (the panic message is on stderr).
        output: Box<CallOutput>,
    },
    /// The entry's process exited with this code before writing a result.
    #[error("the entry exited with code {code} without a result")]
    Exited {
        /// Its exit code.
        code: i32,
        /// What it printed.
        output: Box<CallOutput>,
    },
    /// The entry's process was killed by this signal before writing a result (by a
    /// limit, a kill of the client's, or its own doing: the verdict's reason says).
    #[error("the entry was killed by signal {signal} without a result")]
    Killed {
        /// The signal.
        signal: i32,
        /// What it printed.
        output: Box<CallOutput>,
    },
    /// The result is not one well-formed [`EntryResult`] holding an `R`.
    #[error("the entry's result is malformed")]
    Malformed {
        /// What it printed.
        output: Box<CallOutput>,
        /// What is wrong with the bytes.
        #[source]
        source: ProtocolError,
    },
    /// The result is longer than the bound; the sandbox was killed.
    #[error("the entry's result is longer than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
        /// What it printed.
        output: Box<CallOutput>,
    },
    /// Reading the child's pipes failed.
    #[error("reading the entry's output failed")]
    Io(#[source] SysError),
    /// The connection to the daemon failed.
    #[error("connection to the daemon failed")]
    Connection(#[source] ClientError),
}

impl CallError {
    /// What the entry printed and how its sandbox ended, when it ran.
    pub fn output(&self) -> Option<&CallOutput> {
        match self {
            CallError::Failed { output, .. }
            | CallError::Panicked { output, .. }
            | CallError::Exited { output, .. }
            | CallError::Killed { output, .. }
            | CallError::Malformed { output, .. }
            | CallError::TooLarge { output, .. } => Some(output.as_ref()),
            _ => None,
        }
    }

    /// The entry's own error, decoded as `E` (strictly), when it returned one.
    pub fn entry_error<E: DeserializeOwned>(&self) -> Option<E> {
        match self {
            CallError::Failed { error, .. } => protocol::decode(error).ok(),
            _ => None,
        }
    }
}

impl Client {
    /// Runs the zygote's entry `entry` with `args` in a fresh sandbox and returns its
    /// result, read with the default bound of [`DEFAULT_RESULT_LIMIT`] (16 MiB).
    ///
    /// ```no_run
    /// use hatchery::{Client, SandboxConfig};
    /// let client = Client::connect("/run/my-zygote.sock")?;
    /// let value: u64 = client.call("lookup", &42u64, SandboxConfig::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<A, R>(&self, entry: &str, args: &A, sandbox: SandboxConfig) -> Result<R, CallError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with_limit(entry, args, sandbox, DEFAULT_RESULT_LIMIT)
    }

    /// [`Client::call`] with a bound of `limit` bytes on the encoded result.
    pub fn call_with_limit<A, R>(
        &self,
        entry: &str,
        args: &A,
        sandbox: SandboxConfig,
        limit: usize,
    ) -> Result<R, CallError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let request = SpawnRequest::entry(entry, args)
            .map_err(CallError::EncodeArgs)?
            .sandbox(sandbox);
        let mut child = self.spawn_child(request).map_err(CallError::Spawn)?;
        let streams = [
            child.result.take(),
            child
                .stdout
                .take()
                .map(|s| File::from(std::os::fd::OwnedFd::from(s))),
            child
                .stderr
                .take()
                .map(|s| File::from(std::os::fd::OwnedFd::from(s))),
        ];
        let collected =
            collect(streams, [limit, OUTPUT_LIMIT, OUTPUT_LIMIT]).map_err(CallError::Io);
        let too_large = collected.as_ref().map_or(true, |c| c.overflowed[0]);
        if too_large {
            // Past its bound (or unreadable) the child is of no further use.
            let _ = child.kill();
        }
        let verdict = child.wait().map_err(CallError::Connection)?;
        let [result, stdout, stderr] = collected?.bytes;
        let output = Box::new(CallOutput {
            stdout,
            stderr,
            verdict: Some(verdict.clone()),
        });
        if too_large {
            return Err(CallError::TooLarge { limit, output });
        }
        if result.is_empty() {
            return Err(match verdict.status {
                ExitStatus::Exited(code) => CallError::Exited { code, output },
                ExitStatus::Signaled(signal) => CallError::Killed { signal, output },
            });
        }
        let outcome: EntryResult = match protocol::decode(&result) {
            Ok(outcome) => outcome,
            Err(source) => return Err(CallError::Malformed { output, source }),
        };
        match outcome {
            EntryResult::Returned(bytes) => match protocol::decode(&bytes) {
                Ok(value) => Ok(value),
                Err(source) => Err(CallError::Malformed { output, source }),
            },
            EntryResult::Failed { message, error } => Err(CallError::Failed {
                message,
                error,
                output,
            }),
            EntryResult::Panicked { message } => Err(CallError::Panicked { message, output }),
        }
    }
}
