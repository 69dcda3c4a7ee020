//! What to change when a sandbox cannot be created for a known reason of the machine,
//! not of the request: the traps of running the daemon in a container (a seccomp profile
//! that refuses `clone3` or namespace flags, Docker's masked `/proc`, an AppArmor profile
//! that refuses mounts) and user namespaces switched off on the host.
//!
//! Runs in the zygote, when a sandbox fails to start or its init reports a failed setup
//! step: the message the client gets (and the daemon logs) ends with the hint. The wire
//! format does not change; the hint is part of the error's text.

use nix::errno::Errno;

use crate::sys::SysError;

/// The facts of the machine a hint depends on, read when a failure needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// `user.max_user_namespaces` (None if unreadable).
    pub max_user_namespaces: Option<u64>,
    /// Debian's `kernel.unprivileged_userns_clone`, where the kernel has it.
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns`, where the kernel has it.
    pub apparmor_restricts_userns: Option<u64>,
    /// Whether AppArmor is enabled.
    pub apparmor_enabled: bool,
    /// How many seccomp filters the daemon itself runs under (a container's, usually).
    pub seccomp_filters: u32,
    /// Whether the daemon runs as root.
    pub root: bool,
    /// Whether something is mounted below the daemon's `/proc` (Docker masks paths so).
    pub proc_has_submounts: bool,
    /// What runs the daemon, so that a hint names the setting in its words.
    pub manager: Manager,
}

/// What runs the daemon, as far as it can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Manager {
    /// Nothing it recognises (a shell, a test).
    #[default]
    Unknown,
    /// A systemd service (`INVOCATION_ID` is set).
    Systemd,
    /// A Docker or Podman container (`/.dockerenv`, `/run/.containerenv`).
    Container,
    /// A Kubernetes pod (`KUBERNETES_SERVICE_HOST` is set).
    Kubernetes,
}

impl Manager {
    /// The manager of this process.
    pub fn of_this_process() -> Manager {
        // The nearest manager first: a systemd service (even inside a container) has
        // its unit's options to change.
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            Manager::Kubernetes
        } else if std::env::var_os("INVOCATION_ID").is_some() {
            Manager::Systemd
        } else if std::path::Path::new("/.dockerenv").exists()
            || std::path::Path::new("/run/.containerenv").exists()
        {
            Manager::Container
        } else {
            Manager::Unknown
        }
    }
}

impl Machine {
    /// Reads the facts from `/proc` and `/sys`.
    pub fn read() -> Machine {
        let number = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse().ok())
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Machine {
            max_user_namespaces: number("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: number("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restricts_userns: number(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
            apparmor_enabled: std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|text| text.trim() == "Y"),
            seccomp_filters: status
                .lines()
                .find_map(|line| line.strip_prefix("Seccomp_filters:"))
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or(0),
            root: nix::unistd::geteuid().is_root(),
            // Field 5 of each mountinfo line is the mount point.
            proc_has_submounts: mountinfo.lines().any(|line| {
                line.split(' ')
                    .nth(4)
                    .is_some_and(|point| point.starts_with("/proc/"))
            }),
            manager: Manager::of_this_process(),
        }
    }
}

/// The hint for `error` on `machine`, if the failure is one of the known traps.
///
/// ```
/// use hatchery::SysError;
/// use hatchery::zygote::diagnose::{hint, Machine};
/// let error = SysError::new("clone3", nix::errno::Errno::ENOSYS);
/// let text = hint(&error, &Machine { seccomp_filters: 1, ..Machine::default() }).unwrap();
/// assert!(text.contains("--security-opt seccomp=docker/seccomp.json"));
/// ```
pub fn hint(error: &SysError, machine: &Machine) -> Option<String> {
    let errno = error.errno();
    let op = error.op.as_str();
    if op == "clone3" {
        return clone_hint(errno, machine);
    }
    if op == "mount(proc)" && errno == Errno::EPERM && machine.proc_has_submounts {
        let fix = match machine.manager {
            Manager::Systemd => {
                "as systemd's ProtectKernelLogs=, ProtectKernelTunables=, ProtectProc= and \
                 ProcSubset= do: remove them from the daemon's unit (deploy/systemd/\
                 hatchery.service has none; `systemctl cat hatchery` shows what is set)"
            }
            Manager::Kubernetes => {
                "as the container runtime does: give the daemon's container \
                 securityContext.procMount: Unmasked, which needs hostUsers: false in the \
                 pod"
            }
            Manager::Container | Manager::Unknown => {
                "as Docker does: run the container with --security-opt \
                 systempaths=unconfined (Kubernetes: procMount: Unmasked; systemd: no \
                 ProtectKernelLogs= or ProtectKernelTunables=)"
            }
        };
        return Some(format!(
            "the kernel refuses a fresh /proc while paths of the daemon's own /proc are \
             masked by mounts, {fix}; see docs/deploy.md"
        ));
    }
    if op.starts_with("setns") && errno == Errno::EPERM {
        return Some(
            "the daemon cannot enter the sandbox's network namespace to configure its veth: \
             the kernel allows that only with CAP_SYS_ADMIN in the daemon's own user \
             namespace, which a container does not have (and its seccomp profile refuses \
             setns); run a daemon with --veth-pool on the host; see docs/deploy.md"
                .into(),
        );
    }
    let mounting = op.starts_with("mount") || op == "pivot_root" || op == "umount2";
    if mounting && matches!(errno, Errno::EPERM | Errno::EACCES) {
        if machine.seccomp_filters > 0 {
            return Some(format!(
                "{op} was refused and the daemon runs under a seccomp filter (a \
                 container's): Docker's default profile refuses mounts; use --security-opt \
                 seccomp=docker/seccomp.json; see docs/deploy.md"
            ));
        }
        if machine.apparmor_enabled {
            return Some(format!(
                "{op} was refused and AppArmor is enabled: a container's AppArmor profile \
                 (Docker's docker-default) refuses mounts; run with --security-opt \
                 apparmor=unconfined or a profile that allows them; see docs/deploy.md"
            ));
        }
    }
    None
}

/// Why creating the namespaces failed, when the machine says so.
fn clone_hint(errno: Errno, machine: &Machine) -> Option<String> {
    if errno == Errno::ENOSYS {
        let filtered = if machine.seccomp_filters > 0 {
            "the daemon runs under a seccomp filter (a container's) that answers clone3 with \
             ENOSYS, as Docker's default profile and older ones do"
        } else {
            "this kernel has no clone3 (Linux 5.3 or later is needed)"
        };
        return Some(format!(
            "{filtered}: run the container with --security-opt seccomp=docker/seccomp.json; \
             see docs/deploy.md"
        ));
    }
    if !matches!(errno, Errno::EPERM | Errno::EACCES | Errno::ENOSPC) {
        return None;
    }
    if machine.max_user_namespaces == Some(0) {
        return Some(
            "user namespaces are disabled: sysctl user.max_user_namespaces is 0; set it \
             above 0 (sysctl -w user.max_user_namespaces=10000)"
                .into(),
        );
    }
    if !machine.root && machine.unprivileged_userns_clone == Some(0) {
        return Some(
            "unprivileged user namespaces are disabled: sysctl \
             kernel.unprivileged_userns_clone is 0; set it to 1 or run the daemon as root"
                .into(),
        );
    }
    if !machine.root && machine.apparmor_restricts_userns == Some(1) {
        return Some(
            "AppArmor restricts unprivileged user namespaces \
             (kernel.apparmor_restrict_unprivileged_userns = 1): run the daemon as root or \
             under an AppArmor profile that allows userns"
                .into(),
        );
    }
    if machine.seccomp_filters > 0 {
        return Some(
            "creating namespaces was refused and the daemon runs under a seccomp filter (a \
             container's): Docker's default profile refuses namespace flags without \
             CAP_SYS_ADMIN; use --security-opt seccomp=docker/seccomp.json; see \
             docs/deploy.md"
                .into(),
        );
    }
    None
}

/// `message`, followed by the hint for `error` on this machine, if there is one.
pub fn with_hint(message: String, error: &SysError) -> String {
    match hint(error, &Machine::read()) {
        Some(hint) => format!("{message} (hint: {hint})"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone3(errno: Errno, machine: Machine) -> Option<String> {
        hint(&SysError::new("clone3", errno), &machine)
    }

    #[test]
    fn a_refused_setns_for_a_veth_names_the_capability() {
        let error = SysError::new("setns(pidfd, CLONE_NEWNET)", Errno::EPERM);
        let text = hint(&error, &Machine::default()).expect("a hint");
        assert!(text.contains("CAP_SYS_ADMIN"), "{text}");
        let other = SysError::new("setns(pidfd, CLONE_NEWNET)", Errno::EINVAL);
        assert_eq!(hint(&other, &Machine::default()), None);
    }

    #[test]
    fn clone3_enosys_names_the_profile() {
        let in_container = Machine {
            seccomp_filters: 1,
            ..Machine::default()
        };
        let text = clone3(Errno::ENOSYS, in_container).unwrap();
        assert!(text.contains("seccomp=docker/seccomp.json"), "{text}");
        assert!(text.contains("ENOSYS"), "{text}");
        let old_kernel = clone3(Errno::ENOSYS, Machine::default()).unwrap();
        assert!(old_kernel.contains("5.3"), "{old_kernel}");
    }

    #[test]
    fn userns_switched_off_is_named_before_a_filter() {
        let machine = Machine {
            max_user_namespaces: Some(0),
            seccomp_filters: 1,
            ..Machine::default()
        };
        let text = clone3(Errno::ENOSPC, machine).unwrap();
        assert!(text.contains("user.max_user_namespaces is 0"), "{text}");

        let debian = Machine {
            max_user_namespaces: Some(1000),
            unprivileged_userns_clone: Some(0),
            ..Machine::default()
        };
        let text = clone3(Errno::EPERM, debian.clone()).unwrap();
        assert!(text.contains("kernel.unprivileged_userns_clone"), "{text}");
        // Root is not affected by that sysctl.
        let root = Machine {
            root: true,
            ..debian
        };
        assert_eq!(clone3(Errno::EPERM, root), None);

        let ubuntu = Machine {
            apparmor_restricts_userns: Some(1),
            ..Machine::default()
        };
        let text = clone3(Errno::EACCES, ubuntu).unwrap();
        assert!(
            text.contains("apparmor_restrict_unprivileged_userns"),
            "{text}"
        );
    }

    #[test]
    fn clone3_eperm_under_a_filter_names_the_profile() {
        let machine = Machine {
            max_user_namespaces: Some(1000),
            seccomp_filters: 2,
            ..Machine::default()
        };
        let text = clone3(Errno::EPERM, machine).unwrap();
        assert!(text.contains("seccomp=docker/seccomp.json"), "{text}");
        // Other errnos are the request's or the machine's business, not a trap.
        assert_eq!(clone3(Errno::ENOMEM, Machine::default()), None);
        assert_eq!(clone3(Errno::EPERM, Machine::default()), None);
    }

    #[test]
    fn masked_proc_names_systempaths() {
        let error = SysError::with_path("mount(proc)", "/proc", Errno::EPERM);
        let masked = Machine {
            proc_has_submounts: true,
            seccomp_filters: 1,
            ..Machine::default()
        };
        let text = hint(&error, &masked).unwrap();
        assert!(text.contains("systempaths=unconfined"), "{text}");
        // Under systemd, in systemd's words.
        let systemd = Machine {
            manager: Manager::Systemd,
            ..masked.clone()
        };
        let text = hint(&error, &systemd).unwrap();
        assert!(text.contains("ProtectKernelLogs="), "{text}");
        assert!(!text.contains("systempaths"), "{text}");
        let kubernetes = Machine {
            manager: Manager::Kubernetes,
            ..masked.clone()
        };
        let text = hint(&error, &kubernetes).unwrap();
        assert!(
            text.contains("procMount: Unmasked") && text.contains("hostUsers: false"),
            "{text}"
        );
        // Without masking mounts, an EPERM there means something else: the filter.
        let text = hint(
            &error,
            &Machine {
                proc_has_submounts: false,
                ..masked
            },
        )
        .unwrap();
        assert!(text.contains("seccomp=docker/seccomp.json"), "{text}");
    }

    #[test]
    fn mounts_refused_by_apparmor_name_it() {
        let error = SysError::with_path("mount", "/", Errno::EACCES);
        let machine = Machine {
            apparmor_enabled: true,
            ..Machine::default()
        };
        let text = hint(&error, &machine).unwrap();
        assert!(text.contains("apparmor=unconfined"), "{text}");
        assert_eq!(hint(&error, &Machine::default()), None);
        // Errors of other operations get no hint.
        let exec = SysError::new("execve", Errno::EACCES);
        assert_eq!(hint(&exec, &machine), None);
    }

    #[test]
    fn this_machine_reads() {
        let machine = Machine::read();
        assert!(machine.max_user_namespaces.is_some(), "{machine:?}");
    }
}
