//! Bounds on what an event echoes from a request. An `Error` quotes the request back (a
//! path in a failed system call, an entry's name, what a verification found), and a
//! request may hold up to [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN) bytes: unbounded,
//! an echo could make the answer larger than any message may be, and the request would
//! go unanswered. Every echoed text is shortened here to [`MAX_ECHO`] bytes by cutting
//! its middle (paths keep their start and their end, which say the most), and the
//! message to [`MAX_MESSAGE`] bytes. Used by the zygote just before it sends an error.

use super::{ErrorKind, SetupFailure};
use crate::sys::SysError;

/// The longest echoed text (a path, a name) an error carries, in bytes, before the
/// ellipsis that marks a cut.
pub const MAX_ECHO: usize = 512;

/// The longest error message, in bytes, before the ellipsis that marks a cut.
pub const MAX_MESSAGE: usize = 1024;

/// The mark of a cut (`…`, three bytes of UTF-8).
const ELLIPSIS: char = '…';

/// `text`, or, if longer than `max` bytes, its first and last parts (about half of `max`
/// each, cut at character boundaries) joined by an ellipsis.
///
/// ```
/// use hatchery::protocol::echo::shorten_middle;
/// assert_eq!(shorten_middle("/short/path", 64), "/short/path");
/// let long = format!("/srv/{}/file", "x".repeat(100));
/// let short = shorten_middle(&long, 20);
/// assert_eq!(short, "/srv/xxxxx…xxxxx/file"); // ten bytes from each end
/// ```
pub fn shorten_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (max - head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{ELLIPSIS}{}", &text[..head], &text[tail..])
}

/// `message`, or, if longer than [`MAX_MESSAGE`] bytes, its start and an ellipsis.
pub fn shorten_message(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push(ELLIPSIS);
    }
    message
}

fn bounded_sys(error: SysError) -> SysError {
    SysError {
        op: shorten_middle(&error.op, MAX_ECHO),
        path: error.path.map(|path| shorten_middle(&path, MAX_ECHO)),
        errno: error.errno,
    }
}

fn bounded_failure(failure: SetupFailure) -> SetupFailure {
    let short = |text: String| shorten_middle(&text, MAX_ECHO);
    match failure {
        SetupFailure::Sys(error) => SetupFailure::Sys(bounded_sys(error)),
        SetupFailure::Protocol { expected, received } => SetupFailure::Protocol {
            expected: short(expected),
            received: short(received),
        },
        SetupFailure::ZygoteGone => SetupFailure::ZygoteGone,
        SetupFailure::Verification(what) => SetupFailure::Verification(short(what)),
        SetupFailure::Request(what) => SetupFailure::Request(short(what)),
    }
}

impl ErrorKind {
    /// The kind with every text it echoes at most [`MAX_ECHO`] bytes (see the module).
    pub fn bounded(self) -> ErrorKind {
        let short = |text: String| shorten_middle(&text, MAX_ECHO);
        match self {
            ErrorKind::Setup { step, error } => ErrorKind::Setup {
                step,
                error: bounded_failure(error),
            },
            ErrorKind::Internal { error } => ErrorKind::Internal {
                error: error.map(bounded_sys),
            },
            ErrorKind::UnknownEntry { name } => ErrorKind::UnknownEntry { name: short(name) },
            ErrorKind::BadEntryArgs { name } => ErrorKind::BadEntryArgs { name: short(name) },
            ErrorKind::UnknownSandbox { name } => ErrorKind::UnknownSandbox { name: short(name) },
            // The others echo nothing unbounded: numbers, or a list of the nine limits.
            kind @ (ErrorKind::Protocol
            | ErrorKind::VersionMismatch { .. }
            | ErrorKind::PermissionDenied
            | ErrorKind::InvalidRequest
            | ErrorKind::Busy
            | ErrorKind::NotFound
            | ErrorKind::CannotExecute { .. }
            | ErrorKind::UnknownId
            | ErrorKind::ShuttingDown
            | ErrorKind::UnenforceableLimits { .. }
            | ErrorKind::NetworkUnavailable
            | ErrorKind::AddressPoolExhausted) => kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, one_of_each_error_kind, Event, SetupStep};

    #[test]
    fn short_texts_are_kept_and_long_ones_keep_both_ends() {
        assert_eq!(shorten_middle("", 8), "");
        assert_eq!(shorten_middle("12345678", 8), "12345678");
        assert_eq!(shorten_middle("123456789", 8), "1234…6789");
        // Multi-byte characters are never split.
        let text = "é".repeat(20);
        let short = shorten_middle(&text, 9);
        assert!(short.starts_with("éé") && short.ends_with("éé"), "{short}");
        assert!(short.len() <= 9 + ELLIPSIS.len_utf8(), "{short}");
    }

    #[test]
    fn long_messages_are_cut_at_their_end() {
        let message = shorten_message("x".repeat(5000));
        assert_eq!(message.len(), MAX_MESSAGE + ELLIPSIS.len_utf8());
        assert!(message.ends_with(ELLIPSIS));
        assert_eq!(shorten_message("short".into()), "short");
    }

    /// Whatever a kind echoes and however long, the error fits a message with room to
    /// spare, and a kind that echoes nothing long is unchanged.
    #[test]
    fn every_kind_fits_a_message_whatever_it_echoes() {
        let huge = "/".repeat(super::super::MAX_MESSAGE_LEN);
        let sys = || SysError {
            op: huge.clone(),
            path: Some(huge.clone()),
            errno: 2,
        };
        let mut kinds = vec![
            ErrorKind::Setup {
                step: SetupStep::WorkingDirectory,
                error: SetupFailure::Sys(sys()),
            },
            ErrorKind::Setup {
                step: SetupStep::IdMaps,
                error: SetupFailure::Protocol {
                    expected: huge.clone(),
                    received: huge.clone(),
                },
            },
            ErrorKind::Setup {
                step: SetupStep::VerifyPrivileges,
                error: SetupFailure::Verification(huge.clone()),
            },
            ErrorKind::Setup {
                step: SetupStep::PrepareWorkload,
                error: SetupFailure::Request(huge.clone()),
            },
            ErrorKind::Internal { error: Some(sys()) },
            ErrorKind::UnknownEntry { name: huge.clone() },
            ErrorKind::BadEntryArgs { name: huge.clone() },
            ErrorKind::UnknownSandbox { name: huge.clone() },
        ];
        kinds.extend(one_of_each_error_kind());
        for kind in kinds {
            let event = Event::Error {
                id: Some(u64::MAX),
                kind: kind.clone().bounded(),
                message: shorten_message(huge.clone()),
            };
            let bytes = encode(&event).expect("a bounded error encodes");
            assert!(bytes.len() < 4 * 1024, "{} bytes for {kind:?}", bytes.len());
        }
        for kind in one_of_each_error_kind() {
            assert_eq!(
                kind.clone().bounded(),
                kind,
                "a short echo is kept as it is"
            );
        }
    }
}
