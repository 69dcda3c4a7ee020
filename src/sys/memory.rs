//! Memory mappings: anonymous ones (a spawned child's stack, the code copy), shared file
//! mappings (a preloaded region), `mprotect`, and the copy of the daemon's own code into
//! huge pages.
//!
//! The code copy runs once in the zygote before it serves; the child stack is mapped by
//! the sandbox init for its workload; shared mappings are made in the zygote and read in
//! every process forked from it.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use super::{Context, SysError};

/// The stack of a [`spawn_sharing_memory`](super::spawn_sharing_memory) child, guard page included: its code only
/// makes system calls, so a few pages are plenty.
const SHARED_CHILD_STACK: usize = 64 * 1024;

/// A fresh private anonymous mapping of `len` bytes, readable and writable, with `flags`
/// added; `op` names it in the error.
fn map_anonymous(
    len: usize,
    flags: libc::c_int,
    op: &'static str,
) -> Result<*mut libc::c_void, SysError> {
    // SAFETY: a new mapping at an address the kernel picks; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(SysError::new(op, Errno::last()));
    }
    Ok(base)
}

/// A mapping used as a child's stack, unmapped on drop.
pub(super) struct ChildStack(*mut libc::c_void);

impl ChildStack {
    pub(super) fn map() -> Result<ChildStack, SysError> {
        let base = map_anonymous(SHARED_CHILD_STACK, libc::MAP_STACK, "mmap(child stack)")?;
        let stack = ChildStack(base);
        // The lowest page is a guard: an overflow faults rather than write below it.
        // SAFETY: the first page of the mapping made above.
        if unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) } == -1 {
            return Err(SysError::new("mprotect(child stack guard)", Errno::last()));
        }
        Ok(stack)
    }

    /// The initial stack pointer: the mapping's end, 16-byte aligned.
    pub(super) fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is in bounds for `add`.
        unsafe { (self.0 as *mut u8).add(SHARED_CHILD_STACK) as *mut libc::c_void }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer used: the child it served has
        // exec'd or exited (CLONE_VFORK), or was never started.
        unsafe { libc::munmap(self.0, SHARED_CHILD_STACK) };
    }
}

/// A `MAP_SHARED` mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub struct SharedMapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain memory owned by this value; `&SharedMapping` hands out
// only `&[u8]`, and writing needs `&mut SharedMapping`.
unsafe impl Send for SharedMapping {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// `mmap(2)` of the first `len` bytes of `fd`, shared, read-only unless `writable`.
    /// `len` must not be 0 (mmap refuses it).
    pub fn map(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<SharedMapping, SysError> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new mapping at an address of the kernel's choosing overlaps nothing
        // of ours; the fd is live for the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::new("mmap", Errno::last()));
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| SysError::new("mmap", Errno::EINVAL))?;
        Ok(SharedMapping { ptr, len, writable })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives; they are
        // changed only through `bytes_mut`, which borrows `self` mutably.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, writable; `None` for a read-only mapping.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        // SAFETY: as for `bytes`, and the mapping is writable; `&mut self` makes the
        // borrow exclusive.
        self.writable
            .then(|| unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) })
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `map`; no borrow of it outlives
        // `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `mprotect(2)`: asks for the pages holding `region` to become readable and writable.
///
/// A test hook for the sealed, read-only mappings of `crate::Preloaded`, which the
/// kernel must refuse (`EACCES`). Making memory more accessible cannot break a Rust
/// borrow; if it did succeed, nothing here writes to it.
pub fn mprotect_read_write(region: &[u8]) -> Result<(), SysError> {
    let page = 4096usize;
    let start = region.as_ptr() as usize & !(page - 1);
    let end = region.as_ptr() as usize + region.len();
    // SAFETY: only changes protections (to more permissive ones) of pages that `region`
    // shows are mapped; no memory is read or written.
    let ret = unsafe {
        libc::mprotect(
            start as *mut libc::c_void,
            end - start,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    if ret == -1 {
        return Err(SysError::new("mprotect", Errno::last()));
    }
    Ok(())
}

/// The mapping of this process that holds `address`, from `/proc/self/maps`.
struct Mapping {
    start: usize,
    end: usize,
    /// `r-xp`, ...
    perms: String,
    /// Whether a file backs it (its inode is not 0).
    from_file: bool,
}

fn mapping_of(address: usize) -> Result<Mapping, SysError> {
    let maps = std::fs::read_to_string("/proc/self/maps").op_path("read", "/proc/self/maps")?;
    maps.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            let perms = fields.next()?.to_string();
            let inode = fields.nth(2)?;
            (start..end).contains(&address).then(|| Mapping {
                start,
                end,
                perms,
                from_file: inode != "0",
            })
        })
        .ok_or_else(|| SysError::with_path("find own code", "/proc/self/maps", Errno::ENOENT))
}

/// Replaces the hot middle of this program's machine code, every whole 2 MiB huge page
/// of the executable's `r-xp` segment, with an anonymous copy at the same address,
/// backed by transparent huge pages. A fork copies an anonymous huge page's mapping in
/// one page-table entry, where it leaves a file mapping's for the child to fault in, a
/// few pages at a time: a zygote's children then run most of its code without those
/// faults, and have fewer entries to tear down when they exit. Returns the bytes
/// copied: none when the segment holds no whole huge page or the kernel gives none
/// (`MADV_COLLAPSE`). The caller must be single-threaded; on failure the file mapping
/// stays.
pub fn copy_own_code_to_huge_pages() -> Result<usize, SysError> {
    const HUGE_PAGE: usize = 2 << 20;
    // Not in libc 0.2.191; Linux 6.1.
    const MADV_COLLAPSE: libc::c_int = 25;
    let here = copy_own_code_to_huge_pages as fn() -> Result<usize, SysError> as usize;
    let code = mapping_of(here)?;
    if code.perms != "r-xp" {
        return Err(SysError::new("find own code (r-xp)", Errno::EINVAL));
    }
    let first = code.start.next_multiple_of(HUGE_PAGE);
    let last = code.end / HUGE_PAGE * HUGE_PAGE;
    // Copied already (by an earlier zygote of this process: `here` is in the copy, or in
    // the file-mapped rest around it), or too small to hold a huge page.
    if !code.from_file || last <= first {
        return Ok(0);
    }
    let len = last - first;
    // A copy aligned to a huge page, as [first, last) is, so that its huge pages move
    // whole: map a huge page more than needed and keep the part that lines up.
    let span = len + HUGE_PAGE;
    let base = map_anonymous(span, libc::MAP_NORESERVE, "mmap(code copy)")? as usize;
    let offset = (HUGE_PAGE - base % HUGE_PAGE) % HUGE_PAGE;
    let copy = base + offset;
    // SAFETY: the parts of the mapping made above before and after [copy, copy + len),
    // which nothing uses.
    unsafe {
        if offset > 0 {
            libc::munmap(base as *mut libc::c_void, offset);
        }
        libc::munmap((copy + len) as *mut libc::c_void, span - offset - len);
    }
    let discard = |op: &str, errno: Errno| {
        // SAFETY: the copy, mapped above and not moved over the code.
        unsafe { libc::munmap(copy as *mut libc::c_void, len) };
        Err(SysError::new(op, errno))
    };
    // SAFETY: `copy` is the start of `len` bytes mapped above; advice only.
    unsafe { libc::madvise(copy as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    // SAFETY: [first, last) is within this program's code, mapped readable;
    // [copy, copy + len) is the writable mapping above; they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(first as *const u8, copy as *mut u8, len) };
    // SAFETY: the copy's own pages: made huge pages, if not already.
    if unsafe { libc::madvise(copy as *mut libc::c_void, len, MADV_COLLAPSE) } == -1 {
        return discard("madvise(code copy, MADV_COLLAPSE)", Errno::last());
    }
    // SAFETY: the copy's own pages; it becomes read-only and executable (never both
    // writable and executable).
    if unsafe {
        libc::mprotect(
            copy as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_EXEC,
        )
    } == -1
    {
        return discard("mprotect(code copy, PROT_EXEC)", Errno::last());
    }
    // SAFETY: moves the copy over the code, atomically replacing that part of its
    // mapping: the bytes at every address stay the same, so code running there (this
    // very call's caller may) goes on in an identical copy of itself. No other thread
    // runs (the caller's contract).
    let moved = unsafe {
        libc::mremap(
            copy as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            first as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        return discard("mremap(code copy)", Errno::last());
    }
    Ok(len)
}
