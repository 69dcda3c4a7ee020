//! `OsBytes`: paths, arguments and environment entries as raw bytes on the wire, so
//! that names which are not UTF-8 survive the trip.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte string as Unix uses for paths, arguments and environment entries.
///
/// Encoded as a postcard byte array (a varint length, then the bytes). Shown lossily as
/// UTF-8 in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct OsBytes(pub Vec<u8>);

impl OsBytes {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as an `OsStr`.
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// The bytes as a `Path`.
    pub fn as_path(&self) -> &Path {
        Path::new(self.as_os_str())
    }
}

impl From<&OsStr> for OsBytes {
    fn from(s: &OsStr) -> Self {
        OsBytes(s.as_bytes().to_vec())
    }
}

impl From<OsString> for OsBytes {
    fn from(s: OsString) -> Self {
        OsBytes(s.into_vec())
    }
}

impl From<&str> for OsBytes {
    fn from(s: &str) -> Self {
        OsBytes(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for OsBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl fmt::Display for OsBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for OsBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for OsBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = OsBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<OsBytes, E> {
                Ok(OsBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<OsBytes, E> {
                Ok(OsBytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OsBytes, E> {
                Ok(OsBytes(v.as_bytes().to_vec()))
            }
            /// Text formats (JSON) write a byte string as an array of numbers.
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OsBytes, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(OsBytes(bytes))
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}
