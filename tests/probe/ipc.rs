//! Commands for covert channels between two sandboxes that run at once: `ipc-hold`
//! makes every kind of object that processes of one machine find by name (SysV and
//! POSIX IPC, `/dev/shm`, an abstract socket, a key), `ipc-look` in a second sandbox
//! looks for them.
//!
//! Runs in the workload. Every object made is removed again before `ipc-hold` ends.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::output::{io_error_name, io_failure, io_verdict, read_file, say_ready, verdict};
use crate::{one_arg, sys, Outcome};

/// The SysV IPC key of `ipc-hold` and `ipc-look` for `name`: FNV-1a of it, never 0
/// (`IPC_PRIVATE`).
fn ipc_key(name: &str) -> libc::key_t {
    let hash = name.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (hash | 1) as libc::key_t
}

/// The names `ipc-hold` and `ipc-look` use for `name`: a POSIX message queue, a file in
/// /dev/shm, an abstract socket and a key description.
struct IpcNames {
    queue: std::ffi::CString,
    shm_file: String,
    socket: String,
    key: std::ffi::CString,
}

fn ipc_names(name: &str) -> Result<IpcNames, String> {
    let c = |s: String| std::ffi::CString::new(s).map_err(|_| "NUL in name".to_string());
    Ok(IpcNames {
        queue: c(format!("/hatchery-{name}"))?,
        shm_file: format!("/dev/shm/hatchery-{name}"),
        socket: format!("hatchery-{name}"),
        key: c(format!("hatchery-{name}"))?,
    })
}

/// `ipc-hold <name>`: creates every kind of object by which processes of one machine find
/// each other by name: SysV shared memory (`shm`), a semaphore set (`sem`) and a message
/// queue (`msg`) under [`ipc_key`], a POSIX message queue (`mqueue`), a file in /dev/shm
/// (`dev_shm`), a listening abstract socket (`abstract`), and a key in the user keyring
/// (`keyring`). Prints `ok` or the errno for each, then `ready`; holds them until stdin
/// reaches end of file, then removes them all.
pub fn ipc_hold(args: &[OsString]) -> Outcome {
    use nix::sys::socket::{bind, listen, Backlog, UnixAddr};
    use std::os::fd::AsRawFd;
    let name: String = one_arg(args, "name")?;
    let (key, names) = (ipc_key(&name), ipc_names(&name)?);
    let shm = sys::shm_create(key);
    println!("shm={}", verdict(shm));
    let sem = sys::sem_create(key);
    println!("sem={}", verdict(sem));
    let msg = sys::msg_create(key);
    println!("msg={}", verdict(msg));
    let queue = sys::mqueue_create(&names.queue);
    println!("mqueue={}", verdict(queue));
    let shm_file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&names.shm_file);
    println!("dev_shm={}", io_verdict(&shm_file));
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .and_then(|sock| {
        let address = UnixAddr::new_abstract(names.socket.as_bytes())?;
        bind(sock.as_raw_fd(), &address)?;
        listen(&sock, Backlog::new(1)?)?;
        Ok(sock)
    });
    println!("abstract={}", verdict(listener.as_ref().map_err(|e| *e)));
    let user_key = sys::add_user_key(&names.key);
    println!("keyring={}", verdict(user_key));
    say_ready()?;
    io::copy(&mut io::stdin().lock(), &mut io::sink()).map_err(|e| io_failure("read stdin", e))?;

    if let Ok(id) = shm {
        sys::shm_remove(id);
    }
    if let Ok(id) = sem {
        sys::sem_remove(id);
    }
    if let Ok(id) = msg {
        sys::msg_remove(id);
    }
    if queue.is_ok() {
        sys::mqueue_remove(&names.queue);
    }
    if shm_file.is_ok() {
        let _ = fs::remove_file(&names.shm_file);
    }
    if let Ok(serial) = user_key {
        sys::invalidate_key(serial);
    }
    Ok(())
}

/// `ipc-look <name>`: looks for what `ipc-hold <name>` made, by name only, and prints the
/// same keys (`ok` when found, else the errno); also `proc_keys` (whether /proc/keys lists
/// the key) and `sysvipc_objects` (how many SysV objects of any key /proc/sysvipc lists).
pub fn ipc_look(args: &[OsString]) -> Outcome {
    use nix::sys::socket::{connect, UnixAddr};
    use std::os::fd::AsRawFd;
    let name: String = one_arg(args, "name")?;
    let (key, names) = (ipc_key(&name), ipc_names(&name)?);
    println!("shm={}", verdict(sys::shm_lookup(key)));
    println!("sem={}", verdict(sys::sem_lookup(key)));
    println!("msg={}", verdict(sys::msg_lookup(key)));
    println!("mqueue={}", verdict(sys::mqueue_lookup(&names.queue)));
    println!("dev_shm={}", io_verdict(&fs::metadata(&names.shm_file)));
    let connected = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .and_then(|sock| {
        let address = UnixAddr::new_abstract(names.socket.as_bytes())?;
        connect(sock.as_raw_fd(), &address)
    });
    println!("abstract={}", verdict(connected));
    println!("keyring={}", verdict(sys::search_user_key(&names.key)));
    let description = names.key.to_string_lossy();
    let listed = fs::read_to_string("/proc/keys").map(|keys| keys.contains(&*description));
    println!(
        "proc_keys={}",
        listed.map_or_else(|e| io_error_name(&e), |found| found.to_string())
    );
    let mut objects = 0;
    for kind in ["shm", "sem", "msg"] {
        // One header line, then one line per object.
        let table = read_file(&format!("/proc/sysvipc/{kind}"))?;
        objects += table.lines().skip(1).count();
    }
    println!("sysvipc_objects={objects}");
    Ok(())
}
