//! The host ids sandboxes run as, outside their user namespaces: by default each live
//! sandbox of a root daemon gets a host uid and gid of its own, so that nothing outside
//! it but root and the daemon may signal it, and a sandbox's processes count against its
//! own uid's `RLIMIT_NPROC` on any kernel.
//!
//! A root daemon takes its ids from a range (`serve --host-uid-range START:COUNT`, by
//! default [`DEFAULT_RANGE`]), checked at start-up against the host's users, groups and
//! subordinate id ranges (`/etc/passwd`, `/etc/group`, `/etc/subuid`, `/etc/subgid`). It
//! claims one block of the range for its life (a lock file under [`LOCK_DIR`], held
//! with `flock`), so that daemons on one host, the embedded zygotes of `hatchery run`
//! among them, never hand out the same id. Within its block it hands ids out oldest
//! first, and takes one back only when the init of the sandbox that had it is reaped:
//! the init is PID 1 of the sandbox's pid namespace, so by then every process of the
//! sandbox is gone.
//!
//! Where an operator needs every sandbox on one known id (files a job writes into a
//! shared bind owned by a user of theirs), `serve --host-uid UID --host-gid GID` fixes
//! it, and every sandbox shares it. An unprivileged daemon may map only its own ids, so
//! its sandboxes all run as its own uid. Runs in the zygote's loop.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::sandbox::HostIds;

/// The range a root daemon takes its sandboxes' host ids from unless told otherwise:
/// 65,536 ids from 1,879,048,192 (`0x70000000`), above the ranges systemd gives users,
/// its dynamic users and its containers (which end at `0x6FFFFFFF`) and below its
/// "foreign" range.
pub const DEFAULT_RANGE: HostIdRange = HostIdRange {
    start: 0x7000_0000,
    count: 65_536,
};

/// Where daemons record the blocks of host ids they hold.
pub const LOCK_DIR: &str = "/run/hatchery/host-ids";

/// The ids a daemon claims of its range at least (more if it may run more sandboxes at
/// once): a few thousand ids, so that an id comes back into use only thousands of
/// sandboxes later, and sixteen daemons fit in the default range.
const BLOCK: u32 = 4096;

/// Ids no sandbox may have: root, the overflow id (`nobody`) and the two "-1"s.
const RESERVED: [u32; 4] = [0, 65_534, 65_535, u32::MAX];

/// A range of host ids: uids and gids of the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIdRange {
    /// The first id.
    pub start: u32,
    /// How many.
    pub count: u32,
}

impl HostIdRange {
    /// One past the last id.
    fn end(self) -> u64 {
        u64::from(self.start) + u64::from(self.count)
    }

    fn contains(self, id: u32) -> bool {
        (u64::from(self.start)..self.end()).contains(&u64::from(id))
    }

    fn overlaps(self, start: u64, count: u64) -> bool {
        u64::from(self.start) < start + count && start < self.end()
    }
}

impl fmt::Display for HostIdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start, self.count)
    }
}

impl std::str::FromStr for HostIdRange {
    type Err = String;

    /// `START:COUNT`, e.g. `1879048192:65536`.
    fn from_str(text: &str) -> Result<HostIdRange, String> {
        let (start, count) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not START:COUNT"))?;
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("{part:?} in {text:?} is not a number of 0 to 4294967295"))
        };
        let range = HostIdRange {
            start: number(start)?,
            count: number(count)?,
        };
        if range.count == 0 {
            return Err(format!("{text:?} holds no id"));
        }
        if range.end() > u64::from(u32::MAX) {
            return Err(format!("{text:?} goes past the last id, 4294967294"));
        }
        if let Some(id) = RESERVED.into_iter().find(|&id| range.contains(id)) {
            return Err(format!(
                "{text:?} holds {id}, which no sandbox may have (0 is root, 65534 nobody)"
            ));
        }
        Ok(range)
    }
}

/// Which host ids a daemon's sandboxes run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIdPolicy {
    /// Every sandbox on these ids (`serve --host-uid`, `--host-gid`; an unprivileged
    /// daemon's own ids).
    Fixed(HostIds),
    /// Each live sandbox its own uid and gid (the same number) from this range.
    Range(HostIdRange),
}

impl HostIdPolicy {
    /// Each sandbox its own ids from [`DEFAULT_RANGE`] for a root daemon; the daemon's
    /// own ids otherwise (an unprivileged user may map only those).
    pub fn default_for_daemon() -> HostIdPolicy {
        if nix::unistd::geteuid().is_root() {
            HostIdPolicy::Range(DEFAULT_RANGE)
        } else {
            HostIdPolicy::Fixed(HostIds {
                uid: nix::unistd::geteuid().as_raw(),
                gid: nix::unistd::getegid().as_raw(),
            })
        }
    }
}

/// Why a daemon cannot have the host ids it was given.
#[derive(Debug, thiserror::Error)]
pub enum HostIdError {
    /// Fixed ids would map to host root, which no sandbox may ever be.
    #[error("the sandboxes' host ids are {uid}:{gid}; host root (0) is never a sandbox's")]
    HostRoot {
        /// The host uid asked for.
        uid: u32,
        /// The host gid asked for.
        gid: u32,
    },
    /// An unprivileged daemon may map only its own ids.
    #[error(
        "--host-uid-range {0} needs a root daemon: an unprivileged one may map only its own ids"
    )]
    NeedsRoot(HostIdRange),
    /// The range holds an id the host already gives to someone.
    #[error(
        "--host-uid-range {range} holds {what} ({file}); give the sandboxes a range of their own"
    )]
    Taken {
        /// The range.
        range: HostIdRange,
        /// What it holds, e.g. `uid 1000 of the user alice`.
        what: String,
        /// The file that says so.
        file: &'static str,
    },
    /// Other daemons hold every block of the range.
    #[error(
        "every block of {size} host ids in --host-uid-range {range} is held by another \
         hatchery daemon (see {dir}); give this one a range of its own"
    )]
    Exhausted {
        /// The range.
        range: HostIdRange,
        /// The block size this daemon needs.
        size: u32,
        /// Where the claims are.
        dir: PathBuf,
    },
    /// The claim could not be recorded.
    #[error("cannot claim host ids in {dir}")]
    Claim {
        /// Where the claims are.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The host ids of a daemon's sandboxes: fixed, or a block of ids it holds for its
/// life, each bound to the sandbox that has it until that sandbox's init is reaped.
#[derive(Debug)]
pub struct HostIdPool {
    kind: Pool,
}

#[derive(Debug)]
enum Pool {
    Fixed(HostIds),
    Block {
        /// The claim, held (locked) for as long as the daemon runs.
        _claim: Flock<File>,
        /// The block's ids no sandbox has, the one free longest first.
        free: VecDeque<u32>,
        /// The id of each live sandbox, by the host pid of its init.
        taken: HashMap<i32, u32>,
    },
}

impl HostIdPool {
    /// The pool of `policy`. A range is checked against this host's users, groups and
    /// subordinate ranges, and a block of it claimed: `needed` ids at least (the most
    /// sandboxes the daemon may run at once).
    pub fn claim(policy: HostIdPolicy, needed: usize) -> Result<HostIdPool, HostIdError> {
        match policy {
            HostIdPolicy::Fixed(ids) if ids.uid == 0 || ids.gid == 0 => {
                Err(HostIdError::HostRoot {
                    uid: ids.uid,
                    gid: ids.gid,
                })
            }
            HostIdPolicy::Fixed(ids) => Ok(HostIdPool {
                kind: Pool::Fixed(ids),
            }),
            HostIdPolicy::Range(range) => {
                if !nix::unistd::geteuid().is_root() {
                    return Err(HostIdError::NeedsRoot(range));
                }
                check_on_this_host(range)?;
                let size = u32::try_from(needed).unwrap_or(u32::MAX).max(BLOCK);
                HostIdPool::claim_block(Path::new(LOCK_DIR), range, size)
            }
        }
    }

    /// Claims the first block of `size` ids of `range` (all of it, if smaller) that no
    /// live daemon holds, under `dir`.
    fn claim_block(dir: &Path, range: HostIdRange, size: u32) -> Result<HostIdPool, HostIdError> {
        let size = size.min(range.count);
        let failed = |source| HostIdError::Claim {
            dir: dir.to_path_buf(),
            source,
        };
        // Owner-only: a user who could lock a stale claim would keep its block from
        // every daemon.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
        // One daemon at a time looks and claims.
        let dir_lock = Flock::lock(File::open(dir).map_err(failed)?, FlockArg::LockExclusive)
            .map_err(|(_, errno)| failed(errno.into()))?;
        let held = held_blocks(dir).map_err(failed)?;
        let first = (0..range.count / size)
            .map(|k| u64::from(range.start) + u64::from(k) * u64::from(size))
            .find(|&first| {
                !held
                    .iter()
                    .any(|&(start, count)| start < first + u64::from(size) && first < start + count)
            })
            .ok_or_else(|| HostIdError::Exhausted {
                range,
                size,
                dir: dir.to_path_buf(),
            })? as u32;
        let path = dir.join(format!("{first}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(failed)?;
        let mut claim = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| failed(errno.into()))?;
        writeln!(claim, "{first} {size} {}", std::process::id()).map_err(failed)?;
        drop(dir_lock);
        tracing::debug!(first, size, "host ids claimed");
        Ok(HostIdPool {
            kind: Pool::Block {
                _claim: claim,
                free: (first..first + size).collect(),
                taken: HashMap::new(),
            },
        })
    }

    /// Ids for a sandbox about to be cloned; `None` when every id of the block is taken
    /// by a live sandbox. Give them back if the clone fails, or bind them to its init.
    pub fn take(&mut self) -> Option<HostIds> {
        match &mut self.kind {
            Pool::Fixed(ids) => Some(*ids),
            Pool::Block { free, .. } => free.pop_front().map(|id| HostIds { uid: id, gid: id }),
        }
    }

    /// Gives back ids no sandbox got (its clone failed).
    pub fn give_back(&mut self, ids: HostIds) {
        if let Pool::Block { free, .. } = &mut self.kind {
            free.push_back(ids.uid);
        }
    }

    /// Binds taken ids to the sandbox whose init is `pid`, until its reap.
    pub fn bind(&mut self, pid: i32, ids: HostIds) {
        if let Pool::Block { taken, .. } = &mut self.kind {
            taken.insert(pid, ids.uid);
        }
    }

    /// Takes note of a reaped child: the ids of the sandbox whose init it was come back,
    /// last in line.
    pub fn reaped(&mut self, pid: i32) {
        if let Pool::Block { free, taken, .. } = &mut self.kind {
            if let Some(id) = taken.remove(&pid) {
                free.push_back(id);
            }
        }
    }

    /// The owner of what every sandbox shares (the root templates): the fixed ids, or
    /// the daemon's own where each sandbox has its own.
    pub fn shared_owner(&self) -> HostIds {
        match self.kind {
            Pool::Fixed(ids) => ids,
            Pool::Block { .. } => HostIds {
                uid: nix::unistd::geteuid().as_raw(),
                gid: nix::unistd::getegid().as_raw(),
            },
        }
    }
}

/// The blocks live daemons hold under `dir`, as (first, count); claims whose daemon is
/// gone (their file no longer locked) are removed.
fn held_blocks(dir: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension() != Some(std::ffi::OsStr::new("lock")) {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            // Nobody holds it: a daemon that is gone.
            Ok(_stale) => {
                let _ = std::fs::remove_file(&path);
            }
            Err((mut file, _)) => {
                let mut text = String::new();
                file.read_to_string(&mut text)?;
                let mut numbers = text.split_whitespace().map(str::parse::<u64>);
                if let (Some(Ok(first)), Some(Ok(count))) = (numbers.next(), numbers.next()) {
                    held.push((first, count));
                }
            }
        }
    }
    Ok(held)
}

/// Checks `range` against this host's users, groups and subordinate ranges (a file
/// that is not there holds none).
fn check_on_this_host(range: HostIdRange) -> Result<(), HostIdError> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    check_against(
        range,
        &HostDatabases {
            passwd: read("/etc/passwd"),
            group: read("/etc/group"),
            subuid: read("/etc/subuid"),
            subgid: read("/etc/subgid"),
        },
    )
}

/// The host's id databases, as text.
struct HostDatabases {
    passwd: String,
    group: String,
    subuid: String,
    subgid: String,
}

/// Refuses a range that holds an id a user or group has, or that overlaps a subordinate
/// range given to a user (their containers' ids).
fn check_against(range: HostIdRange, db: &HostDatabases) -> Result<(), HostIdError> {
    let taken = |what: String, file| HostIdError::Taken { range, what, file };
    for (text, file, kind) in [
        (&db.passwd, "/etc/passwd", "uid"),
        (&db.group, "/etc/group", "gid"),
    ] {
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let Some(id) = fields.get(2).and_then(|id| id.parse::<u32>().ok()) else {
                continue;
            };
            if range.contains(id) {
                let owner = if kind == "uid" { "user" } else { "group" };
                return Err(taken(
                    format!("{kind} {id} of the {owner} {}", fields[0]),
                    file,
                ));
            }
        }
    }
    for (text, file) in [(&db.subuid, "/etc/subuid"), (&db.subgid, "/etc/subgid")] {
        for line in text.lines() {
            let fields: Vec<&str> = line.trim().split(':').collect();
            if let [owner, start, count] = fields[..] {
                if let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) {
                    if range.overlaps(start, count) {
                        return Err(taken(
                            format!("ids of {owner}'s subordinate range {start}:{count}"),
                            file,
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(passwd: &str, group: &str, subuid: &str) -> HostDatabases {
        HostDatabases {
            passwd: passwd.into(),
            group: group.into(),
            subuid: subuid.into(),
            subgid: String::new(),
        }
    }

    #[test]
    fn ranges_parse_and_refuse_reserved_ids() {
        let range: HostIdRange = "100000:65536".parse().unwrap();
        assert_eq!(
            range,
            HostIdRange {
                start: 100_000,
                count: 65_536
            }
        );
        assert_eq!(range.to_string(), "100000:65536");
        for bad in [
            "",
            "5",
            "a:1",
            "1:b",
            "1:0",
            "0:10",
            "65000:1000",
            "4294967290:10",
            "-1:5",
        ] {
            assert!(bad.parse::<HostIdRange>().is_err(), "{bad:?}");
        }
        let err = "65000:1000".parse::<HostIdRange>().unwrap_err();
        assert!(err.contains("65534"), "{err}");
        assert!(DEFAULT_RANGE.to_string().parse::<HostIdRange>().is_ok());
    }

    #[test]
    fn a_range_must_not_hold_a_users_or_groups_id_or_a_subordinate_range() {
        let range = HostIdRange {
            start: 200_000,
            count: 1000,
        };
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert!(check_against(range, &db(passwd, "", "")).is_ok());
        let err = check_against(range, &db("svc:x:200500:1::/:/bin/false\n", "", "")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--host-uid-range 200000:1000 holds uid 200500 of the user svc (/etc/passwd); \
             give the sandboxes a range of their own"
        );
        let err = check_against(range, &db("", "builders:x:200999:\n", "")).unwrap_err();
        assert!(
            err.to_string().contains("gid 200999 of the group builders"),
            "{err}"
        );
        let err =
            check_against(range, &db("", "", "alice:100000:65536\nbob:199000:1001\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("bob's subordinate range 199000:1001"),
            "{err}"
        );
        // Adjacent is not overlapping.
        assert!(check_against(range, &db("", "", "bob:199000:1000\ncarol:201000:10\n")).is_ok());
    }

    #[test]
    fn ids_come_back_only_at_the_reap_and_last_in_line() {
        let dir = tempdir();
        let range = HostIdRange {
            start: 300_000,
            count: 3,
        };
        let mut pool = HostIdPool::claim_block(&dir, range, BLOCK).unwrap();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_ne!(a, b);
        assert_eq!((a.uid, a.gid), (300_000, 300_000));
        pool.bind(11, a);
        pool.give_back(b);
        let c = pool.take().unwrap();
        assert_eq!(c.uid, 300_002, "the longest free first");
        pool.bind(12, c);
        assert_eq!(pool.take().unwrap().uid, 300_001);
        assert_eq!(pool.take(), None, "every id is held by a live sandbox");
        pool.reaped(99);
        assert_eq!(pool.take(), None, "a child that had no ids frees none");
        pool.reaped(11);
        assert_eq!(pool.take(), Some(a));
    }

    #[test]
    fn daemons_claim_disjoint_blocks_and_a_dead_daemons_block_is_free_again() {
        let dir = tempdir();
        let range = HostIdRange {
            start: 400_000,
            count: 8192,
        };
        let first = HostIdPool::claim_block(&dir, range, 4096).unwrap();
        let mut second = HostIdPool::claim_block(&dir, range, 4096).unwrap();
        assert_eq!(second.take().unwrap().uid, 404_096);
        let err = HostIdPool::claim_block(&dir, range, 4096).unwrap_err();
        assert!(matches!(err, HostIdError::Exhausted { .. }), "{err}");
        // Another range that overlaps a held block cannot have it.
        let overlapping = HostIdRange {
            start: 402_000,
            count: 4096,
        };
        assert!(HostIdPool::claim_block(&dir, overlapping, 4096).is_err());
        drop(first);
        let mut third = HostIdPool::claim_block(&dir, range, 4096).unwrap();
        assert_eq!(third.take().unwrap().uid, 400_000);
        assert_eq!(
            std::fs::read_dir(&*dir).unwrap().count(),
            2,
            "the stale claim is gone"
        );
    }

    #[test]
    fn fixed_ids_are_shared_but_never_root() {
        let ids = HostIds {
            uid: 47_000,
            gid: 47_001,
        };
        let mut pool = HostIdPool::claim(HostIdPolicy::Fixed(ids), 10).unwrap();
        assert_eq!((pool.take(), pool.take()), (Some(ids), Some(ids)));
        assert_eq!(pool.shared_owner(), ids);
        let root = HostIds {
            uid: 0,
            gid: 47_001,
        };
        assert!(matches!(
            HostIdPool::claim(HostIdPolicy::Fixed(root), 10),
            Err(HostIdError::HostRoot { .. })
        ));
    }

    /// A fresh directory under the system's temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hatchery-host-ids-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}
