//! Child side: drops every capability from every set and locks the securebits, then
//! checks the result in `/proc/self/status` (the kernel may know capabilities that the
//! `caps` crate does not).

use nix::errno::Errno;

use crate::sys::{self, Context, SysError};

/// Securebits that keep the sandbox from ever regaining capabilities: no root magic on
/// exec or setuid, no ambient raise, and all of it locked.
const LOCKED_SECUREBITS: u32 = {
    const NOROOT: u32 = 1 << 0;
    const NOROOT_LOCKED: u32 = 1 << 1;
    const NO_SETUID_FIXUP: u32 = 1 << 2;
    const NO_SETUID_FIXUP_LOCKED: u32 = 1 << 3;
    const KEEP_CAPS_LOCKED: u32 = 1 << 5;
    const NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
    const NO_CAP_AMBIENT_RAISE_LOCKED: u32 = 1 << 7;
    NOROOT
        | NOROOT_LOCKED
        | NO_SETUID_FIXUP
        | NO_SETUID_FIXUP_LOCKED
        | KEEP_CAPS_LOCKED
        | NO_CAP_AMBIENT_RAISE
        | NO_CAP_AMBIENT_RAISE_LOCKED
};

/// Locks the securebits and empties the bounding set, up to the running kernel's
/// `last_cap`: nothing the sandbox ever execs can gain a capability. The process keeps
/// its own capabilities until [`drop_remaining`].
///
/// Both need `CAP_SETPCAP`, so they go before the effective set is emptied. They do not
/// depend on the request: a warm-pool sandbox does them before it has one.
pub fn drop_bounding(last_cap: u32) -> Result<(), SysError> {
    sys::set_securebits(LOCKED_SECUREBITS)?;
    for cap in 0..=last_cap {
        sys::capbset_drop(cap)?;
    }
    Ok(())
}

/// Empties the ambient, inheritable, permitted and effective sets: after
/// [`drop_bounding`], the last of the capabilities.
pub fn drop_remaining() -> Result<(), SysError> {
    sys::cap_ambient_clear_all()?;
    sys::capset_empty()?;
    Ok(())
}

/// Sets `no_new_privs`: no exec can grant privileges from here on.
pub fn set_no_new_privs() -> Result<(), SysError> {
    nix::sys::prctl::set_no_new_privs().op("prctl(PR_SET_NO_NEW_PRIVS)")
}

/// Fails unless every capability set is empty and `no_new_privs` is set.
pub fn verify_dropped() -> Result<(), SysError> {
    let status =
        std::fs::read_to_string("/proc/self/status").op_path("read", "/proc/self/status")?;
    let mut seen = 0;
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let ok = match key {
            "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                value.bytes().all(|b| b == b'0')
            }
            "NoNewPrivs" => value == "1",
            _ => continue,
        };
        if !ok {
            return Err(SysError::with_path(
                format!("verify {key} is cleared"),
                "/proc/self/status",
                Errno::EPERM,
            ));
        }
        seen += 1;
    }
    if seen != 6 {
        return Err(SysError::with_path(
            "verify capabilities",
            "/proc/self/status",
            Errno::ENODATA,
        ));
    }
    Ok(())
}
