//! Commands about the standard streams and the terminal on them: copying stdin to
//! stdout, writing to both streams, and injecting input into a passed terminal
//! (`TIOCSTI`/`TIOCLINUX`, CVE-2017-5226).
//!
//! Runs in the workload, with whatever stdio the test passed in the request.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use nix::unistd;

use crate::output::{io_failure, io_verdict, verdict};
use crate::{sys, Outcome};

/// `cat`: stdin to stdout until EOF.
pub fn cat() -> Outcome {
    io::copy(&mut io::stdin().lock(), &mut io::stdout().lock())
        .map(drop)
        .map_err(|e| io_failure("copy stdin to stdout", e))
}

/// `echo-both <out> <err>`: one line on each stream.
pub fn echo_both(args: &[OsString]) -> Outcome {
    let [out, err] = args else {
        return Err("expected two arguments: out err".to_string());
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| io_failure("write stdout", e))?;
    let mut stderr = io::stderr().lock();
    stderr
        .write_all(err.as_bytes())
        .and_then(|()| stderr.write_all(b"\n"))
        .map_err(|e| io_failure("write stderr", e))
}

/// What `tty-inject` pushes into a terminal's input: a shell comment, so that even a shell
/// that read it would do nothing.
const INJECTED: &[u8] = b"#hatchery-escape\n";

/// `tty-inject`: CVE-2017-5226. Tries to push [`INJECTED`] into the input of the terminal
/// on stdin with `TIOCSTI`, and `TIOCLINUX` (a read-only subcode), as the process is; then
/// the whole attack: `setsid`, `TIOCSCTTY` to take that terminal as the controlling
/// terminal of the new session, and `TIOCSTI` again. Prints `stdin_is_tty`, `dev_tty`
/// (opening the controlling terminal), `tiocsti`, `tioclinux`, `setsid`, `tiocsctty` and
/// `tiocsti_as_ctty`. If stdin already is our controlling terminal (run by mistake from
/// an interactive shell), it injects nothing and prints `skipped=controlling-terminal`.
pub fn tty_inject() -> Outcome {
    let stdin = io::stdin();
    println!("stdin_is_tty={}", unistd::isatty(&stdin).unwrap_or(false));
    if sys::controlling_session(&stdin).is_ok() {
        println!("skipped=controlling-terminal");
        return Ok(());
    }
    let dev_tty = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/tty");
    println!("dev_tty={}", io_verdict(&dev_tty));
    println!("tiocsti={}", verdict(sys::tiocsti(&stdin, INJECTED)));
    println!("tioclinux={}", verdict(sys::tioclinux_query(&stdin)));
    println!("setsid={}", verdict(unistd::setsid()));
    println!("tiocsctty={}", verdict(sys::tiocsctty(&stdin)));
    println!(
        "tiocsti_as_ctty={}",
        verdict(sys::tiocsti(&stdin, INJECTED))
    );
    Ok(())
}
