//! Capabilities: the bounding set, the ambient set, the securebits, and the
//! effective, permitted and inheritable sets (`capset`, `capget`).
//!
//! Runs in a sandbox's init, which drops every capability before its workload starts
//! and then asks the kernel whether any is left.

use nix::errno::Errno;

use super::SysError;

/// `prctl(PR_CAPBSET_DROP, cap)`.
pub fn capbset_drop(cap: u32) -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(SysError::new(
            format!("prctl(PR_CAPBSET_DROP, {cap})"),
            Errno::last(),
        ));
    }
    Ok(())
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
pub fn cap_ambient_clear_all() -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret == -1 {
        return Err(SysError::new(
            "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// `prctl(PR_SET_SECUREBITS, bits)`.
pub fn set_securebits(bits: u32) -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(SysError::new("prctl(PR_SET_SECUREBITS)", Errno::last()));
    }
    Ok(())
}

/// `struct __user_cap_header_struct` of `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct` of `<linux/capability.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, two data structs.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capget(2)` or `capset(2)` (`call`, named `name` in errors) on the calling thread's
/// sets, in the version-3 layout: capabilities 0-31 in `data[0]`, 32-63 in `data[1]`.
fn capabilities_call(
    call: libc::c_long,
    name: &'static str,
    data: &mut [CapData; 2],
) -> Result<(), SysError> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: version 3 reads (capset) or fills (capget) exactly two data structs, both
    // valid and writable for the call, and the structs have the kernel's layout.
    let ret = unsafe { libc::syscall(call, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    if ret == -1 {
        return Err(SysError::new(name, Errno::last()));
    }
    Ok(())
}

/// `capset(2)` with every set (effective, permitted, inheritable) empty.
pub fn capset_empty() -> Result<(), SysError> {
    capabilities_call(libc::SYS_capset, "capset", &mut [CapData::default(); 2])
}

/// `capget(2)`: whether any capability is left in the effective, permitted or
/// inheritable set of the calling thread (all 64 bits of each).
pub fn any_capability_left() -> Result<bool, SysError> {
    let mut data = [CapData::default(); 2];
    capabilities_call(libc::SYS_capget, "capget", &mut data)?;
    Ok(data
        .iter()
        .any(|d| d.effective != 0 || d.permitted != 0 || d.inheritable != 0))
}

/// `prctl(PR_CAPBSET_READ, cap)`: whether `cap` is in the bounding set.
pub fn capbset_has(cap: u32) -> Result<bool, SysError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(SysError::new(
            format!("prctl(PR_CAPBSET_READ, {cap})"),
            Errno::last(),
        ));
    }
    Ok(ret == 1)
}
