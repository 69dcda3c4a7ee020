//! Tests only: what the fake cgroup trees of [`super::v1`] and [`super::v2`] share, on a
//! temporary directory.

use std::path::Path;

use super::CgroupLimits;

/// `rmdir` on a fake tree: refused while the cgroup has processes or children.
pub(super) fn fake_rmdir(path: &Path) -> std::io::Result<()> {
    let procs = std::fs::read_to_string(path.join("cgroup.procs"))?;
    let has_children = std::fs::read_dir(path)?.any(|e| e.unwrap().path().is_dir());
    if !procs.trim().is_empty() || has_children {
        return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
    }
    std::fs::remove_dir_all(path)
}

/// A file's text; a missing file fails the test, naming it.
pub(super) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A limit for each controller.
pub(super) const ALL_LIMITS: CgroupLimits = CgroupLimits {
    memory_bytes: Some(32 << 20),
    pids: Some(64),
    cpu_millicores: Some(1500),
};
