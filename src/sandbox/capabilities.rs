//! Sandbox init side: drops every capability from every set and locks the securebits,
//! then asks the kernel whether any is left (the spawn fails closed if one is).

use crate::protocol::SetupFailure;
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

/// Fails unless every capability set is empty and `no_new_privs` is set, asking the
/// kernel itself: `capget` for the effective, permitted and inheritable sets (64 bits
/// each, whatever the kernel knows), `PR_CAPBSET_READ` for each capability up to the
/// running kernel's `last_cap`, `PR_GET_NO_NEW_PRIVS`. The ambient set needs no check
/// of its own: the kernel keeps it within permitted ∩ inheritable, both empty here.
pub fn verify_dropped(last_cap: u32) -> Result<(), SetupFailure> {
    let failed = |what: &str| Err(SetupFailure::Verification(what.into()));
    if sys::any_capability_left()? {
        return failed("a capability is left in the effective, permitted or inheritable set");
    }
    for cap in 0..=last_cap {
        if sys::capbset_has(cap)? {
            return failed("a capability is left in the bounding set");
        }
    }
    if !nix::sys::prctl::get_no_new_privs().op("prctl(PR_GET_NO_NEW_PRIVS)")? {
        return failed("no_new_privs is not set");
    }
    Ok(())
}
