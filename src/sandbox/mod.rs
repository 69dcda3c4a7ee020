//! The sandbox a child runs in: the zygote's half (clone, id maps) and the child's half
//! (the setup recipe in `init`, whose header is the one account of the setup's order,
//! then the workload's last steps and `execve` in `workload`).
//!
//! [`Sandboxer`] is built once in the zygote with everything that can be prepared ahead
//! (the compiled seccomp filter, the host ids, the last capability number), and
//! [`Sandboxer::start`] starts one sandbox per request.

mod capabilities;
pub mod channel;
mod commands;
pub mod entry;
mod exec;
mod ids;
mod init;
mod mounts;
mod root;
mod root_template;
pub mod spare_namespaces;
pub mod timeline;
pub mod warm;
mod workload;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use crate::limits::cgroup::{CgroupError, SandboxCgroup};
use crate::protocol::{Layer, SandboxConfig, SetupFailure, SetupStep, SpawnRequest, Stdio};
use crate::seccomp::CompiledPolicies;
use crate::sys::{self, Context, SingleThreaded, SysError, ThreadCounter, Threads};
use root_template::RootTemplate;

pub use channel::{CommandFailure, FromSandbox, Pending, WorkloadUsage, ZygoteEnd};
pub use entry::{EntryCall, Workload};
pub use spare_namespaces::SpareNamespaces;

/// A failed setup step, sent by the sandbox init to the zygote (which passes its parts on
/// to the client as [`ErrorKind::Setup`](crate::protocol::ErrorKind::Setup)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("sandbox setup step \"{step}\" failed")]
pub struct SetupError {
    /// The step.
    pub step: SetupStep,
    /// What went wrong in it.
    #[source]
    pub error: SetupFailure,
}

/// Exit code of an init (or an entry's workload) whose setup failed: the zygote reports
/// the typed error instead, or that the sandbox ended during its setup.
const SETUP_FAILED: i32 = 125;

/// Runs one step of the recipe: its failure names the step, and its success notes the
/// step's end on the timeline, so that a failure's label and a timing cannot disagree.
/// Every step of the init runs through here; the workload's own last steps, which may
/// not allocate, have their twin in `init::workload_step`.
fn step<T, E: Into<SetupFailure>>(
    step: SetupStep,
    run: impl FnOnce() -> Result<T, E>,
) -> Result<T, SetupError> {
    match run() {
        Ok(done) => {
            timeline::mark(step);
            Ok(done)
        }
        Err(error) => Err(SetupError {
            step,
            error: error.into(),
        }),
    }
}

/// The ids a sandbox's workload runs as on the host, outside its user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIds {
    /// Host uid the sandbox uid maps to.
    pub uid: u32,
    /// Host gid the sandbox gid maps to.
    pub gid: u32,
}

/// Everything the zygote prepares once and every sandbox uses.
#[derive(Debug)]
pub struct Sandboxer {
    seccomp: CompiledPolicies,
    privileged: bool,
    last_cap: u32,
    dev_null: OwnedFd,
    /// The signals a sandbox's init resets to their default disposition: those not at
    /// their default in this process (see [`Sandboxer::note_signal_dispositions`]), or
    /// every one until they are noted.
    signals_to_reset: Vec<i32>,
    /// The roots (and `/dev`) sandboxes attach a copy of, where they could be built.
    root_templates: Option<root_template::RootTemplates>,
    threads: ThreadCounter,
}

/// A sandbox whose init has been cloned and released; the workload is not yet exec'd.
#[derive(Debug)]
pub struct Started {
    /// Host pid of the sandbox init.
    pub pid: i32,
    /// A pidfd of the sandbox init.
    pub pidfd: OwnedFd,
    /// The zygote's end of the sync channel.
    pub channel: ZygoteEnd,
    /// The client's ends of the pipes, in stdin, stdout, stderr order, then the read
    /// end of an entry's result pipe.
    pub pipes: [Option<OwnedFd>; 4],
}

/// Why a sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The zygote has more than one thread, so it must not fork.
    #[error("the zygote has {0} threads; it must be single-threaded to fork safely")]
    NotSingleThreaded(usize),
    /// A system call on the zygote's side failed.
    #[error("starting the sandbox failed")]
    Sys(#[source] SysError),
    /// The sandbox could not be placed in its cgroup.
    #[error("placing the sandbox in its cgroup failed")]
    Cgroup(#[source] CgroupError),
    /// The request names more passed fds than came with it (the daemon checks the count
    /// when it admits a request, so this is a bug of the daemon's).
    #[error("the request names more passed fds than came with it")]
    MissingPassedFd,
}

/// Why what every sandbox shares could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// `/proc/sys/kernel/cap_last_cap` does not hold a capability number, so the
    /// bounding set cannot be emptied up to the kernel's last capability.
    #[error("/proc/sys/kernel/cap_last_cap holds {0:?}, not a capability number")]
    LastCapability(String),
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

impl From<SysError> for StartError {
    fn from(e: SysError) -> Self {
        StartError::Sys(e)
    }
}

impl Sandboxer {
    /// Prepares what every sandbox shares: the compiled seccomp filters and the root
    /// templates, whose directories belong to `owner` on the host.
    pub fn new(seccomp: CompiledPolicies, owner: HostIds) -> Result<Sandboxer, PrepareError> {
        let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .op_path("read", "/proc/sys/kernel/cap_last_cap")?;
        let last_cap = text
            .trim()
            .parse()
            .map_err(|_| PrepareError::LastCapability(text.trim().to_string()))?;
        let dev_null = nix::fcntl::open(
            "/dev/null",
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .op_path("open", "/dev/null")?;
        Ok(Sandboxer {
            seccomp,
            privileged: nix::unistd::geteuid().is_root(),
            last_cap,
            dev_null,
            signals_to_reset: sys::signals_with_disposition().collect(),
            threads: ThreadCounter::open()?,
            root_templates: match root_template::RootTemplates::build(owner) {
                Ok(template) => Some(template),
                Err(e) => {
                    tracing::info!(error = %e, "no root template: each sandbox builds its own root and /dev");
                    None
                }
            },
        })
    }

    /// Replaces the compiled seccomp policies (a reload): sandboxes cloned from now on
    /// get them.
    pub fn set_seccomp(&mut self, seccomp: CompiledPolicies) {
        self.seccomp = seccomp;
    }

    /// The seccomp policies a request may pick from.
    pub fn seccomp_policies(&self) -> &CompiledPolicies {
        &self.seccomp
    }

    /// Notes which signals this process does not leave at their default disposition
    /// (ignored or caught), so that each sandbox's init resets only those rather than
    /// all sixty-odd. Called when serving starts: from then on only the serving loop
    /// runs in the process (a zygote refuses to clone while it has other threads), and
    /// it changes no disposition. If they cannot be read, every one is still reset.
    pub fn note_signal_dispositions(&mut self) {
        // The list of signals an init holds, made here once rather than in
        // every init (where allocating it copies pages shared with the zygote).
        init::held();
        match sys::signals_not_default() {
            Ok(signals) => self.signals_to_reset = signals,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the signal dispositions; sandboxes reset them all")
            }
        }
    }

    /// Clones a sandbox for `request`, writes its id maps and releases it to run its setup.
    ///
    /// `passed` holds the client's fds for [`Stdio::Fd`] streams, in stream order. The
    /// outcome of the setup (exec'd or failed) arrives later on [`Started::channel`].
    /// `workload` says whether the sandbox execs the request's program or runs an entry
    /// (forked, with the zygote's memory). Its network namespace is one of `spares` when
    /// one is ready. The caller must be single-threaded; this is checked, and refused
    /// otherwise.
    pub fn start(
        &self,
        request: &SpawnRequest,
        passed: Vec<OwnedFd>,
        cgroup: Option<&SandboxCgroup>,
        workload: Workload,
        spares: Option<&mut SpareNamespaces>,
        host: HostIds,
    ) -> Result<Started, StartError> {
        let single = self.check_single_threaded()?;
        for layer in &request.sandbox.opt_out {
            tracing::warn!(layer = layer.name(), "request switches off a sandbox layer");
        }

        let (workload_stdio, mut pipes) = self.stdio(request.stdio(), passed)?;
        let job = match workload {
            Workload::Exec => init::Job::Exec,
            Workload::Sandbox => init::Job::Sandbox,
            Workload::Entry(call) => {
                // An entry's result travels on a pipe of its own, apart from what it prints.
                let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).op("pipe2")?;
                pipes[3] = Some(read);
                init::Job::Entry {
                    call,
                    result: write,
                }
            }
        };
        let (zygote_end, sandbox_end) = channel::pair()?;
        let clone_into = cgroup.and_then(SandboxCgroup::clone_into_fd);
        let template = self.root_template(&request.sandbox);
        timeline::start();
        match clone(single, &request.sandbox, clone_into, spares)? {
            sys::Cloned::Child(process) => {
                drop(zygote_end);
                init::run(
                    process,
                    self,
                    template.as_deref().map(RootTemplate::fd),
                    request,
                    workload_stdio,
                    sandbox_end,
                    job,
                )
            }
            sys::Cloned::Parent { pid, pidfd } => {
                drop(sandbox_end);
                drop(workload_stdio);
                // The decoded arguments and the result pipe's write end are the child's now.
                drop(job);
                let started = Started {
                    pid,
                    pidfd,
                    channel: zygote_end,
                    pipes,
                };
                // In its cgroup before it starts its setup, so that every process it
                // will ever start is counted and limited.
                if let Some(cgroup) = cgroup.filter(|_| clone_into.is_none()) {
                    if let Err(e) = cgroup.add(pid) {
                        let _ = sys::pidfd_send_signal(started.pidfd.as_fd(), libc::SIGKILL);
                        return Err(StartError::Cgroup(e));
                    }
                }
                self.release(&started, &request.sandbox, host)?;
                Ok(started)
            }
        }
    }

    /// The root template for a sandbox of `config`, if the zygote has templates.
    fn root_template(&self, config: &SandboxConfig) -> Option<Arc<RootTemplate>> {
        self.root_templates
            .as_ref()
            .map(|templates| templates.for_sandbox(config))
    }

    /// Starts the helper that makes network and IPC namespaces ahead (see [`spare_namespaces`]). The
    /// caller must be single-threaded; this is checked, and refused otherwise.
    pub fn start_spare_namespaces(&self) -> Result<SpareNamespaces, StartError> {
        let single = self.check_single_threaded()?;
        Ok(SpareNamespaces::start(single, self.dev_null.as_fd())?)
    }

    /// The workload's ends of its stdio, and the client's ends of the pipes (the fourth,
    /// an entry's result pipe, left empty), for `request`'s streams (also a persistent
    /// sandbox's command's); `passed` holds the client's fds for [`Stdio::Fd`] streams.
    pub fn stdio(
        &self,
        request: [&Stdio; 3],
        mut passed: Vec<OwnedFd>,
    ) -> Result<([OwnedFd; 3], [Option<OwnedFd>; 4]), StartError> {
        passed.reverse();
        let mut pipes: [Option<OwnedFd>; 4] = [None, None, None, None];
        let mut workload_end = |slot: usize, stdio: &Stdio| -> Result<OwnedFd, StartError> {
            Ok(match stdio {
                Stdio::Null => self.dev_null.try_clone().op("dup(/dev/null)")?,
                Stdio::Fd(_) => passed.pop().ok_or(StartError::MissingPassedFd)?,
                Stdio::Pipe => {
                    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).op("pipe2")?;
                    let (ours, theirs) = if slot == 0 {
                        (read, write)
                    } else {
                        (write, read)
                    };
                    pipes[slot] = Some(theirs);
                    ours
                }
            })
        };
        let [stdin, stdout, stderr] = request;
        let workload = [
            workload_end(0, stdin)?,
            workload_end(1, stdout)?,
            workload_end(2, stderr)?,
        ];
        Ok((workload, pipes))
    }

    /// Writes a cloned sandbox's id maps (its ids to `host`) and lets it start its
    /// setup; a sandbox that cannot get its maps is killed (it would wait for them
    /// forever).
    fn release(
        &self,
        started: &Started,
        config: &SandboxConfig,
        host: HostIds,
    ) -> Result<(), StartError> {
        if let Err(e) = ids::write_maps(started.pid, config.uid, config.gid, host, self.privileged)
        {
            let _ = sys::pidfd_send_signal(started.pidfd.as_fd(), libc::SIGKILL);
            return Err(e.into());
        }
        if started.channel.id_maps_written().is_err() {
            // It died already; its reap reports the failure.
            tracing::debug!(pid = started.pid, "sandbox gone before it was released");
        }
        Ok(())
    }

    /// Refuses to fork from a process with more than one thread.
    fn check_single_threaded(&self) -> Result<SingleThreaded, StartError> {
        match self.threads.check()? {
            Threads::One(single) => Ok(single),
            Threads::Many(threads) => Err(StartError::NotSingleThreaded(threads)),
        }
    }
}

/// Clones a sandbox of `config` into its namespaces: the network and IPC namespaces of
/// `spares` if a pair is ready (and it has a network namespace), else new ones.
fn clone(
    single: SingleThreaded,
    config: &SandboxConfig,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
    spares: Option<&mut SpareNamespaces>,
) -> Result<sys::Cloned, SysError> {
    let flags = namespaces(config);
    if flags & spare_namespaces::FLAGS == spare_namespaces::FLAGS {
        if let Some(spares) = spares {
            if let Some(pair) = spares.take() {
                return spares.clone_into(pair, || {
                    sys::clone3(single, flags & !spare_namespaces::FLAGS, cgroup)
                });
            }
        }
    }
    sys::clone3(single, flags, cgroup)
}

/// The namespaces a sandbox of this config is cloned into.
fn namespaces(config: &SandboxConfig) -> u64 {
    let mut flags = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u64;
    if !config.opt_out.contains(&Layer::NetworkNamespace) {
        flags |= libc::CLONE_NEWNET as u64;
    }
    flags
}
