//! [`Preloaded`]: bulk data a zygote loads once and every child reads for free.
//!
//! Runs in the zygote (building) and in every child (reading). The bytes live in a
//! sealed memfd (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) mapped
//! shared and read-only. Two properties follow:
//! - **fork cost flat in the size**: `fork`/`clone` copies the page tables of anonymous
//!   memory (1 GiB of touched heap makes each fork cost tens of milliseconds), but not of
//!   shared file mappings, which are simply faulted in again where read;
//! - **children cannot change what later children see**: the mapping is read-only, the
//!   seals make the kernel refuse to make it writable (`mprotect` gives `EACCES`), to
//!   write the file, or to remove the seals; and the memfd itself is closed, so no child
//!   inherits an fd to it.

use std::ffi::CString;
use std::ops::Deref;
use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};

use crate::sys::{self, Context, SharedMapping, SysError};

/// Read-only bytes shared by a zygote and all its children, whatever their size, at no
/// cost per fork. Dereferences to `[u8]`.
///
/// ```
/// use hatchery::Preloaded;
/// let table = Preloaded::build("squares", 8 * 1000, |bytes| {
///     for (i, slot) in bytes.chunks_exact_mut(8).enumerate() {
///         slot.copy_from_slice(&((i * i) as u64).to_le_bytes());
///     }
/// })?;
/// let at = |i: usize| u64::from_le_bytes(table[8 * i..8 * i + 8].try_into().unwrap());
/// assert_eq!(at(12), 144);
/// # Ok::<(), hatchery::SysError>(())
/// ```
#[derive(Debug)]
pub struct Preloaded {
    /// `None` for zero bytes (there is nothing to map).
    mapping: Option<SharedMapping>,
}

impl Preloaded {
    /// Creates `len` zeroed bytes, lets `fill` write them, then seals and maps them
    /// read-only. `name` shows in `/proc/PID/maps` as `/memfd:NAME`.
    pub fn build(
        name: &str,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Preloaded, SysError> {
        let cname = CString::new(name)
            .map_err(|_| SysError::new("memfd name", nix::errno::Errno::EINVAL))?;
        let memfd = sys::memfd_create(&cname, libc::MFD_ALLOW_SEALING)?;
        nix::unistd::ftruncate(&memfd, len as libc::off_t).op("ftruncate")?;
        if len > 0 {
            let mut writable = SharedMapping::map(memfd.as_fd(), len, true)?;
            if let Some(bytes) = writable.bytes_mut() {
                fill(bytes);
            }
            // F_SEAL_WRITE is refused while a writable shared mapping exists.
        } else {
            fill(&mut []);
        }
        let seals = SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_SEAL;
        fcntl(&memfd, FcntlArg::F_ADD_SEALS(seals)).op("fcntl(F_ADD_SEALS)")?;
        let mapping = if len > 0 {
            Some(SharedMapping::map(memfd.as_fd(), len, false)?)
        } else {
            None
        };
        // The mapping keeps the file alive; no process, zygote or child, holds an fd.
        drop(memfd);
        Ok(Preloaded { mapping })
    }

    /// A sealed, read-only copy of `bytes`.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Preloaded, SysError> {
        Preloaded::build(name, bytes.len(), |to| to.copy_from_slice(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.mapping.as_ref().map_or(&[], SharedMapping::bytes)
    }
}

impl Deref for Preloaded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Preloaded {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_filled() {
        let data = Preloaded::build("test", 10_000, |b| b.fill(7)).expect("build");
        assert_eq!(data.len(), 10_000);
        assert!(data.iter().all(|&b| b == 7));
        let empty = Preloaded::from_bytes("empty", &[]).expect("build");
        assert!(empty.is_empty());
    }

    #[test]
    fn cannot_be_made_writable() {
        let data = Preloaded::from_bytes("test", b"original").expect("build");
        let refused = sys::mprotect_read_write(&data).expect_err("mprotect must be refused");
        assert_eq!(refused.errno(), nix::errno::Errno::EACCES);
        assert_eq!(&data[..], b"original");
    }

    #[test]
    fn is_not_writable_through_proc_self_mem() {
        use std::io::{Seek, SeekFrom, Write};
        let data = Preloaded::from_bytes("test", b"original").expect("build");
        let mut mem = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/mem")
            .expect("open /proc/self/mem");
        mem.seek(SeekFrom::Start(data.as_ptr() as u64))
            .expect("seek");
        assert!(mem.write_all(b"changed!").is_err());
        assert_eq!(&data[..], b"original");
    }
}
