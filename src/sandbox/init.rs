//! The sandbox init: PID 1 of the sandbox's pid namespace, cloned by the zygote. It runs
//! the setup recipe, starts the workload (sharing its memory until `execve`; an entry's
//! is forked), forwards signals to it, reaps orphans, and reports the workload's exec
//! and exit on its channel.
//!
//! # The recipe
//!
//! The one source for the order of a sandbox's setup. Each line is a [`SetupStep`]: what
//! a failure names (the client gets it in `SpawnError::Setup`) and what the setup
//! timeline times (`sandbox::timeline`). Every step that can fail runs through one
//! timed wrapper (`sandbox::step`), the workload's own through its allocation-free twin
//! (`workload::workload_step`); only a step that cannot fail notes its end directly.
//! Where a step fails, the init reports it on its channel and exits with 125; a
//! security step fails closed.
//!
//! 1. `Clone` (zygote): `clone3` into new user, pid, mount, ipc, uts, cgroup (and net)
//!    namespaces; timed until the init runs.
//! 2. `PlaceFds`: stdio on 0-2, the channel on 3, an entry's result pipe on 4, every
//!    other fd inherited from the zygote closed — first, so that nothing of other
//!    clients' can leak into anything the sandbox runs.
//! 3. `HoldSignals`: default dispositions, the forwarded signals (and `SIGCHLD`) held,
//!    so that none sent meanwhile is lost or acts on the init as PID 1.
//! 4. `PrepareWorkload`: the exec's C strings built while allocating is still harmless
//!    (the workload shares the init's memory and may not allocate).
//! 5. `IdMaps`: wait for the zygote to write the uid/gid maps; nothing that needs an id
//!    can run before.
//! 6. `UserIds`: supplementary groups dropped, the sandbox's uid and gid taken;
//!    capabilities survive (dropped below, after the mounts that need them).
//! 7. `DieWithZygote`: `PR_SET_PDEATHSIG`, after the last change of ids (which clears
//!    it), then a check that the zygote did not die before it was armed.
//! 8. `ScratchRoot`: mounts private (nothing propagates to the host), a scratch root or
//!    a copy of the zygote's root template attached.
//! 9. `RootDirectories`: the host's directories read-only, or the chroot directory
//!    (done with the template's copy).
//! 10. `ProcAndTmp`: a `/proc` of this pid namespace, a private `/tmp`.
//! 11. `Dev`: a minimal `/dev` (or the template's) and a private `/dev/shm`.
//! 12. `Binds`: the request's bind mounts (their sources opened before a template's copy
//!     hides the host's `/tmp`).
//! 13. `PivotRoot`: the new root becomes `/`.
//! 14. `DetachOldRoot`: the host's tree detached, and the root template's fd closed:
//!     nothing of the host's is in reach.
//! 15. `ReadOnlyRoot`: the root read-only once every mount point in it exists (done with
//!     the template's copy).
//! 16. `Hostname`: the uts namespace's own name.
//! 17. `Loopback`: `lo` up in a network namespace of its own.
//! 18. `BoundingSet`: securebits locked, bounding set emptied — they need `CAP_SETPCAP`,
//!     so before the effective set goes.
//! 19. `DropCapabilities`: ambient, inheritable, permitted, effective emptied — the last
//!     privilege; everything after needs none (a warm-pool sandbox waits from here on).
//! 20. `NoNewPrivs`: no exec can grant privileges again.
//! 21. `VerifyPrivileges`: the kernel asked (`capget`, `PR_CAPBSET_READ`,
//!     `PR_GET_NO_NEW_PRIVS`) that nothing is left: fail closed.
//! 22. `Handover` (warm pool only): the request and its stdio received, the stdio placed.
//!     A warm-pool sandbox does 2 (with placeholder stdio), 3, 5 to 21, 26 and (where
//!     its filter lets the init finish under it) 29 before it has a request; after the
//!     handover, 4, 23 to 25, and the workload's 27 to 30.
//! 23. `WorkingDirectory`: the request's directory, inside the new root.
//! 24. `Session`: a new session, no controlling terminal (`TIOCSTI` has nothing to
//!     inject into).
//! 25. `ResourceLimits`: no core dumps, the file-size and pids limits; inherited by every
//!     process.
//! 26. `Network`: wait for the zygote's veth — last, so that the zygote configures it
//!     in parallel with the steps above.
//! 27. `StartWorkload`: the workload started (cloned sharing the init's memory; forked
//!     for an entry); it lets the held signals through and marks every fd but 0-2
//!     close-on-exec (an entry, which execs nothing, closes them).
//! 28. `OpenFilesLimit` (workload): its own `RLIMIT_NOFILE` (the init needs fds of its
//!     own).
//! 29. `Seccomp` (workload): the filter, last before `execve`, so that it need allow
//!     nothing of the setup.
//! 30. `Exec` (workload): `execve`; its success closes the exec pipe, its failure (and
//!     those of 28 and 29) is a postcard message on it (see `workload`).
//! 31. `ForwardSignals`: the held signals read from a signalfd from here on, off the
//!     path of the exec's report.
//!
//! A persistent sandbox (`Job::Sandbox`) does 2, 3, 5 to 21 and 23 to 26 as a fresh one
//! does, with `/` as its directory and `Devpts` (its own devpts at `/dev/pts`, mounted
//! after 17 while it still has the capability), then `Undumpable` (its init made undumpable, so that
//! its commands, which run as its user, can neither ptrace it nor write its memory),
//! reports itself ready and serves its commands (see `commands`): each one does 27 to 30
//! as a workload, with a session of its own.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::channel::{SandboxEnd, WorkloadUsage, CHANNEL_FD};
use super::commands::{self, CommandSetup};
use super::entry::{EntryCall, RESULT_FD};
use super::exec::ExecArgs;
use super::workload::{self, ExecWorkload, Ready};
use super::{capabilities, ids, root, step, timeline, Sandboxer, SetupError, SETUP_FAILED};
use crate::protocol::{
    ExitStatus, Layer, Limits, NetworkConfig, OsBytes, SandboxConfig, SetupFailure, SetupStep,
    SpawnRequest,
};
use crate::seccomp::CompiledSeccomp;
use crate::sys::{self, Context, Forked, NewProcess, SysError};

/// Signals the init forwards to the workload: every one it can catch (as PID 1 it would
/// ignore them), but `SIGCHLD`, which is its own, glibc's internal 32 and 33, and the
/// synchronous fault signals (a real fault of the init must end it, not be read and
/// passed on). `SIGKILL` and `SIGSTOP` cannot be caught: they act on the init itself,
/// and `SIGKILL` to the init ends the whole sandbox.
///
/// The init holds them blocked, with `SIGCHLD`, from the start of its setup (see
/// [`held`]), and once the workload runs reads them all from one signalfd: none is lost
/// meanwhile, and no handler is installed (a `sigaction` for each of some fifty).
fn forwardable() -> Vec<i32> {
    const NOT_FORWARDED: [i32; 9] = [
        libc::SIGCHLD,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTRAP,
        libc::SIGSYS,
        32,
        33,
    ];
    sys::signals_with_disposition()
        .filter(|s| !NOT_FORWARDED.contains(s))
        .collect()
}

/// The signals the init holds blocked from the start of its setup: those it forwards
/// ([`forwardable`]) and `SIGCHLD`.
pub(super) fn held() -> &'static [i32] {
    static HELD: std::sync::LazyLock<Vec<i32>> = std::sync::LazyLock::new(|| {
        let mut held = forwardable();
        held.push(libc::SIGCHLD);
        held
    });
    &HELD
}

/// What the workload is to be, as the zygote hands it to a fresh sandbox's init.
pub enum Job {
    /// `execve` the request's program.
    Exec,
    /// Run this entry, writing its result on the write end of the result pipe.
    Entry {
        /// The prepared call.
        call: EntryCall,
        /// The result pipe's write end.
        result: OwnedFd,
    },
    /// Be a persistent sandbox: no workload, commands on the channel (see `commands`).
    Sandbox,
}

/// The init's whole life. Never returns.
pub fn run(
    process: NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    request: &SpawnRequest,
    stdio: [OwnedFd; 3],
    channel: SandboxEnd,
    job: Job,
) -> ! {
    timeline::mark(SetupStep::Clone);
    let (channel, job) = place_fds(&process, stdio, channel, job, template);
    if let Job::Sandbox = job {
        match setup_persistent(&process, sandboxer, template, request, &channel) {
            Ok(()) => {
                let setup = CommandSetup {
                    seccomp: workload_filter(sandboxer, &request.sandbox),
                    open_files: request.sandbox.limits.open_files,
                };
                commands::serve(&process, &channel, setup)
            }
            Err(error) => fail(&channel, error),
        }
    }
    match setup(&process, sandboxer, template, request, &channel, job) {
        Ok(ready) => {
            let seccomp = workload_filter(sandboxer, &request.sandbox);
            let open_files = request.sandbox.limits.open_files;
            supervise(&process, &channel, ready, seccomp, open_files)
        }
        Err(error) => fail(&channel, error),
    }
}

/// The recipe of a fresh sandbox, after its fds are placed (see the module's header).
fn setup(
    process: &NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    request: &SpawnRequest,
    channel: &SandboxEnd,
    job: Job,
) -> Result<Ready, SetupError> {
    step(SetupStep::HoldSignals, || hold_signals(sandboxer))?;
    let ready = step(SetupStep::PrepareWorkload, || prepare(request, job))?;
    build_shape(
        process,
        sandboxer,
        template,
        &request.sandbox,
        channel,
        false,
    )?;
    let network = matches!(request.sandbox.network, NetworkConfig::Veth(_));
    finish_setup(request, channel, network)?;
    Ok(ready)
}

/// The recipe of a persistent sandbox: a fresh one's, with no workload to prepare, and
/// its init made undumpable last (after its last change of ids, which would reset it).
fn setup_persistent(
    process: &NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    request: &SpawnRequest,
    channel: &SandboxEnd,
) -> Result<(), SetupError> {
    step(SetupStep::HoldSignals, || hold_signals(sandboxer))?;
    build_shape(
        process,
        sandboxer,
        template,
        &request.sandbox,
        channel,
        true,
    )?;
    let network = matches!(request.sandbox.network, NetworkConfig::Veth(_));
    finish_setup(request, channel, network)?;
    step(SetupStep::Undumpable, || {
        nix::sys::prctl::set_dumpable(false).op("prctl(PR_SET_DUMPABLE, 0)")
    })
}

/// The steps that depend only on the sandbox's shape (its config), which a warm-pool
/// sandbox performs before it has a request; `devpts`: a persistent sandbox's, which
/// mounts its own devpts while it still may.
fn build_shape(
    process: &NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    config: &SandboxConfig,
    channel: &SandboxEnd,
    devpts: bool,
) -> Result<(), SetupError> {
    step(SetupStep::IdMaps, || channel.wait_for_id_maps())?;
    step(SetupStep::UserIds, || {
        ids::become_sandbox_user(config, sandboxer.privileged)
    })?;
    // After the last change of ids: the kernel clears the parent-death signal on one.
    step(SetupStep::DieWithZygote, || die_with_zygote(channel))?;
    root::build_root(process, config, template)?;
    step(SetupStep::Hostname, || set_hostname(&config.hostname))?;
    if !config.opt_out.contains(&Layer::NetworkNamespace) {
        step(SetupStep::Loopback, sys::loopback_up)?;
    }
    if devpts {
        step(SetupStep::Devpts, mount_devpts)?;
    }
    // The last of the privileges: nothing after this needs one, and a warm-pool sandbox
    // waits for its request without any.
    step(SetupStep::BoundingSet, || {
        capabilities::drop_bounding(sandboxer.last_cap)
    })?;
    step(SetupStep::DropCapabilities, capabilities::drop_remaining)?;
    step(SetupStep::NoNewPrivs, capabilities::set_no_new_privs)?;
    step(SetupStep::VerifyPrivileges, || {
        capabilities::verify_dropped(sandboxer.last_cap)
    })
}

/// The per-request steps; `wait_for_network`: whether the veth network is still to come
/// (a warm-pool sandbox's was up before it went idle).
fn finish_setup(
    request: &SpawnRequest,
    channel: &SandboxEnd,
    wait_for_network: bool,
) -> Result<(), SetupError> {
    let config = &request.sandbox;
    step(SetupStep::WorkingDirectory, || enter(&request.cwd))?;
    step(SetupStep::Session, new_session)?;
    step(SetupStep::ResourceLimits, || set_rlimits(&config.limits))?;
    // Last: the zygote configures the veth meanwhile, in parallel with the steps above.
    if wait_for_network {
        step(SetupStep::Network, || channel.wait_for_network())?;
    }
    Ok(())
}

/// The life of a warm-pool sandbox's init. Never returns.
///
/// It builds its `shape` (the recipe's steps that do not depend on the request, see the
/// module's header: held signals, id maps, user ids, root, hostname, loopback, every
/// capability dropped, `no_new_privs`, its veth network once the zygote has built it,
/// and the seccomp filter where the policy allows the init's last steps under it),
/// shows itself as `hatchery-pool` while idle, then waits for the one request it will
/// ever run and does only what depends on it: the handover of the request and its
/// stdio, the exec's arguments and environment, the working directory, session and
/// rlimits, then the workload's seccomp (if not installed yet) and `execve`.
pub fn run_pooled(
    process: NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    shape: &SandboxConfig,
    placeholders: [OwnedFd; 3],
    channel: SandboxEnd,
) -> ! {
    let (channel, _) = place_fds(&process, placeholders, channel, Job::Exec, template);
    // A filter that lets the init finish under it is installed now, off the spawn's
    // path; any other, by the workload last before `execve`, as in a fresh sandbox.
    let filter = workload_filter(sandboxer, shape);
    let filter_now = filter.filter(|filter| filter.fits_pooled_init());
    if let Err(error) = build_idle(&process, sandboxer, template, shape, &channel, filter_now) {
        fail(&channel, error)
    }
    match take_request(&process, &channel) {
        Ok((request, ready)) => {
            // The request's sandbox is the shape (the zygote matched them exactly).
            let seccomp = filter.filter(|_| filter_now.is_none());
            let open_files = request.sandbox.limits.open_files;
            supervise(&process, &channel, ready, seccomp, open_files)
        }
        Err(error) => fail(&channel, error),
    }
}

/// A warm-pool sandbox's steps before it has a request: its shape, its veth network
/// (the zygote builds it once the shape is up; waited for here, so that the request
/// never waits for it), and `filter_now`, the seccomp filter if the init installs it.
fn build_idle(
    process: &NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    shape: &SandboxConfig,
    channel: &SandboxEnd,
    filter_now: Option<&CompiledSeccomp>,
) -> Result<(), SetupError> {
    step(SetupStep::HoldSignals, || hold_signals(sandboxer))?;
    build_shape(process, sandboxer, template, shape, channel, false)?;
    if let NetworkConfig::Veth(_) = shape.network {
        step(SetupStep::Network, || channel.wait_for_network())?;
    }
    if let Some(filter) = filter_now {
        step(SetupStep::Seccomp, || filter.apply())?;
    }
    Ok(())
}

/// A warm-pool sandbox's wait for its request, and the steps that depend on it.
fn take_request(
    process: &NewProcess,
    channel: &SandboxEnd,
) -> Result<(SpawnRequest, Ready), SetupError> {
    // Seen as idle in `ps` while it waits; the zygote's name again once it has work.
    let own_name = nix::sys::prctl::get_name().ok();
    let _ = nix::sys::prctl::set_name(IDLE_NAME);
    let (request, stdio) = step(SetupStep::Handover, || channel.wait_for_request())?;
    // Its timeline is the request's, from here.
    timeline::start();
    if let Some(name) = own_name {
        let _ = nix::sys::prctl::set_name(&name);
    }
    step(SetupStep::Handover, || place_stdio(process, stdio))?;
    let ready = step(SetupStep::PrepareWorkload, || prepare(&request, Job::Exec))?;
    finish_setup(&request, channel, false)?;
    Ok((request, ready))
}

/// The seccomp filter a sandbox of `config` runs its workload under (the policy it
/// names, else the daemon's default), unless it opted out. The zygote admits only
/// requests that name a policy it has; if one got here with another name, the daemon's
/// default applies, never none.
fn workload_filter<'a>(
    sandboxer: &'a Sandboxer,
    config: &SandboxConfig,
) -> Option<&'a CompiledSeccomp> {
    if config.opt_out.contains(&Layer::Seccomp) {
        return None;
    }
    let policies = &sandboxer.seccomp;
    policies
        .get(config.seccomp_policy.as_deref())
        .or_else(|| policies.get(None))
}

/// The command name (`/proc/PID/comm`) of an idle warm-pool sandbox's init.
pub const IDLE_NAME: &std::ffi::CStr = c"hatchery-pool";

/// Reports a failed setup on the channel and exits.
fn fail(channel: &SandboxEnd, error: SetupError) -> ! {
    channel.report_failure(error);
    sys::exit_now(SETUP_FAILED)
}

/// The [`SetupStep::PlaceFds`] step: puts the workload's stdio on 0, 1 and 2, the
/// channel on 3, an entry's result pipe on 4, and closes every other fd inherited from
/// the zygote (other clients' sockets, other children's pipes) but `keep` (the root
/// template, at a number above these). A failure is reported on the channel and ends
/// the init.
fn place_fds(
    process: &NewProcess,
    stdio: [OwnedFd; 3],
    channel: SandboxEnd,
    job: Job,
    keep: Option<BorrowedFd<'_>>,
) -> (SandboxEnd, Job) {
    // The channel is still where the zygote made it, and can carry a report.
    if let Err(error) = step(SetupStep::PlaceFds, || place_stdio(process, stdio)) {
        fail(&channel, error)
    }
    let channel = match process.move_fd(OwnedFd::from(channel), CHANNEL_FD) {
        Ok(fd) => SandboxEnd::from(fd),
        // A failed move has closed the channel (`move_fd` owned it): nothing is left
        // to carry a report. The zygote sees the channel close, and tells the client
        // that the sandbox ended during its setup.
        Err(_) => sys::exit_now(SETUP_FAILED),
    };
    let placed = step(SetupStep::PlaceFds, || {
        let job = match job {
            Job::Entry { call, result } => Job::Entry {
                call,
                result: process.move_fd(result, RESULT_FD)?,
            },
            Job::Exec => Job::Exec,
            Job::Sandbox => Job::Sandbox,
        };
        process.close_from_but(
            RESULT_FD as u32 + 1,
            keep.map(|fd| fd.as_raw_fd()).as_slice(),
        )?;
        if let Job::Exec | Job::Sandbox = job {
            process.close_range(RESULT_FD as u32, RESULT_FD as u32)?;
        }
        Ok::<_, SysError>(job)
    });
    match placed {
        Ok(job) => (channel, job),
        Err(error) => fail(&channel, error),
    }
}

/// Puts `stdio` on 0, 1 and 2 (a warm-pool sandbox's: replacing the placeholders).
fn place_stdio(process: &NewProcess, stdio: [OwnedFd; 3]) -> Result<(), SysError> {
    for (slot, fd) in stdio.iter().enumerate() {
        process.dup_onto(fd.as_fd(), slot as i32)?;
    }
    Ok(())
}

/// Dies with the zygote rather than outlive it unsupervised. The zygote may have died
/// before the signal was armed (`getppid` cannot tell, from inside a pid namespace): then
/// its end of the channel is closed, and the setup stops here.
fn die_with_zygote(channel: &SandboxEnd) -> Result<(), SetupFailure> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).op("prctl(PR_SET_PDEATHSIG)")?;
    if channel.zygote_gone() {
        return Err(SetupFailure::ZygoteGone);
    }
    Ok(())
}

/// Default dispositions (the zygote ignores SIGPIPE, its parent may have left others
/// ignored, and an ignored signal stays ignored across exec: every signal the zygote
/// does not leave at its default is reset), and the forwarded signals held until the
/// workload's pid is known, so none is lost in between (with SIGCHLD, see [`held`]).
/// The init installs no handler: once the workload has started it reads them from a
/// signalfd, and the workload inherits these defaults and needs only to unblock.
fn hold_signals(sandboxer: &Sandboxer) -> Result<(), SysError> {
    sys::reset_signals(&sandboxer.signals_to_reset)?;
    sys::sigprocmask(libc::SIG_SETMASK, held())
}

/// The exec's C strings, built while allocating is still harmless; or the entry, with
/// its result pipe.
fn prepare(request: &SpawnRequest, job: Job) -> Result<Ready, SetupFailure> {
    match job {
        Job::Exec => ExecArgs::new(request).map(Ready::Exec),
        Job::Sandbox => Err(SetupFailure::Request(
            "a persistent sandbox has no workload of its own".into(),
        )),
        Job::Entry { call, result } => Ok(Ready::Entry { call, result }),
    }
}

/// A devpts of the sandbox's own at `/dev/pts` (a mount point every root has): a new
/// instance, so that no pty of the host's or of another sandbox's is in it, its `ptmx`
/// usable by the sandbox's user (`ptmxmode=0666`), no setuid or exec from it.
fn mount_devpts() -> Result<(), SysError> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some("devpts"),
        "/dev/pts",
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .op_path("mount(devpts)", "/dev/pts")
}

fn set_hostname(hostname: &str) -> Result<(), SysError> {
    nix::unistd::sethostname(hostname).op("sethostname")
}

fn enter(cwd: &OsBytes) -> Result<(), SysError> {
    nix::unistd::chdir(cwd.as_path()).op_path("chdir", cwd.as_path())
}

/// Per-process limits, inherited by every process of the sandbox (the open-files limit
/// is set in the workload, see `workload::limit_and_filter`). Core dumps are always off:
/// a dump of the workload would land outside the sandbox's control.
///
/// The pids limit is `RLIMIT_NPROC`: the kernel counts it per user in each user
/// namespace (since Linux 5.14), and every process of this sandbox is its one user in
/// its own namespace, so it bounds this sandbox's processes and threads, the init
/// included, cgroup or not. Lowering it needs no privilege; raising it back would.
fn set_rlimits(limits: &Limits) -> Result<(), SysError> {
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).op("setrlimit(RLIMIT_CORE)")?;
    if let Some(bytes) = limits.file_size_bytes {
        setrlimit(Resource::RLIMIT_FSIZE, bytes, bytes).op("setrlimit(RLIMIT_FSIZE)")?;
    }
    if let Some(pids) = limits.pids {
        setrlimit(Resource::RLIMIT_NPROC, pids, pids).op("setrlimit(RLIMIT_NPROC)")?;
    }
    Ok(())
}

/// A new session: no controlling terminal, so `TIOCSTI` has nothing to inject into.
fn new_session() -> Result<(), SysError> {
    nix::unistd::setsid().map(drop).op("setsid")
}

/// Starts the workload, reports its exec, forwards signals, reaps, and exits with the
/// workload's status.
fn supervise(
    process: &NewProcess,
    channel: &SandboxEnd,
    ready: Ready,
    seccomp: Option<&CompiledSeccomp>,
    open_files: Option<u64>,
) -> ! {
    // The workload notes the end of its start itself, the moment it runs (see
    // `workload::run_exec`): a failure to start it is built here, untimed.
    let not_started = |error: SysError| SetupError {
        step: SetupStep::StartWorkload,
        error: error.into(),
    };
    let (exec_read, exec_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).op("pipe2")
    {
        Ok(pipe) => pipe,
        Err(error) => fail(channel, not_started(error)),
    };
    let started = match &ready {
        Ready::Exec(exec) => {
            let workload = ExecWorkload {
                exec,
                exec_write: exec_write.as_fd(),
                seccomp,
                open_files,
                new_session: false,
                cpu_time_s: None,
                controlling_terminal: false,
            };
            sys::spawn_sharing_memory(process.single_threaded(), &workload, workload::run_exec)
        }
        Ready::Entry { .. } => match sys::fork(process.single_threaded()) {
            Ok(Forked::Child(workload)) => {
                drop(exec_read);
                workload::run_entry(workload, exec_write, ready, seccomp, open_files)
            }
            Ok(Forked::Parent(pid)) => Ok(pid),
            Err(error) => Err(error),
        },
    };
    let workload = match started {
        Ok(pid) => pid,
        Err(error) => fail(channel, not_started(error)),
    };
    // The workload's `execve` is done (its memory released to the init), or it failed.
    timeline::mark(SetupStep::Exec);
    drop(exec_write);
    // The init keeps nothing of the workload's stdio, so its readers see EOF when the
    // workload's tree closes them.
    let _ = process.close_range(0, 2);
    // Nor of an entry's result pipe (nor, a copy, of its call).
    drop(ready);

    match workload::read_report(&exec_read) {
        Ok(exec_errno) => channel.report_exec(exec_errno),
        Err(error) => channel.report_failure(error),
    }
    drop(exec_read);

    // Only now, off the path of the exec's report: the signals held since the start of
    // the setup (see `held`) are read from here on, the workload's end (SIGCHLD) and
    // those to forward alike. Exiting on a failure ends the pid namespace, the workload
    // with it.
    let signals = match step(SetupStep::ForwardSignals, || sys::signalfd(held())) {
        Ok(signals) => signals,
        Err(error) => fail(channel, error),
    };
    // Opened now, while the workload runs, so that its exit's report waits for one read.
    let last_pid = open_last_pid();

    loop {
        match sys::read_signal(signals.as_fd()) {
            Ok(libc::SIGCHLD) => loop {
                match sys::reap_any_ended() {
                    Ok(Some((pid, status))) if pid == workload => {
                        finish(
                            channel,
                            ExitStatus::from_wait_status(status),
                            last_pid.as_ref(),
                        );
                    }
                    // An orphan reparented to us: reaped, nothing to report.
                    Ok(Some(_)) | Err(Errno::EINTR) => continue,
                    // None more ended (signals of the ends coalesce).
                    Ok(None) => break,
                    Err(_) => sys::exit_now(SETUP_FAILED),
                }
            },
            Ok(signal) => {
                // The workload may be gone already: its reap is next.
                let _ = sys::send_signal(workload, signal);
            }
            Err(Errno::EINTR) => continue,
            Err(_) => sys::exit_now(SETUP_FAILED),
        }
    }
}

/// Ends whatever else runs in the sandbox, then reports the workload's status (so that
/// the client may learn of the exit before the init's own exit and the namespaces'
/// teardown) and exits with it.
fn finish(channel: &SandboxEnd, status: ExitStatus, last_pid: Option<&OwnedFd>) -> ! {
    let tasks_started = last_pid.and_then(tasks_started);
    // Pid 1 is the init, pid 2 the workload: with no other pid ever handed out (pids are
    // not reused below 300 once they wrap), nothing else is left.
    if tasks_started != Some(2) {
        end_every_other_process();
    }
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|usage| WorkloadUsage::from(usage.as_ref()))
        .unwrap_or_default();
    channel.report_exit(status, tasks_started, usage);
    sys::exit_now(status.code() & 0xff)
}

/// Kills every process of the sandbox but the init and reaps them all. As PID 1 of its
/// pid namespace, the init's `kill(-1)` reaches every process of the namespace (and of
/// any nested one) but itself; all run as the init's user, without the capabilities
/// that could change that. Every one is the init's descendant, so once `wait` finds no
/// child left none remains: an orphan is the init's child before its parent is reaped.
fn end_every_other_process() {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), Signal::SIGKILL);
    loop {
        match sys::wait_any() {
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// `/proc/sys/kernel/ns_last_pid`, which shows the last pid handed out in the reader's
/// pid namespace.
fn open_last_pid() -> Option<OwnedFd> {
    nix::fcntl::open(
        "/proc/sys/kernel/ns_last_pid",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
}

/// How many processes and threads were ever started in this pid namespace, read from
/// [`open_last_pid`]'s fd: pids are handed out in order from 1 and not reused before
/// they wrap at `pid_max`.
fn tasks_started(last_pid: &OwnedFd) -> Option<u64> {
    let mut number = [0u8; 24];
    let read = nix::sys::uio::pread(last_pid, &mut number, 0).ok()?;
    std::str::from_utf8(&number[..read])
        .ok()?
        .trim()
        .parse()
        .ok()
}
