//! What an entry's child writes on its result pipe: exactly one postcard-encoded
//! [`EntryResult`], then end of file. The child is untrusted, so the reader bounds the
//! bytes it reads and decodes them strictly (see `Client::call`).

use serde::{Deserialize, Serialize};

/// The most result bytes `Client::call` reads unless told otherwise: 16 MiB.
pub const DEFAULT_RESULT_LIMIT: usize = 16 << 20;

/// How an entry ended, as its child reports it on the result pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryResult {
    /// The entry returned `Ok`: its value, postcard-encoded.
    Returned(Vec<u8>),
    /// The entry returned `Err`: the error's `Display` text and its postcard encoding.
    Failed {
        /// The error as text.
        message: String,
        /// The error, postcard-encoded.
        error: Vec<u8>,
    },
    /// The entry panicked (and the panic unwound): the panic's message.
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
    },
}
