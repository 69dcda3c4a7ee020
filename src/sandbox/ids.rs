//! User and group ids: the zygote writes the child's id maps (parent half); the child
//! drops its supplementary groups and takes the sandbox ids (child half).

use nix::unistd::{Gid, Uid};

use super::HostIds;
use crate::protocol::SandboxConfig;
use crate::sys::{Context, SysError};

/// Zygote side: maps the sandbox `uid`/`gid` to the host ids, one id each, so that no
/// other id (host root above all) exists inside.
///
/// A root daemon leaves `setgroups` allowed so the child can drop the supplementary
/// groups it inherited; an unprivileged one must deny it before writing `gid_map`.
pub fn write_maps(
    pid: i32,
    uid: u32,
    gid: u32,
    host: HostIds,
    privileged: bool,
) -> Result<(), SysError> {
    let uid_map = format!("/proc/{pid}/uid_map");
    std::fs::write(&uid_map, format!("{uid} {} 1\n", host.uid)).op_path("write", &uid_map)?;
    if !privileged {
        let setgroups = format!("/proc/{pid}/setgroups");
        std::fs::write(&setgroups, "deny").op_path("write", &setgroups)?;
    }
    let gid_map = format!("/proc/{pid}/gid_map");
    std::fs::write(&gid_map, format!("{gid} {} 1\n", host.gid)).op_path("write", &gid_map)?;
    Ok(())
}

/// Child side: drops the supplementary groups inherited from the zygote (they would still
/// count on the host) and switches to the sandbox ids.
///
/// Capabilities survive the switch: the kernel clears them on a setuid away from the
/// namespace's root, and this namespace has no root mapped. They are dropped explicitly
/// later, after the mounts.
pub fn become_sandbox_user(config: &SandboxConfig, privileged: bool) -> Result<(), SysError> {
    if privileged {
        nix::unistd::setgroups(&[]).op("setgroups")?;
    }
    let (uid, gid) = (Uid::from_raw(config.uid), Gid::from_raw(config.gid));
    nix::unistd::setresgid(gid, gid, gid).op("setresgid")?;
    nix::unistd::setresuid(uid, uid, uid).op("setresuid")?;
    Ok(())
}
