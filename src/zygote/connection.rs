//! One client connection: its handshake state, its live children, and an outbox so that
//! a client that does not read can never block the daemon.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use super::listener::Peer;
use crate::protocol::{self, ErrorKind, Event};
use crate::sys;

/// Messages a connection may have waiting before the daemon gives up on its client.
const MAX_QUEUED: usize = 4096;

/// The longest error message sent, in bytes: messages quote request fields, and an
/// event must stay well under the protocol's size limit whatever the request held.
const MAX_ERROR_MESSAGE: usize = 1024;

/// A message waiting to be sent, with its fds.
struct Outgoing {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// One client connection.
pub struct Connection {
    fd: OwnedFd,
    /// Who is on the other end (`None` for the embedded zygote's own client).
    pub peer: Option<Peer>,
    /// The handshake is done.
    pub greeted: bool,
    /// Live children by request id → sandbox pid.
    pub children: HashMap<u64, i32>,
    outbox: VecDeque<Outgoing>,
    /// Close once the outbox is flushed (after a fatal error message).
    pub closing: bool,
    /// The client is gone or misbehaved: drop the connection now.
    pub dead: bool,
    /// The peer is not allowed: its first message is answered with this refusal.
    pub refused: Option<String>,
}

impl Connection {
    /// Wraps an accepted (non-blocking) connection.
    pub fn new(fd: OwnedFd, peer: Option<Peer>) -> Connection {
        Connection {
            fd,
            peer,
            greeted: false,
            children: HashMap::new(),
            outbox: VecDeque::new(),
            closing: false,
            dead: false,
            refused: None,
        }
    }

    /// Queues `event` (with `fds`) and sends what the socket takes now.
    pub fn send(&mut self, event: &Event, fds: Vec<OwnedFd>) {
        if self.dead {
            return;
        }
        match protocol::encode(event) {
            Ok(bytes) => self.outbox.push_back(Outgoing { bytes, fds }),
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot encode an event");
                return;
            }
        }
        if self.outbox.len() > MAX_QUEUED {
            tracing::warn!(peer = ?self.peer, "client does not read its events; dropping it");
            self.dead = true;
            return;
        }
        self.flush();
    }

    /// Sends an error event.
    pub fn send_error(&mut self, id: Option<u64>, kind: ErrorKind, message: impl Into<String>) {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        self.send(&Event::Error { id, kind, message }, Vec::new());
    }

    /// Sends queued messages until the socket would block.
    pub fn flush(&mut self) {
        while let Some(next) = self.outbox.front() {
            let fds: Vec<BorrowedFd<'_>> = next.fds.iter().map(|fd| fd.as_fd()).collect();
            match sys::send_with_fds(self.fd.as_fd(), &next.bytes, &fds) {
                Ok(()) => {
                    // The fds were duplicated into the client; ours close here.
                    self.outbox.pop_front();
                }
                Err(e) if e.errno() == Errno::EAGAIN => return,
                Err(e) => {
                    tracing::debug!(error = %e, peer = ?self.peer, "client connection failed");
                    self.dead = true;
                    self.outbox.clear();
                    return;
                }
            }
        }
    }

    /// Whether messages are waiting for the socket to drain.
    pub fn wants_write(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Whether the connection should be dropped now.
    pub fn finished(&self) -> bool {
        self.dead || (self.closing && self.outbox.is_empty())
    }

    /// Reads and discards whatever the client sent that was not handled, so that closing
    /// does not reset the connection (a reset would discard our last error message on
    /// the client's side before it reads it).
    pub fn discard_unread(&self) {
        let mut byte = [0u8; 1];
        while let Ok(received) = sys::recv_with_fds(self.fd.as_fd(), &mut byte, true) {
            if received.len == 0 && received.fds.is_empty() {
                break;
            }
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
