//! Commands about who the workload is: its pid and the pids it can see, its user and
//! group ids, capability sets, `no_new_privs` and seccomp mode, its hostname,
//! environment and working directory, and attempts to become root (`set-ids`).
//!
//! Runs in the workload. Whatever could change this process's ids runs in a throwaway
//! child ([`crate::processes::in_child`]), so one command can try them all.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::unistd;

use crate::output::{io_error_name, io_failure, join, nix_failure, print_bytes, read_file};
use crate::processes::in_child;
use crate::Outcome;

/// `pid`: our pid, our parent's, and every pid visible in /proc (the pid namespace).
pub fn pid() -> Outcome {
    println!("pid={}", unistd::getpid());
    println!("ppid={}", unistd::getppid());
    let entries = fs::read_dir("/proc").map_err(|e| io_failure("read_dir /proc", e))?;
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    println!("visible_pids={}", join(pids));
    Ok(())
}

/// `ids`: real and effective user and group ids, and the supplementary groups.
pub fn ids() -> Outcome {
    println!("uid={}", unistd::getuid());
    println!("euid={}", unistd::geteuid());
    println!("gid={}", unistd::getgid());
    println!("egid={}", unistd::getegid());
    let groups = unistd::getgroups().map_err(|e| nix_failure("getgroups", e))?;
    println!("groups={}", join(groups));
    Ok(())
}

/// `status`: the capability sets, no_new_privs, the seccomp mode and how many filters
/// are installed, from /proc/self/status.
pub fn status() -> Outcome {
    const KEYS: [&str; 8] = [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
        "Seccomp_filters",
    ];
    let text = read_file("/proc/self/status")?;
    for key in KEYS {
        let value = text.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name == key).then(|| value.trim())
        });
        // A kernel too old for a field says so instead of hiding the line.
        println!("{key}={}", value.unwrap_or("missing"));
    }
    Ok(())
}

/// `hostname`: the UTS namespace's node name (glibc's gethostname reads uname's nodename).
pub fn hostname() -> Outcome {
    let name = unistd::gethostname().map_err(|e| nix_failure("gethostname", e))?;
    print_bytes("hostname", name.as_bytes())
}

/// `env`: every environment variable as `env:KEY=VALUE`, in the order the process has them.
pub fn env() -> Outcome {
    for (key, value) in std::env::vars_os() {
        print_bytes(&format!("env:{}", key.to_string_lossy()), value.as_bytes())?;
    }
    Ok(())
}

/// `cwd`: the working directory.
pub fn cwd() -> Outcome {
    let dir = unistd::getcwd().map_err(|e| nix_failure("getcwd", e))?;
    print_bytes("cwd", dir.as_os_str().as_bytes())
}

/// `uid-map`: whether this process may (re)write its own uid map. Inside a sandbox the
/// map was written by the parent and is write-once, so this must fail.
pub fn uid_map() -> Outcome {
    let written = fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/uid_map")
        .and_then(|mut map| map.write_all(b"0 0 1\n"));
    match written {
        Ok(()) => println!("uid_map_write=ok"),
        Err(e) => println!("uid_map_write={}", io_error_name(&e)),
    }
    Ok(())
}

/// `whoami-setuid`: effective and real uid (the test runs a setuid-root copy of the probe,
/// which no_new_privs must keep from gaining root).
pub fn whoami_setuid() -> Outcome {
    println!("euid={}", unistd::geteuid());
    println!("uid={}", unistd::getuid());
    Ok(())
}

/// The value of `key` in /proc/self/status text, or `missing`.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name == key).then(|| value.trim())
        })
        .unwrap_or("missing")
}

/// `privs [PREFIX]`: real, effective and saved user and group ids, and the capability
/// sets. With a prefix, every key is `PREFIX.<key>`, so that a program this probe execs
/// can report next to it.
pub fn privs(args: &[OsString]) -> Outcome {
    let prefix = match args {
        [] => String::new(),
        [prefix] => format!("{}.", prefix.to_string_lossy()),
        _ => return Err("expected at most one argument: prefix".to_string()),
    };
    let uids = unistd::getresuid().map_err(|e| nix_failure("getresuid", e))?;
    let gids = unistd::getresgid().map_err(|e| nix_failure("getresgid", e))?;
    println!("{prefix}uid={}", uids.real);
    println!("{prefix}euid={}", uids.effective);
    println!("{prefix}suid={}", uids.saved);
    println!("{prefix}gid={}", gids.real);
    println!("{prefix}egid={}", gids.effective);
    println!("{prefix}sgid={}", gids.saved);
    let status = read_file("/proc/self/status")?;
    for key in ["CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs"] {
        println!("{prefix}{key}={}", status_field(&status, key));
    }
    Ok(())
}

/// `set-ids`: tries to become root or join its group: `setuid(0)`, `setgid(0)`,
/// `setresuid(0, 0, 0)`, `setresgid(0, 0, 0)`, `setgroups([0])`, `setfsuid(0)` (which
/// reports no error, so `ok` means the fsuid did become 0). Each runs in a throwaway child.
pub fn set_ids() -> Outcome {
    use nix::unistd::{Gid, Uid};
    let (root, root_group) = (Uid::from_raw(0), Gid::from_raw(0));
    let done = |result: nix::Result<()>| result.map(|()| 0);
    println!("setuid={}", in_child(|| done(unistd::setuid(root))));
    println!("setgid={}", in_child(|| done(unistd::setgid(root_group))));
    println!(
        "setresuid={}",
        in_child(|| done(unistd::setresuid(root, root, root)))
    );
    println!(
        "setresgid={}",
        in_child(|| done(unistd::setresgid(root_group, root_group, root_group)))
    );
    println!(
        "setgroups={}",
        in_child(|| done(unistd::setgroups(&[root_group])))
    );
    println!(
        "setfsuid={}",
        in_child(|| {
            unistd::setfsuid(root);
            // An invalid id changes nothing and returns the current fsuid.
            match unistd::setfsuid(Uid::from_raw(u32::MAX)) {
                uid if uid == root => Ok(0),
                _ => Err(Errno::EPERM),
            }
        })
    );
    Ok(())
}
