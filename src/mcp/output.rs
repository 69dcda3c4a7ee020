//! A sandbox's output as a tool result carries it: each stream read to its end, at most
//! a bound of it kept (the head and the tail, half each, the cut said), as UTF-8 text or,
//! when it is not text, as base64. Runs in the `hatchery mcp` process.

use std::io::Read;

use serde_json::{json, Map, Value};

/// What was kept of one stream: its first bytes, its last bytes, and how many there were.
#[derive(Clone)]
pub struct Captured {
    head: Vec<u8>,
    /// The last bytes, as a ring: `tail_start` is the oldest.
    tail: Vec<u8>,
    tail_start: usize,
    /// Bytes read in all.
    total: u64,
    bound: usize,
}

impl Captured {
    /// An empty capture keeping at most `bound` bytes: `bound / 2` of the head, the rest
    /// of the tail.
    pub fn new(bound: usize) -> Captured {
        Captured {
            head: Vec::new(),
            tail: Vec::new(),
            tail_start: 0,
            total: 0,
            bound,
        }
    }

    /// Reads `stream` to its end, keeping what the bound allows (the rest is drained, so
    /// the writer never blocks on a full pipe).
    pub fn read_all(mut self, mut stream: impl Read) -> Captured {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return self,
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading a sandbox's output");
                    return self;
                }
            }
        }
    }

    /// Adds `bytes` read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let head_room = (self.bound / 2).saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(head_room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        let tail_bound = self.bound - self.bound / 2;
        for &byte in rest {
            if self.tail.len() < tail_bound {
                self.tail.push(byte);
            } else if tail_bound > 0 {
                self.tail[self.tail_start] = byte;
                self.tail_start = (self.tail_start + 1) % tail_bound;
            }
        }
    }

    /// Bytes left out between the head and the tail.
    fn omitted(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// The tail, oldest byte first.
    fn tail(&self) -> Vec<u8> {
        let mut tail = self.tail[self.tail_start..].to_vec();
        tail.extend_from_slice(&self.tail[..self.tail_start]);
        tail
    }

    /// The fields of a tool result for the stream `name` (`stdout`, `stderr`): the text
    /// (`NAME`), its encoding (`NAME_encoding`: `utf-8` or `base64`), whether it was cut
    /// (`NAME_truncated`) and its whole length (`NAME_bytes`). Text that was cut has a
    /// line in the middle saying how many bytes were left out there; base64 is of the
    /// head and the tail joined, the cut said by the flag and the length alone.
    pub fn into_fields(self, name: &str, fields: &mut Map<String, Value>) {
        let omitted = self.omitted();
        let tail = self.tail();
        let mut whole = self.head.clone();
        whole.extend_from_slice(&tail);
        let (head_text, tail_text) = (utf8_head(&self.head), utf8_tail(&tail));
        let (text, encoding) = match (head_text, tail_text) {
            _ if omitted == 0 => match String::from_utf8(whole) {
                Ok(text) => (text, "utf-8"),
                Err(e) => (base64(e.as_bytes()), "base64"),
            },
            (Some(head_text), Some(tail_text)) => {
                // Bytes of a character cut at the bound are left out too.
                let left_out = omitted
                    + (self.head.len() - head_text.len()) as u64
                    + (tail.len() - tail_text.len()) as u64;
                (
                    format!(
                        "{head_text}\n[... {left_out} bytes of {name} left out: {} in all; \
                         the first and last {} are kept ...]\n{tail_text}",
                        self.total,
                        kept(self.bound / 2)
                    ),
                    "utf-8",
                )
            }
            _ => (base64(&whole), "base64"),
        };
        fields.insert(name.into(), json!(text));
        fields.insert(format!("{name}_encoding"), json!(encoding));
        fields.insert(format!("{name}_truncated"), json!(omitted > 0));
        fields.insert(format!("{name}_bytes"), json!(self.total));
    }
}

/// `bytes` as a size in its largest whole unit: `32 KiB`, `4 bytes`.
fn kept(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// `bytes` as text, if they are UTF-8 but for a character cut at their end (dropped).
fn utf8_head(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

/// `bytes` as text, if they are UTF-8 but for a character cut at their start (dropped).
fn utf8_tail(bytes: &[u8]) -> Option<&str> {
    // A character's continuation bytes are 0b10xx_xxxx; at most three start a cut one.
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|&&b| b & 0xc0 == 0x80)
        .count();
    std::str::from_utf8(&bytes[skip..]).ok()
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = (u32::from(group[0]) << 16)
            | (u32::from(*group.get(1).unwrap_or(&0)) << 8)
            | u32::from(*group.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                text.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Decodes standard base64 with padding (whitespace ignored); `None` if it is not that.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 4 != 0 {
        return None;
    }
    let value = |b: u8| match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut bytes = Vec::with_capacity(digits.len() / 4 * 3);
    let groups = digits.len() / 4;
    for (at, group) in digits.chunks(4).enumerate() {
        let padding = group.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && at + 1 != groups) {
            return None;
        }
        let mut n = 0u32;
        for &b in &group[..4 - padding] {
            n = (n << 6) | value(b)?;
        }
        n <<= 6 * padding as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        bytes.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(captured: Captured) -> Map<String, Value> {
        let mut fields = Map::new();
        captured.into_fields("stdout", &mut fields);
        fields
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(unbase64(encoded).as_deref(), Some(plain.as_bytes()));
        }
        let binary: Vec<u8> = (0..=255).collect();
        assert_eq!(unbase64(&base64(&binary)), Some(binary));
        for bad in ["Zg=", "Z===", "Zg==Zm8=", "Zm9v!A==", "@@@@"] {
            assert_eq!(unbase64(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_text_is_kept_whole() {
        let mut captured = Captured::new(16);
        captured.push(b"hello\n");
        let fields = fields(captured);
        assert_eq!(fields["stdout"], "hello\n");
        assert_eq!(fields["stdout_encoding"], "utf-8");
        assert_eq!(fields["stdout_truncated"], false);
        assert_eq!(fields["stdout_bytes"], 6);
    }

    #[test]
    fn long_text_keeps_head_and_tail_and_says_the_cut() {
        let mut captured = Captured::new(8);
        for chunk in [&b"0123"[..], b"456789", b"abcdef"] {
            captured.push(chunk);
        }
        let fields = fields(captured);
        let text = fields["stdout"].as_str().unwrap();
        assert!(
            text.starts_with("0123\n[... 8 bytes of stdout left out: 16 in all"),
            "{text}"
        );
        assert!(text.ends_with("...]\ncdef"), "{text}");
        assert_eq!(fields["stdout_truncated"], true);
        assert_eq!(fields["stdout_bytes"], 16);
    }

    #[test]
    fn a_character_cut_at_the_bound_is_dropped_not_garbled() {
        // "é" is two bytes: the head's bound of 3 falls inside the second one.
        let mut captured = Captured::new(6);
        captured.push("aéé-----zé".as_bytes());
        let fields = fields(captured);
        assert_eq!(fields["stdout_encoding"], "utf-8");
        let text = fields["stdout"].as_str().unwrap();
        assert!(text.starts_with("aé\n[..."), "{text}");
        assert!(text.ends_with("]\nzé"), "{text}");
    }

    #[test]
    fn binary_output_is_base64() {
        let mut captured = Captured::new(64);
        captured.push(&[0xff, 0x00, 0xfe]);
        let fields = fields(captured);
        assert_eq!(fields["stdout"], "/wD+");
        assert_eq!(fields["stdout_encoding"], "base64");
    }
}
