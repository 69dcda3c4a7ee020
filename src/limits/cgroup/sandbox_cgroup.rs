//! One sandbox's cgroup, in every hierarchy in use: the zygote creates it (through
//! [`Cgroups::create`]) before the clone, the sandbox's init is cloned or moved into it,
//! the zygote's watchdog reads its usage, and after the reap the zygote kills what is
//! left in it and removes it. Runs in the zygote only.

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::discover::parse_proc_cgroup;
use super::files::{read_keyed, read_u64, remove_tree, write_value, DirOps};
#[cfg(doc)]
use super::Cgroups;
use super::{
    v1, v2, CgroupError, CgroupLimits, CgroupVersion, Controller, Place, Usage, CPU_PERIOD_US,
};
use crate::sys::{self, Context, SysError};

/// How many times [`SandboxCgroup::kill`] rereads `cgroup.procs` on v1 for processes
/// forked while it was signalling the others.
const KILL_ROUNDS: usize = 8;

/// The cgroup of one sandbox, in every hierarchy in use.
///
/// Dropping it leaves the directories in place: [`SandboxCgroup::remove`] may have to be
/// retried while killed tasks exit, which a destructor cannot do.
#[derive(Debug)]
pub struct SandboxCgroup {
    pub(super) name: String,
    pub(super) version: CgroupVersion,
    pub(super) dirs: Vec<Place>,
    /// v2: the directory, for `CLONE_INTO_CGROUP`.
    pub(super) fd: Option<OwnedFd>,
    pub(super) ops: DirOps,
}

impl SandboxCgroup {
    /// The name it was created with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// v2 only: an `O_DIRECTORY` fd of the cgroup for `clone3`'s `CLONE_INTO_CGROUP`.
    pub fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Moves `pid` (the sandbox init, before it starts its setup) into the cgroup in
    /// every hierarchy (a write to `cgroup.procs`). Used on v1, and on v2 when
    /// `CLONE_INTO_CGROUP` is not used.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            write_value(&dir.path.join("cgroup.procs"), &pid.to_string())
                .map_err(|source| CgroupError::Add { pid, source })?;
        }
        Ok(())
    }

    /// Current usage, for the daemon's watchdog and the verdict. A file that cannot be
    /// read gives `None` (or no OOM kills).
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for dir in &self.dirs {
            match self.version {
                CgroupVersion::V1 => v1::read_usage(dir, &mut usage),
                CgroupVersion::V2 => v2::read_usage(dir, &mut usage),
            }
            if dir.controllers.has(Controller::Pids) {
                usage.pids_peak = read_u64(&dir.path.join("pids.peak"));
                usage.pids_refused = read_keyed(&dir.path.join("pids.events"), "max").unwrap_or(0);
            }
        }
        usage
    }

    /// Kills every process in the cgroup: v2 `cgroup.kill` (kernel 5.14 and later);
    /// otherwise `SIGKILL` to each process listed in `cgroup.procs`, rereading it for
    /// processes forked meanwhile. Does not wait for them to exit.
    pub fn kill(&self) -> Result<(), CgroupError> {
        if self.version == CgroupVersion::V2 {
            if let Some(dir) = self.dirs.first() {
                match write_value(&dir.path.join("cgroup.kill"), "1") {
                    Err(e) if e.errno() == Errno::ENOENT => {}
                    result => return result.map_err(CgroupError::Kill),
                }
            }
        }
        self.kill_listed()
    }

    /// Signals the processes listed in `cgroup.procs` until a reading shows none that
    /// was not signalled already. A process with `SIGKILL` pending cannot fork, so once
    /// a reading shows no new one, every process left is dying.
    ///
    /// A process that cannot be signalled does not spare the others: the first error is
    /// returned after all were tried.
    fn kill_listed(&self) -> Result<(), CgroupError> {
        let mut signalled = HashSet::new();
        let mut first_error = None;
        for _ in 0..KILL_ROUNDS {
            let mut new = 0;
            for dir in &self.dirs {
                let procs = dir.path.join("cgroup.procs");
                let text = match std::fs::read_to_string(&procs) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    result => result.op_path("read", &procs).map_err(CgroupError::Kill)?,
                };
                for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    if signalled.insert(pid) {
                        new += 1;
                        if let Err(e) = kill_member(pid, self.version, dir) {
                            first_error.get_or_insert(CgroupError::Kill(e));
                        }
                    }
                }
            }
            if new == 0 {
                break;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the cgroup directories (and any below them). A directory that still has
    /// tasks gives [`CgroupError::Busy`], so the caller retries later; one already gone
    /// counts as removed.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut busy = false;
        for dir in &self.dirs {
            match remove_tree(self.ops, &dir.path) {
                Ok(()) => {}
                Err(e) if e.errno() == Errno::EBUSY => busy = true,
                Err(e) => return Err(CgroupError::Remove(e)),
            }
        }
        if busy {
            return Err(CgroupError::Busy);
        }
        Ok(())
    }

    /// The cgroup's directories (one per hierarchy), for logs and tests.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|dir| dir.path.clone()).collect()
    }

    /// Kills, then retries the removal until it succeeds or `timeout` passes.
    pub(super) fn kill_and_wait(&self, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        loop {
            self.kill()?;
            match self.remove() {
                Err(CgroupError::Busy) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(CgroupError::Busy) => {
                    let path = self
                        .dirs
                        .first()
                        .map(|d| d.path.clone())
                        .unwrap_or_default();
                    return Err(CgroupError::StaleBusy(path));
                }
                result => return result,
            }
        }
    }

    /// Writes the limits (only those given) and, on v2, opens the directory.
    pub(super) fn prepare(&mut self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let cpu_quota = match limits.cpu_millicores {
            Some(m) => Some(m.checked_mul(CPU_PERIOD_US / 1000).ok_or(
                CgroupError::OutOfRange {
                    limit: "cpu",
                    value: m,
                },
            )?),
            None => None,
        };
        for dir in &self.dirs {
            let c = dir.controllers;
            if c.has(Controller::Memory) {
                self.write_memory(dir, limits.memory_bytes)
                    .map_err(|source| CgroupError::Limit {
                        limit: "memory",
                        source,
                    })?;
            }
            if let (true, Some(pids)) = (c.has(Controller::Pids), limits.pids) {
                write_value(&dir.path.join("pids.max"), &pids.to_string()).map_err(|source| {
                    CgroupError::Limit {
                        limit: "pids",
                        source,
                    }
                })?;
            }
            if let (true, Some(quota)) = (c.has(Controller::Cpu), cpu_quota) {
                self.write_cpu(dir, quota)
                    .map_err(|source| CgroupError::Limit {
                        limit: "cpu",
                        source,
                    })?;
            }
        }
        if self.version == CgroupVersion::V2 {
            if let Some(dir) = self.dirs.first() {
                let fd = nix::fcntl::open(
                    &dir.path,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .op_path("open", &dir.path)
                .map_err(|source| CgroupError::Create {
                    name: self.name.clone(),
                    source,
                })?;
                self.fd = Some(fd);
            }
        }
        Ok(())
    }

    /// Writes the memory limit in the files of the version in use.
    fn write_memory(&self, dir: &Place, bytes: Option<u64>) -> Result<(), SysError> {
        match self.version {
            CgroupVersion::V1 => v1::write_memory(&dir.path, bytes),
            CgroupVersion::V2 => v2::write_memory(&dir.path, bytes),
        }
    }

    /// Writes the CPU quota in the files of the version in use.
    fn write_cpu(&self, dir: &Place, quota_us: u64) -> Result<(), SysError> {
        match self.version {
            CgroupVersion::V1 => v1::write_cpu(&dir.path, quota_us),
            CgroupVersion::V2 => v2::write_cpu(&dir.path, quota_us),
        }
    }
}

/// Sends `SIGKILL` to `pid` if it is (still) a member of `dir`. The process is pinned by
/// an fd of its `/proc` directory first, so a pid reused by an unrelated process between
/// the reading of `cgroup.procs` and the signal is never hit.
fn kill_member(pid: i32, version: CgroupVersion, dir: &Place) -> Result<(), SysError> {
    let proc_dir = format!("/proc/{pid}");
    let handle = match nix::fcntl::open(
        proc_dir.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::ENOENT | Errno::ESRCH) => return Ok(()),
        result => result.op_path("open", &proc_dir)?,
    };
    let membership = match nix::fcntl::openat(
        &handle,
        "cgroup",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::ENOENT | Errno::ESRCH) => return Ok(()),
        result => result.op_path("open", format!("{proc_dir}/cgroup"))?,
    };
    let mut text = String::new();
    match std::fs::File::from(membership).read_to_string(&mut text) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        result => result.op_path("read", format!("{proc_dir}/cgroup"))?,
    };
    if !is_member(&text, version, dir) {
        return Ok(());
    }
    match sys::pidfd_send_signal(handle.as_fd(), libc::SIGKILL) {
        Err(e) if e.errno() == Errno::ESRCH => Ok(()),
        result => result,
    }
}

/// Whether `/proc/PID/cgroup` text places the process in `dir` (or below it).
fn is_member(proc_cgroup: &str, version: CgroupVersion, dir: &Place) -> bool {
    let controller = dir.controllers.iter().next();
    parse_proc_cgroup(proc_cgroup).iter().any(|line| {
        let right_line = match version {
            CgroupVersion::V2 => line.id == 0 && line.controllers.is_empty(),
            CgroupVersion::V1 => {
                controller.is_some_and(|c| line.controllers.iter().any(|n| n == c.name()))
            }
        };
        right_line
            && (line.path == dir.rel
                || line
                    .path
                    .strip_prefix(&dir.rel)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::cgroup::Controllers;

    #[test]
    fn membership_follows_the_hierarchy_of_the_directory() {
        let mut memory = Controllers::default();
        memory.add(Controller::Memory);
        let place = Place {
            path: PathBuf::new(),
            rel: "/a/hatchery-sandboxes/sandbox-1".into(),
            controllers: memory,
        };
        let inside = "4:memory:/a/hatchery-sandboxes/sandbox-1\n1:cpu:/\n0::/\n";
        let below = "4:memory:/a/hatchery-sandboxes/sandbox-1/x\n0::/\n";
        let sibling = "4:memory:/a/hatchery-sandboxes/sandbox-10\n0::/\n";
        let other_hierarchy = "4:pids:/a/hatchery-sandboxes/sandbox-1\n4:memory:/\n";
        assert!(is_member(inside, CgroupVersion::V1, &place));
        assert!(is_member(below, CgroupVersion::V1, &place));
        assert!(!is_member(sibling, CgroupVersion::V1, &place));
        assert!(!is_member(other_hierarchy, CgroupVersion::V1, &place));
        let v2 = "0::/a/hatchery-sandboxes/sandbox-1\n";
        assert!(is_member(v2, CgroupVersion::V2, &place));
        assert!(!is_member(inside, CgroupVersion::V2, &place));
    }
}
