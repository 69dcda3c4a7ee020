//! The compiled filter and its installation.
//!
//! Compiled in the zygote ([`SeccompPolicy::compile`](super::SeccompPolicy::compile)),
//! installed in the sandbox: by the workload as its last step before `execve`, so that
//! the filter need allow nothing of the setup, or, for hatchery's own policies, by a
//! warm-pool sandbox's init before it has a request, which takes the cost off the spawn
//! ([`CompiledSeccomp::fits_pooled_init`]). The installing process may share its
//! parent's memory until it execs, so [`CompiledSeccomp::install`] allocates nothing.

use nix::errno::Errno;
use seccompiler::BpfProgram;

use crate::sys::SysError;

/// The compiled filter: BPF programs ready to install, in installation order.
///
/// Cheap to clone; the zygote compiles it once and every sandbox installs the same
/// programs.
///
/// ```
/// let compiled = hatchery::seccomp::SeccompPolicy::default_policy().unwrap().compile().unwrap();
/// assert!(compiled.programs().iter().all(|program| !program.is_empty()));
/// ```
#[derive(Debug, Clone)]
pub struct CompiledSeccomp {
    programs: Vec<BpfProgram>,
    fits_pooled_init: bool,
}

impl CompiledSeccomp {
    /// The programs `compile` built, in installation order; `fits_pooled_init` says
    /// whether they come from one of hatchery's own policies.
    pub(super) fn new(programs: Vec<BpfProgram>, fits_pooled_init: bool) -> CompiledSeccomp {
        CompiledSeccomp {
            programs,
            fits_pooled_init,
        }
    }

    /// Whether a warm-pool sandbox's init may install this filter before it has a
    /// request, taking its cost off the spawn: true for hatchery's own policies
    /// (`default`, `strict`), which allow every call the init makes after it (receiving
    /// the request and its stdio, `dup3`, `chdir`, `setsid`, `setrlimit`, a pipe, the
    /// workload's `clone` without namespace flags, signal masks, a signalfd and its
    /// reads, `wait4`, `kill`, opening and reading `ns_last_pid`, `execve` in the
    /// workload); tests pin it. Another policy is installed by
    /// the workload last before `execve`, so that it need allow nothing of the setup.
    pub fn fits_pooled_init(&self) -> bool {
        self.fits_pooled_init
    }

    /// Installs the filters on the calling thread. Requires no_new_privs already set.
    /// Fails closed.
    ///
    /// The filters are inherited by every thread and process created afterwards. The
    /// sandbox sets no_new_privs as its own step so that a failure there is reported as
    /// that step; seccompiler sets it again, which is harmless. If a program after the
    /// first fails to install, the thread is left partly filtered and the error is
    /// returned: the caller must not exec.
    ///
    /// ```no_run
    /// let compiled = hatchery::seccomp::SeccompPolicy::default_policy().unwrap().compile().unwrap();
    /// nix::sys::prctl::set_no_new_privs().unwrap();
    /// compiled.apply().unwrap();
    /// assert_eq!(nix::unistd::chroot("/"), Err(nix::errno::Errno::EPERM));
    /// ```
    pub fn apply(&self) -> Result<(), SysError> {
        self.install()
            .map_err(|errno| SysError::new("seccomp(SECCOMP_SET_MODE_FILTER)", errno))
    }

    /// [`apply`](Self::apply), allocating nothing, not even for its error: fit for a
    /// child that shares its parent's memory until it execs. `EINVAL` stands for an
    /// error of seccompiler's own (not reachable: no program is empty, TSYNC is not
    /// asked for).
    pub fn install(&self) -> Result<(), Errno> {
        for program in &self.programs {
            seccompiler::apply_filter(program).map_err(|err| match err {
                seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
                    io.raw_os_error().map_or(Errno::EINVAL, Errno::from_raw)
                }
                _ => Errno::EINVAL,
            })?;
        }
        Ok(())
    }

    /// The BPF programs, in installation order.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::SeccompPolicy;

    /// Set in the environment of the re-executed test binary: `filtered` applies the
    /// default policy before probing, `control` probes without it.
    const PROBE_ENV: &str = "HATCHERY_SECCOMP_PROBE";

    const PROBE_PATH: &str = "/nonexistent-hatchery-seccomp-probe";

    /// The probe: runs in a fresh process (this test binary, re-executed), applies the
    /// policy unless it is the control run, tries blocked and allowed operations, prints
    /// one line per check and exits 0 only if all of them came out as expected.
    fn probe(filtered: bool) -> ! {
        use nix::sched::CloneFlags;
        use std::io::Write;
        use std::time::Instant;

        let mut failures = 0;
        let mut check = |what: &str, got: nix::Result<()>, want: nix::Result<()>| {
            let verdict = if got == want { "ok" } else { "FAIL" };
            if got != want {
                failures += 1;
            }
            println!("{verdict} {what}: got {got:?}, want {want:?}");
        };
        let blocked = |unfiltered: Errno| Err(if filtered { Errno::EPERM } else { unfiltered });
        // The harness has printed "test ... " without a newline.
        println!();

        if filtered {
            let started = Instant::now();
            let compiled = SeccompPolicy::default_policy().unwrap().compile().unwrap();
            let compiled_in = started.elapsed();
            check(
                "set_no_new_privs",
                nix::sys::prctl::set_no_new_privs(),
                Ok(()),
            );
            let started = Instant::now();
            let applied = compiled.apply().map_err(|err| err.errno());
            let applied_in = started.elapsed();
            check("apply", applied, Ok(()));
            println!("timing: compile {compiled_in:?}, apply {applied_in:?}");
        }
        check(
            "umount",
            nix::mount::umount(PROBE_PATH),
            blocked(Errno::ENOENT),
        );
        check(
            "chroot",
            nix::unistd::chroot(PROBE_PATH),
            blocked(Errno::ENOENT),
        );
        let unshare = nix::sched::unshare(CloneFlags::empty());
        check(
            "unshare(0)",
            unshare,
            if filtered { Err(Errno::EPERM) } else { Ok(()) },
        );
        if filtered {
            // Unfiltered this would fork; the child leaves at once.
            let clone3 = crate::sys::clone3_and_exit(0).map_err(|err| err.errno());
            check("clone3", clone3, Err(Errno::ENOSYS));
        }
        let thread = std::thread::spawn(|| 42).join();
        check(
            "thread",
            if thread.ok() == Some(42) {
                Ok(())
            } else {
                Err(Errno::EIO)
            },
            Ok(()),
        );
        let child = std::process::Command::new("/bin/true").status();
        let child = match child {
            Ok(status) if status.success() => Ok(()),
            Ok(_) => Err(Errno::ECHILD),
            Err(err) => Err(Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))),
        };
        check("spawn /bin/true", child, Ok(()));

        println!(
            "probe verdict: {}",
            if failures == 0 { "pass" } else { "fail" }
        );
        let _ = std::io::stdout().flush();
        std::process::exit(if failures == 0 { 0 } else { 1 })
    }

    #[test]
    fn default_policy_holds_in_a_child() {
        match std::env::var(PROBE_ENV).as_deref() {
            Ok("filtered") => probe(true),
            Ok("control") => probe(false),
            _ => {}
        }
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let test_name = format!("{module}::default_policy_holds_in_a_child");
        let exe = std::env::current_exe().unwrap();
        // The control run proves the probe can tell: without the filter the same calls
        // give other answers.
        for mode in ["control", "filtered"] {
            let output = std::process::Command::new(&exe)
                .args(["--exact", &test_name, "--nocapture", "--test-threads=1"])
                .env(PROBE_ENV, mode)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            println!("{mode} probe:\n{stdout}");
            assert!(
                output.status.success() && stdout.contains("probe verdict: pass"),
                "{mode} probe failed ({}):\n{stdout}\n{stderr}",
                output.status
            );
        }
    }
}

/// The filters a daemon loaded, by name: the first is the default, which a request that
/// names none gets; a request may pick another by its name
/// (`SandboxConfig::seccomp_policy`). Compiled once in the zygote, like each filter.
///
/// ```
/// use hatchery::seccomp::{CompiledPolicies, SeccompPolicy};
/// let strict = SeccompPolicy::strict_policy().unwrap().compile().unwrap();
/// let default = SeccompPolicy::default_policy().unwrap().compile().unwrap();
/// let policies = CompiledPolicies::new(vec![("strict".into(), strict), ("default".into(), default)]).unwrap();
/// assert_eq!(policies.default_name(), "strict");
/// assert!(policies.get(Some("default")).is_some());
/// assert!(policies.get(Some("other")).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct CompiledPolicies {
    named: Vec<(String, CompiledSeccomp)>,
}

impl CompiledPolicies {
    /// The policies in `named`, the first the default; `None` when it is empty or names
    /// one twice.
    pub fn new(named: Vec<(String, CompiledSeccomp)>) -> Option<CompiledPolicies> {
        let unique = named
            .iter()
            .enumerate()
            .all(|(i, (name, _))| named[..i].iter().all(|(other, _)| other != name));
        (!named.is_empty() && unique).then_some(CompiledPolicies { named })
    }

    /// The filter of `name`, or the default's for `None`.
    pub fn get(&self, name: Option<&str>) -> Option<&CompiledSeccomp> {
        match name {
            None => self.named.first().map(|(_, filter)| filter),
            Some(name) => self
                .named
                .iter()
                .find(|(own, _)| own == name)
                .map(|(_, filter)| filter),
        }
    }

    /// The default policy's name.
    pub fn default_name(&self) -> &str {
        &self.named[0].0
    }

    /// Every name, the default's first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(|(name, _)| name.as_str())
    }
}
