//! One message per `SOCK_SEQPACKET` datagram: postcard bytes plus `SCM_RIGHTS` fds.

use std::os::fd::{BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::sys::{self, SysError};

/// The largest message either side sends or accepts, in bytes.
pub const MAX_MESSAGE_LEN: usize = 128 * 1024;

/// A message that could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket call failed.
    #[error("socket i/o failed")]
    Io(#[source] SysError),
    /// The bytes are not a valid message.
    #[error("malformed message")]
    Malformed(#[source] postcard::Error),
    /// A valid message was followed by extra bytes.
    #[error("malformed message: {0} trailing bytes")]
    TrailingBytes(usize),
    /// The message is longer than [`MAX_MESSAGE_LEN`].
    #[error("message longer than {MAX_MESSAGE_LEN} bytes")]
    TooLarge,
    /// More fds came with the message than the protocol allows.
    #[error("message carried more than {} fds", sys::MAX_FDS_PER_MESSAGE)]
    TooManyFds,
}

/// A reusable receive buffer, one byte longer than [`MAX_MESSAGE_LEN`] so that an
/// oversized datagram shows as truncated.
pub struct RecvBuffer(Box<[u8]>);

impl RecvBuffer {
    /// Allocates a buffer for the largest message.
    pub fn new() -> Self {
        RecvBuffer(vec![0u8; MAX_MESSAGE_LEN + 1].into_boxed_slice())
    }
}

impl Default for RecvBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// Encodes a message, refusing one longer than [`MAX_MESSAGE_LEN`].
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, ProtocolError> {
    let bytes = postcard::to_stdvec(message).map_err(ProtocolError::Malformed)?;
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(ProtocolError::TooLarge);
    }
    Ok(bytes)
}

/// Decodes exactly one message: trailing bytes are an error (postcard's `from_bytes`
/// would ignore them).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    let (message, rest) = postcard::take_from_bytes(bytes).map_err(ProtocolError::Malformed)?;
    if !rest.is_empty() {
        return Err(ProtocolError::TrailingBytes(rest.len()));
    }
    Ok(message)
}

/// Sends one message with `fds` attached.
pub fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    message: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ProtocolError> {
    let bytes = encode(message)?;
    sys::send_with_fds(sock, &bytes, fds).map_err(ProtocolError::Io)
}

/// Receives one message and the fds that came with it; `None` at end of stream.
///
/// A truncated datagram or control message is an error, and the fds that did arrive are
/// closed rather than leaked.
pub fn recv<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
    buf: &mut RecvBuffer,
    nonblocking: bool,
) -> Result<Option<(T, Vec<OwnedFd>)>, ProtocolError> {
    let buf = &mut buf.0;
    let received = sys::recv_with_fds(sock, buf, nonblocking).map_err(ProtocolError::Io)?;
    if received.truncated || received.len > MAX_MESSAGE_LEN {
        return Err(ProtocolError::TooLarge);
    }
    if received.fds_truncated {
        return Err(ProtocolError::TooManyFds);
    }
    if received.len == 0 && received.fds.is_empty() {
        return Ok(None);
    }
    let message = decode(&buf[..received.len])?;
    Ok(Some((message, received.fds)))
}
