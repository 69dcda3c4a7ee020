//! Commands about the filesystem the workload sees: which paths are writable, directory
//! listings, the mount table, inherited fds, and the escapes through files: overwriting
//! the runtime through `/proc/*/exe` (CVE-2019-5736), walking out of the root
//! (CVE-2024-21626), mounting from inside, and file locks on a shared bind.
//!
//! Runs in the workload. Nothing here writes to an existing file; a mount is only tried
//! on a fresh directory of the probe's own and undone at once.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::unistd;

use crate::output::{
    errno_name, io_error_name, io_failure, io_verdict, join, nix_failure, print_bytes, say_ready,
    verdict,
};
use crate::{sys, Outcome};

/// `writable <path>...`: whether each path can be written, without changing anything
/// that was there: a directory gets a fresh file created and removed again, anything
/// else is opened for writing (no truncation, nothing written).
pub fn writable(paths: &[OsString]) -> Outcome {
    if paths.is_empty() {
        return Err("expected at least one path".to_string());
    }
    let me = std::process::id();
    for path in paths {
        let path = Path::new(path);
        let verdict = match fs::metadata(path) {
            Err(e) => io_error_name(&e),
            Ok(meta) if meta.is_dir() => {
                let file = path.join(format!(".probe-{me}"));
                let created = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&file);
                match created {
                    Err(e) => io_error_name(&e),
                    Ok(_) => match fs::remove_file(&file) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("unlink:{}", io_error_name(&e)),
                    },
                }
            }
            Ok(_) => match fs::OpenOptions::new().write(true).open(path) {
                Ok(_) => "ok".to_string(),
                Err(e) => io_error_name(&e),
            },
        };
        print_bytes(&path.to_string_lossy(), verdict.as_bytes())?;
    }
    Ok(())
}

/// `ls <dir>`: the directory's entries, sorted bytewise (`.` and `..` are never listed).
pub fn ls(args: &[OsString]) -> Outcome {
    let [dir] = args else {
        return Err("expected exactly one argument: dir".to_string());
    };
    let entries = fs::read_dir(dir).map_err(|e| io_failure(format!("read_dir {dir:?}"), e))?;
    let mut names = entries
        .map(|entry| entry.map(|e| e.file_name().into_vec()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| io_failure(format!("read_dir {dir:?}"), e))?;
    names.sort();
    print_bytes("entries", &names.join(&b","[..]))
}

/// `mounts`: /proc/self/mountinfo verbatim (the mount namespace).
pub fn mounts() -> Outcome {
    let text =
        fs::read("/proc/self/mountinfo").map_err(|e| io_failure("read /proc/self/mountinfo", e))?;
    io::stdout()
        .write_all(&text)
        .map_err(|e| io_failure("write stdout", e))
}

/// `fds`: the open file descriptors (what the sandbox let the job inherit).
pub fn fds() -> Outcome {
    // Listing /proc/self/fd opens a descriptor of its own, which shows in the listing.
    // Once the listing is closed, that number is no longer open, so keeping only the
    // numbers that are still open afterwards leaves exactly the inherited ones.
    let listed: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| io_failure("read_dir /proc/self/fd", e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut open: Vec<i32> = listed
        .into_iter()
        .filter(|&fd| sys::fd_is_open(fd))
        .collect();
    open.sort_unstable();
    println!("fds={}", join(open));
    Ok(())
}

/// `exe-write`: CVE-2019-5736. Whether the running binaries can be reached for writing
/// through `/proc/self/exe` (this probe) and `/proc/1/exe` (the sandbox init, a copy of the
/// zygote: the runtime itself), directly (`<key>_open_write`) or as runc's attackers did,
/// by an `O_PATH` handle reopened for writing through `/proc/self/fd`
/// (`<key>_open_path`, `<key>_reopen_write`); and where each link points (`<key>_link`).
/// Nothing is truncated or written.
pub fn exe_write() -> Outcome {
    for (key, path) in [("self_exe", "/proc/self/exe"), ("init_exe", "/proc/1/exe")] {
        let direct = fs::OpenOptions::new().write(true).open(path);
        println!("{key}_open_write={}", io_verdict(&direct));
        let handle = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path);
        println!("{key}_open_path={}", io_verdict(&handle));
        if let Ok(handle) = handle {
            use std::os::fd::AsRawFd;
            let reopened = fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
            println!("{key}_reopen_write={}", io_verdict(&reopened));
        }
        match fs::read_link(path) {
            Ok(target) => print_bytes(&format!("{key}_link"), target.as_os_str().as_bytes())?,
            Err(e) => println!("{key}_link={}", io_error_name(&e)),
        }
    }
    Ok(())
}

/// `root-walk`: CVE-2024-21626. Whether anything leads out of the root: `/..`
/// (`dotdot_is_root`), `chdir("..")` from the working directory again and again
/// (`cwd_after_dotdot`), the working directory and root as /proc shows them
/// (`proc_self_cwd`, `proc_self_cwd_is_cwd`, `proc_self_root`), what each open fd is
/// (`fd.<n>`), and the init's fds, among them its channel to the zygote (`init_fds`,
/// `init_fd3`, `init_cwd`).
pub fn root_walk() -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let same = |a: &str, b: &str| match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev() == b.dev() && a.ino() == b.ino()).to_string(),
        (Err(e), _) | (_, Err(e)) => io_error_name(&e),
    };
    println!("dotdot_is_root={}", same("/..", "/"));
    let cwd = unistd::getcwd().map_err(|e| nix_failure("getcwd", e))?;
    for _ in 0..64 {
        unistd::chdir("..").map_err(|e| nix_failure("chdir ..", e))?;
    }
    let after = unistd::getcwd().map_err(|e| nix_failure("getcwd", e))?;
    print_bytes("cwd_after_dotdot", after.as_os_str().as_bytes())?;
    println!("cwd_after_dotdot_is_root={}", same(".", "/"));
    unistd::chdir(&cwd).map_err(|e| nix_failure("chdir back", e))?;
    for (key, link) in [
        ("proc_self_cwd", "/proc/self/cwd"),
        ("proc_self_root", "/proc/self/root"),
    ] {
        match fs::read_link(link) {
            Ok(target) => print_bytes(key, target.as_os_str().as_bytes())?,
            Err(e) => println!("{key}={}", io_error_name(&e)),
        }
    }
    println!("proc_self_cwd_is_cwd={}", same("/proc/self/cwd", "."));
    // As in `fds`: the listing's own fd is gone once the listing is.
    let listed: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| io_failure("read_dir /proc/self/fd", e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in listed.into_iter().filter(|&fd| sys::fd_is_open(fd)) {
        match fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(target) => print_bytes(&format!("fd.{fd}"), target.as_os_str().as_bytes())?,
            Err(e) => println!("fd.{fd}={}", io_error_name(&e)),
        }
    }
    println!(
        "init_fds={}",
        io_verdict(&fs::read_dir("/proc/1/fd").map(|d| d.count()))
    );
    println!("init_fd3={}", io_verdict(&fs::File::open("/proc/1/fd/3")));
    println!("init_cwd={}", io_verdict(&fs::read_link("/proc/1/cwd")));
    Ok(())
}

/// `mount-tmpfs`: tries to mount a tmpfs on a fresh directory of our own under /tmp, and
/// to bind-mount `/` there; whatever got mounted is unmounted at once, and the directory
/// removed. Prints `mount_tmpfs` and `mount_bind`.
pub fn mount_tmpfs() -> Outcome {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let dir = format!("/tmp/hatchery-probe-mount-{}", unistd::getpid());
    fs::create_dir(&dir).map_err(|e| io_failure(format!("mkdir {dir}"), e))?;
    for (key, source, fstype, flags) in [
        ("mount_tmpfs", "tmpfs", Some("tmpfs"), MsFlags::empty()),
        ("mount_bind", "/", None, MsFlags::MS_BIND),
    ] {
        let mounted = mount(Some(source), dir.as_str(), fstype, flags, None::<&str>);
        println!("{key}={}", verdict(mounted));
        if mounted.is_ok() {
            umount2(dir.as_str(), MntFlags::MNT_DETACH)
                .map_err(|e| nix_failure(format!("umount {dir}"), e))?;
        }
    }
    fs::remove_dir(&dir).map_err(|e| io_failure(format!("rmdir {dir}"), e))
}

/// `ls-after-line <dir>`: prints `ready`, waits for one line on stdin, then lists `<dir>`
/// as `ls` does (the test changes the host's mounts in between).
pub fn ls_after_line(args: &[OsString]) -> Outcome {
    say_ready()?;
    let mut line = String::new();
    io::stdin()
        .read_line(&mut line)
        .map_err(|e| io_failure("read stdin", e))?;
    ls(args)
}

/// A POSIX lock request over the whole file.
fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// `lock-hold <path>`: opens `<path>` read-only and takes a POSIX read lock (`posix_lock`)
/// and a shared `flock` (`flock`) on it, neither of which needs write access; prints
/// `ready` and holds them until stdin reaches end of file.
pub fn lock_hold(args: &[OsString]) -> Outcome {
    use nix::fcntl::{fcntl, FcntlArg, Flock, FlockArg};
    let [path] = args else {
        return Err("expected exactly one argument: path".to_string());
    };
    let file = fs::File::open(path).map_err(|e| io_failure(format!("open {path:?}"), e))?;
    let read_lock = whole_file_lock(libc::F_RDLCK);
    println!(
        "posix_lock={}",
        verdict(fcntl(&file, FcntlArg::F_SETLK(&read_lock)))
    );
    let _held = match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(held) => {
            println!("flock=ok");
            Some(held)
        }
        Err((_, e)) => {
            println!("flock={}", errno_name(e as i32));
            None
        }
    };
    say_ready()?;
    io::copy(&mut io::stdin().lock(), &mut io::sink()).map_err(|e| io_failure("read stdin", e))?;
    Ok(())
}

/// `lock-look <path>`: opens `<path>` read-only and asks whether another process holds a
/// lock on it: `posix_lock_seen` (`F_GETLK` for a write lock finds a conflicting lock:
/// `true`/`false`) and `flock_exclusive` (a non-blocking exclusive `flock`: `ok`, or
/// `EAGAIN` while another process holds one).
pub fn lock_look(args: &[OsString]) -> Outcome {
    use nix::fcntl::{fcntl, FcntlArg, Flock, FlockArg};
    let [path] = args else {
        return Err("expected exactly one argument: path".to_string());
    };
    let file = fs::File::open(path).map_err(|e| io_failure(format!("open {path:?}"), e))?;
    let mut probe = whole_file_lock(libc::F_WRLCK);
    match fcntl(&file, FcntlArg::F_GETLK(&mut probe)) {
        Ok(_) => println!(
            "posix_lock_seen={}",
            probe.l_type != libc::F_UNLCK as libc::c_short
        ),
        Err(e) => println!("posix_lock_seen={}", errno_name(e as i32)),
    }
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_) => println!("flock_exclusive=ok"),
        Err((_, e)) => println!("flock_exclusive={}", errno_name(e as i32)),
    }
    Ok(())
}
