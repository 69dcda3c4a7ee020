//! One client connection: its handshake state, its live children, and an outbox so that
//! a client that does not read can never block the daemon.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::listener::Peer;
use crate::protocol::{self, echo, ErrorKind, Event};
use crate::sys;

/// Messages a connection may have waiting before the daemon gives up on its client.
const MAX_QUEUED: usize = 4096;

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
    /// Live children (and persistent sandboxes it created) by request id → sandbox pid.
    pub children: HashMap<u64, i32>,
    /// Live commands in persistent sandboxes by request id → (sandbox pid, the
    /// command's number in it).
    pub commands: HashMap<u64, (i32, u64)>,
    outbox: VecDeque<Outgoing>,
    /// Close once the outbox is flushed (after a fatal error message).
    pub closing: bool,
    /// The client is gone or misbehaved: drop the connection now.
    pub dead: bool,
    /// The peer is not allowed: its first message is answered with this refusal.
    pub refused: Option<String>,
    /// When it was accepted: its `Hello` is due within [`HANDSHAKE_DEADLINE`].
    pub opened: Instant,
}

/// How long a client has to send its `Hello` before its connection is closed.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

impl Connection {
    /// Wraps an accepted (non-blocking) connection.
    pub fn new(fd: OwnedFd, peer: Option<Peer>) -> Connection {
        Connection {
            fd,
            peer,
            greeted: false,
            children: HashMap::new(),
            commands: HashMap::new(),
            outbox: VecDeque::new(),
            closing: false,
            dead: false,
            refused: None,
            opened: Instant::now(),
        }
    }

    /// Queues `event` (with `fds`) and sends what the socket takes now. An event that
    /// cannot be encoded (no event the daemon makes should be, see [`echo`]) is answered
    /// all the same: the request it answers gets a short `Internal` error instead, so
    /// that every request gets exactly one answer.
    pub fn send(&mut self, event: &Event, fds: Vec<OwnedFd>) {
        if self.dead {
            return;
        }
        match protocol::encode(event) {
            Ok(bytes) => self.outbox.push_back(Outgoing { bytes, fds }),
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot encode an event; answering with a short error");
                let id = match event {
                    Event::Spawned { id, .. }
                    | Event::Exited { id, .. }
                    | Event::Status { id, .. }
                    | Event::SandboxCreated { id, .. }
                    | Event::SandboxEnded { id, .. }
                    | Event::Sandboxes { id, .. } => Some(*id),
                    Event::Error { id, .. } => *id,
                    Event::Welcome { .. } => None,
                };
                let stand_in = Event::Error {
                    id,
                    kind: ErrorKind::Internal { error: None },
                    message: format!("the daemon's answer could not be encoded: {e}"),
                };
                match protocol::encode(&stand_in) {
                    Ok(bytes) => self.outbox.push_back(Outgoing { bytes, fds }),
                    // A few dozen bytes always encode; if not, the client is dropped
                    // rather than left waiting.
                    Err(_) => {
                        self.dead = true;
                        return;
                    }
                }
            }
        }
        if self.outbox.len() > MAX_QUEUED {
            tracing::warn!(peer = ?self.peer, "client does not read its events; dropping it");
            self.dead = true;
            return;
        }
        self.flush();
    }

    /// Sends an error event, with what it echoes of the request bounded (see [`echo`]).
    pub fn send_error(&mut self, id: Option<u64>, kind: ErrorKind, message: impl Into<String>) {
        let event = Event::Error {
            id,
            kind: kind.bounded(),
            message: echo::shorten_message(message.into()),
        };
        self.send(&event, Vec::new());
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

    /// When its handshake is due, if it has not completed it and is not closing already.
    pub fn handshake_due(&self) -> Option<Instant> {
        (!self.greeted && !self.closing && !self.dead).then(|| self.opened + HANDSHAKE_DEADLINE)
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
