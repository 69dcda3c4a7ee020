//! Reading a child's streams to their end, all at once: what `call` and
//! `ChildProcess::output` share. Runs in the client.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::sys::SysError;

/// The bytes read from each stream, and which went past their bound.
pub(crate) struct Collected {
    pub(crate) bytes: [Vec<u8>; 3],
    pub(crate) overflowed: [bool; 3],
}

/// Reads the three streams to end of file at once (a child blocked on a full stdout pipe
/// would never finish its result). Keeps at most `limits[i]` bytes of each; the first
/// stream (the result) is abandoned at once past its bound, the others are drained.
/// [`crate::ChildProcess::output`] uses it too, without bounds, and `call` with them.
pub(crate) fn collect(
    streams: [Option<File>; 3],
    limits: [usize; 3],
) -> Result<Collected, SysError> {
    let mut streams = streams;
    let mut collected = Collected {
        bytes: Default::default(),
        overflowed: [false; 3],
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let open: Vec<usize> = (0..3).filter(|&i| streams[i].is_some()).collect();
        if open.is_empty() {
            return Ok(collected);
        }
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .filter_map(|&i| streams[i].as_ref())
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(SysError::new("poll", e)),
        }
        let ready: Vec<usize> = open
            .iter()
            .zip(&fds)
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(&i, _)| i)
            .collect();
        drop(fds);
        for i in ready {
            let Some(file) = streams[i].as_mut() else {
                continue;
            };
            let n = match file.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SysError::new(
                        "read",
                        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    ))
                }
            };
            if n == 0 {
                streams[i] = None;
                continue;
            }
            let room = limits[i].saturating_sub(collected.bytes[i].len());
            collected.bytes[i].extend_from_slice(&chunk[..n.min(room)]);
            if n > room {
                collected.overflowed[i] = true;
                if i == 0 {
                    streams[0] = None;
                }
            }
        }
    }
}
