//! The workload's last step, `execve`, with a `PATH` search done inside the sandbox. Its
//! arguments are prepared by the sandbox init (while allocating is harmless) and used by
//! the workload, which shares the init's memory until its `execve`.

use std::ffi::CString;

use nix::errno::Errno;

use crate::protocol::{Command, SetupFailure, SpawnRequest};
use crate::sys::{self, CStringArray};

/// The search path when the request's environment has no `PATH` (what `execvp` uses).
const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// The program, argv and environment as C strings, built before the point of no return:
/// the exec allocates nothing, so it can run in a child that shares the init's memory.
pub struct ExecArgs {
    candidates: Vec<CString>,
    argv: CStringArray,
    envp: CStringArray,
}

impl ExecArgs {
    /// Prepares the exec of `request`. Fails on an interior NUL byte, or when the request
    /// calls an entry rather than a program (both refused by the daemon's validation
    /// before anything is cloned).
    pub fn new(request: &SpawnRequest) -> Result<ExecArgs, SetupFailure> {
        let Command::Exec { program, argv } = &request.command else {
            return Err(SetupFailure::Request(
                "it calls an entry, not a program".into(),
            ));
        };
        let cstring = |bytes: &[u8]| {
            CString::new(bytes)
                .map_err(|_| SetupFailure::Request("a string of its exec holds a NUL byte".into()))
        };
        let argv = argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = request
            .env
            .iter()
            .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect::<Result<Vec<_>, _>>()?;
        let program = program.as_bytes();
        let candidates = if program.contains(&b'/') {
            vec![cstring(program)?]
        } else {
            let path = request
                .env
                .iter()
                .find(|(k, _)| k.as_bytes() == b"PATH")
                .map(|(_, v)| v.as_bytes())
                .unwrap_or(DEFAULT_PATH);
            path.split(|&b| b == b':')
                .map(|dir| if dir.is_empty() { &b"."[..] } else { dir })
                .map(|dir| cstring(&[dir, b"/", program].concat()))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(ExecArgs {
            candidates,
            argv: CStringArray::new(argv),
            envp: CStringArray::new(envp),
        })
    }

    /// Execs the first candidate that can be executed, allocating nothing. Returns only
    /// on failure, with the most telling errno: `EACCES` from any candidate wins over
    /// `ENOENT`, as in `execvp`.
    pub fn exec(&self) -> Errno {
        let mut saw_eacces = false;
        for candidate in &self.candidates {
            match sys::execve(candidate, &self.argv, &self.envp) {
                Errno::ENOENT
                | Errno::ENOTDIR
                | Errno::ESTALE
                | Errno::ENODEV
                | Errno::ETIMEDOUT => {}
                Errno::EACCES => saw_eacces = true,
                other => return other,
            }
        }
        if saw_eacces {
            Errno::EACCES
        } else {
            Errno::ENOENT
        }
    }
}
