//! The sandbox init: PID 1 of the sandbox's pid namespace, cloned by the zygote.
//!
//! It runs the setup recipe (one named step per line, in the order the kernel requires),
//! starts the workload (sharing its memory until `execve`; an entry's is forked),
//! forwards signals to it, reaps orphans, and reports the workload's exec and exit on its
//! channel. The workload's own last steps are its signal mask, closing every fd but
//! stdio at exec, seccomp (last before `execve`, so the filter need allow nothing of the
//! setup; a warm-pool sandbox's init may have installed it already) and `execve`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::channel::{SandboxEnd, WorkloadUsage};
use super::entry::{self, EntryCall, Workload, RESULT_FD};
use super::exec::ExecArgs;
use super::timeline::{self, Mark};
use super::{capabilities, ids, mounts, step, Sandboxer, SetupError, Step};
use crate::protocol::{
    ExitStatus, Layer, Limits, NetworkConfig, OsBytes, SandboxConfig, SpawnRequest,
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

/// The fd the init keeps its channel on; everything above it is closed.
const CHANNEL_FD: i32 = 3;

/// Exit code of an init whose setup failed (the zygote reports the typed error instead).
const SETUP_FAILED: i32 = 125;

/// What the workload writes to the exec pipe when it fails before or at `execve`.
#[repr(u8)]
enum WorkloadFailure {
    Exec = 0,
    Seccomp = 1,
    ResourceLimits = 2,
}

/// What the workload does once its setup is done.
enum Ready {
    /// `execve` the program.
    Exec(ExecArgs),
    /// Run the entry, with the result pipe's write end on [`RESULT_FD`].
    Entry { call: EntryCall, result: OwnedFd },
}

/// The init's whole life. Never returns. `result` is the write end of an entry's result
/// pipe (for [`Workload::Entry`] only).
#[allow(clippy::too_many_arguments)] // `process` vouches for the clone; the rest is the request's
pub fn run(
    process: NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    request: &SpawnRequest,
    stdio: [OwnedFd; 3],
    channel: SandboxEnd,
    workload: Workload,
    result: Option<OwnedFd>,
) -> ! {
    timeline::mark(Mark::Running);
    let (channel, result) = match place_fds(&process, stdio, channel, result, template) {
        Ok(placed) => placed,
        Err(_) => sys::exit_now(SETUP_FAILED),
    };
    match setup(
        &process, sandboxer, template, request, &channel, workload, result,
    ) {
        Ok(ready) => {
            let seccomp = workload_filter(sandboxer, &request.sandbox);
            supervise(
                &process,
                &channel,
                ready,
                seccomp,
                request.sandbox.limits.open_files,
            )
        }
        Err(error) => {
            channel.report_failure(error);
            sys::exit_now(SETUP_FAILED)
        }
    }
}

/// The setup recipe, in order.
fn setup(
    process: &NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    request: &SpawnRequest,
    channel: &SandboxEnd,
    workload: Workload,
    result: Option<OwnedFd>,
) -> Result<Ready, SetupError> {
    step(Step::SignalForwarding, hold_signals(sandboxer))?;
    timeline::mark(Mark::SignalsHeld);
    let ready = step(Step::ForkWorkload, prepare(request, workload, result))?;
    build_shape(process, sandboxer, template, &request.sandbox, channel)?;
    let network = matches!(request.sandbox.network, NetworkConfig::Veth(_));
    finish_setup(request, channel, network)?;
    Ok(ready)
}

/// The steps that depend only on the sandbox's shape (its config), which a warm-pool
/// sandbox performs before it has a request.
fn build_shape(
    process: &NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    config: &SandboxConfig,
    channel: &SandboxEnd,
) -> Result<(), SetupError> {
    step(Step::IdMaps, channel.wait_for_id_maps())?;
    timeline::mark(Mark::IdMaps);
    step(
        Step::UserIds,
        ids::become_sandbox_user(config, sandboxer.privileged),
    )?;
    // After the last change of ids: the kernel clears the parent-death signal on one.
    step(Step::UserIds, die_with_zygote(channel))?;
    timeline::mark(Mark::UserIds);
    step(Step::MountRoot, mounts::build_root(config, template))?;
    // The template's fd was kept for the root alone: nothing after needs it, and the
    // workload must not have it. (The init never drops its copy of the sandboxer.)
    if let Some(template) = template {
        let fd = template.as_raw_fd() as u32;
        step(Step::MountRoot, process.close_range(fd, fd))?;
    }
    step(Step::Hostname, set_hostname(&config.hostname))?;
    if !config.opt_out.contains(&Layer::NetworkNamespace) {
        step(Step::Loopback, sys::loopback_up())?;
    }
    timeline::mark(Mark::HostnameAndLoopback);
    // The last of the privileges: nothing after this needs one, and a warm-pool sandbox
    // waits for its request without any.
    step(
        Step::Capabilities,
        capabilities::drop_bounding(sandboxer.last_cap),
    )?;
    timeline::mark(Mark::BoundingSet);
    step(Step::Capabilities, capabilities::drop_remaining())?;
    step(Step::NoNewPrivs, capabilities::set_no_new_privs())?;
    step(
        Step::Capabilities,
        capabilities::verify_dropped(sandboxer.last_cap),
    )?;
    timeline::mark(Mark::PrivilegesDropped);
    Ok(())
}

/// The per-request steps; `wait_for_network`: whether the veth network is still to come
/// (a warm-pool sandbox's was up before it went idle).
fn finish_setup(
    request: &SpawnRequest,
    channel: &SandboxEnd,
    wait_for_network: bool,
) -> Result<(), SetupError> {
    let config = &request.sandbox;
    step(Step::WorkingDirectory, enter(&request.cwd))?;
    step(Step::Session, new_session())?;
    step(Step::ResourceLimits, set_rlimits(&config.limits))?;
    // Last: the zygote configures the veth meanwhile, in parallel with the steps above.
    if wait_for_network {
        step(Step::Network, channel.wait_for_network())?;
    }
    timeline::mark(Mark::RequestSteps);
    Ok(())
}

/// The life of a warm-pool sandbox's init. Never returns.
///
/// It builds its `shape` (id maps, user ids, root, hostname, loopback, every capability
/// dropped, `no_new_privs`, its veth network once the zygote has built it, and the
/// seccomp filter where the policy allows the init's last steps under it), shows itself
/// as `hatchery-pool` while idle, then waits for the one request it will ever run and
/// does only what depends on it: stdio, the exec's arguments and environment, the
/// working directory, rlimits, then the workload's seccomp (if not installed yet) and
/// `execve`.
pub fn run_pooled(
    process: NewProcess,
    sandboxer: &Sandboxer,
    template: Option<BorrowedFd<'_>>,
    shape: &SandboxConfig,
    placeholders: [OwnedFd; 3],
    channel: SandboxEnd,
) -> ! {
    let channel = match place_fds(&process, placeholders, channel, None, template) {
        Ok((channel, _)) => channel,
        Err(_) => sys::exit_now(SETUP_FAILED),
    };
    // The zygote builds a veth shape's network once the shape is up; it is waited for
    // here, so that the request never waits for it. A filter that lets the init finish
    // under it is installed now, off the spawn's path; any other, by the workload last
    // before `execve`, as in a fresh sandbox.
    let filter = workload_filter(sandboxer, shape);
    let filter_now = filter.filter(|filter| filter.fits_pooled_init());
    let prepared = step(Step::SignalForwarding, hold_signals(sandboxer))
        .and_then(|()| build_shape(&process, sandboxer, template, shape, &channel))
        .and_then(|()| match shape.network {
            NetworkConfig::Veth(_) => step(Step::Network, channel.wait_for_network()),
            NetworkConfig::None => Ok(()),
        })
        .and_then(|()| match filter_now {
            Some(filter) => step(Step::Seccomp, filter.apply()),
            None => Ok(()),
        });
    if let Err(error) = prepared {
        fail_setup(&channel, error)
    }
    // Seen as idle in `ps` while it waits; the zygote's name again once it has work.
    let own_name = nix::sys::prctl::get_name().ok();
    let _ = nix::sys::prctl::set_name(IDLE_NAME);
    let (request, stdio) = match step(Step::Handover, channel.wait_for_request()) {
        Ok(handed) => handed,
        Err(error) => fail_setup(&channel, error),
    };
    // Its timeline is the request's, from here.
    timeline::start();
    if let Some(name) = own_name {
        let _ = nix::sys::prctl::set_name(&name);
    }
    let ready = step(Step::Handover, place_stdio(&process, stdio))
        .inspect(|()| timeline::mark(Mark::HandedOver))
        .and_then(|()| step(Step::ForkWorkload, prepare(&request, Workload::Exec, None)))
        .and_then(|ready| finish_setup(&request, &channel, false).map(|()| ready));
    match ready {
        Ok(ready) => {
            // The request's sandbox is the shape (the zygote matched them exactly).
            let seccomp = filter.filter(|_| filter_now.is_none());
            supervise(
                &process,
                &channel,
                ready,
                seccomp,
                request.sandbox.limits.open_files,
            )
        }
        Err(error) => fail_setup(&channel, error),
    }
}

/// The seccomp filter a sandbox of `config` runs its workload under, unless it opted out.
fn workload_filter<'a>(
    sandboxer: &'a Sandboxer,
    config: &SandboxConfig,
) -> Option<&'a CompiledSeccomp> {
    (!config.opt_out.contains(&Layer::Seccomp)).then_some(&sandboxer.seccomp)
}

/// The command name (`/proc/PID/comm`) of an idle warm-pool sandbox's init.
pub const IDLE_NAME: &std::ffi::CStr = c"hatchery-pool";

fn fail_setup(channel: &SandboxEnd, error: SetupError) -> ! {
    channel.report_failure(error);
    sys::exit_now(SETUP_FAILED)
}

/// Puts the handed-over stdio on 0, 1 and 2 (replacing the placeholders).
fn place_stdio(process: &NewProcess, stdio: [OwnedFd; 3]) -> Result<(), SysError> {
    for (slot, fd) in stdio.iter().enumerate() {
        process.dup_onto(fd.as_fd(), slot as i32)?;
    }
    Ok(())
}

/// Dies with the zygote rather than outlive it unsupervised. The zygote may have died
/// before the signal was armed (`getppid` cannot tell, from inside a pid namespace): then
/// its end of the channel is closed, and the setup stops here.
fn die_with_zygote(channel: &SandboxEnd) -> Result<(), SysError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).op("prctl(PR_SET_PDEATHSIG)")?;
    if channel.zygote_gone() {
        return Err(SysError::new("check the zygote is alive", Errno::EPIPE));
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
fn prepare(
    request: &SpawnRequest,
    workload: Workload,
    result: Option<OwnedFd>,
) -> Result<Ready, SysError> {
    match (workload, result) {
        (Workload::Exec, _) => ExecArgs::new(request)
            .map(Ready::Exec)
            .map_err(|e| SysError::new("prepare execve", e)),
        (Workload::Entry(call), Some(result)) => Ok(Ready::Entry { call, result }),
        (Workload::Entry(_), None) => Err(SysError::new("find the result pipe", Errno::EBADF)),
    }
}

fn set_hostname(hostname: &str) -> Result<(), SysError> {
    nix::unistd::sethostname(hostname).op("sethostname")
}

fn enter(cwd: &OsBytes) -> Result<(), SysError> {
    nix::unistd::chdir(cwd.as_path()).op_path("chdir", cwd.as_path())
}

/// Per-process limits, inherited by every process of the sandbox (the open-files limit
/// is set in the workload, see `limit_and_filter`). Core dumps are always off: a dump of the
/// workload would land outside the sandbox's control.
fn set_rlimits(limits: &Limits) -> Result<(), SysError> {
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).op("setrlimit(RLIMIT_CORE)")?;
    if let Some(bytes) = limits.file_size_bytes {
        setrlimit(Resource::RLIMIT_FSIZE, bytes, bytes).op("setrlimit(RLIMIT_FSIZE)")?;
    }
    Ok(())
}

/// A new session: no controlling terminal, so `TIOCSTI` has nothing to inject into.
fn new_session() -> Result<(), SysError> {
    nix::unistd::setsid().map(drop).op("setsid")
}

/// Puts the workload's stdio on 0, 1 and 2, the channel on 3, an entry's result pipe on
/// 4, and closes every other fd inherited from the zygote (other clients' sockets, other
/// children's pipes) but `keep` (the root template, at a number above these).
fn place_fds(
    process: &NewProcess,
    stdio: [OwnedFd; 3],
    channel: SandboxEnd,
    result: Option<OwnedFd>,
    keep: Option<BorrowedFd<'_>>,
) -> Result<(SandboxEnd, Option<OwnedFd>), SysError> {
    place_stdio(process, stdio)?;
    let channel = SandboxEnd::from(process.move_fd(OwnedFd::from(channel), CHANNEL_FD)?);
    let result = result
        .map(|fd| process.move_fd(fd, RESULT_FD))
        .transpose()?;
    process.close_from_but(
        RESULT_FD as u32 + 1,
        keep.map(|fd| fd.as_raw_fd()).as_slice(),
    )?;
    if result.is_none() {
        process.close_range(RESULT_FD as u32, RESULT_FD as u32)?;
    }
    Ok((channel, result))
}

/// Forks the workload, reports its exec, forwards signals, reaps, and exits with the
/// workload's status.
fn supervise(
    process: &NewProcess,
    channel: &SandboxEnd,
    ready: Ready,
    seccomp: Option<&CompiledSeccomp>,
    open_files: Option<u64>,
) -> ! {
    let (exec_read, exec_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).op("pipe2")
    {
        Ok(pipe) => pipe,
        Err(error) => fail(channel, Step::ForkWorkload, error),
    };
    let started = match &ready {
        Ready::Exec(exec) => {
            let workload = ExecWorkload {
                exec,
                exec_write: exec_write.as_fd(),
                seccomp,
                open_files,
            };
            sys::spawn_sharing_memory(process.single_threaded(), &workload, run_exec_workload)
        }
        Ready::Entry { .. } => match sys::fork(process.single_threaded()) {
            Ok(Forked::Child(workload)) => {
                drop(exec_read);
                run_entry_workload(workload, exec_write, ready, seccomp, open_files)
            }
            Ok(Forked::Parent(pid)) => Ok(pid),
            Err(error) => Err(error),
        },
    };
    let workload = match started {
        Ok(pid) => pid,
        Err(error) => fail(channel, Step::ForkWorkload, error),
    };
    timeline::mark(Mark::Execed);
    drop(exec_write);
    // The init keeps nothing of the workload's stdio, so its readers see EOF when the
    // workload's tree closes them.
    let _ = process.close_range(0, 2);
    // Nor of an entry's result pipe (nor, a copy, of its call).
    drop(ready);

    match read_failure(&exec_read) {
        None => channel.report_exec(None),
        Some((WorkloadFailure::Seccomp, errno)) => {
            channel.report_failure(SetupError {
                step: Step::Seccomp,
                error: SysError::new("seccomp(SECCOMP_SET_MODE_FILTER)", errno),
            });
        }
        Some((WorkloadFailure::ResourceLimits, errno)) => {
            channel.report_failure(SetupError {
                step: Step::ResourceLimits,
                error: SysError::new("setrlimit(RLIMIT_NOFILE)", errno),
            });
        }
        Some((WorkloadFailure::Exec, errno)) => channel.report_exec(Some(errno as i32)),
    }
    drop(exec_read);

    // Only now, off the path of the exec's report: the signals held since the start of
    // the setup (see `held`) are read from here on, the workload's end (SIGCHLD) and
    // those to forward alike.
    let signals = match sys::signalfd(held()) {
        Ok(signals) => signals,
        // Exiting ends the pid namespace, the workload with it.
        Err(error) => fail(channel, Step::SignalForwarding, error),
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

fn fail(channel: &SandboxEnd, step: Step, error: SysError) -> ! {
    channel.report_failure(SetupError { step, error });
    sys::exit_now(SETUP_FAILED)
}

/// What an exec's workload needs, borrowed from the init: it runs in a child that
/// shares the init's memory until its `execve` (see [`sys::spawn_sharing_memory`]), so
/// it allocates nothing and owns nothing.
struct ExecWorkload<'a> {
    exec: &'a ExecArgs,
    exec_write: BorrowedFd<'a>,
    seccomp: Option<&'a CompiledSeccomp>,
    open_files: Option<u64>,
}

/// The workload of an exec: signal mask, fds, seccomp, `execve`. Returns only by
/// exiting.
fn run_exec_workload(workload: &ExecWorkload<'_>) -> ! {
    timeline::mark(Mark::WorkloadRunning);
    unblock_signals();
    // Everything but 0-2 closes at exec: the channel, and the exec pipe once it has
    // served its purpose (its closing is how the init learns the exec succeeded).
    if let Err(errno) = sys::close_on_exec_from(CHANNEL_FD as u32) {
        report_failure(workload.exec_write, WorkloadFailure::Exec, errno);
    }
    limit_and_filter(workload.exec_write, workload.seccomp, workload.open_files);
    timeline::mark(Mark::Filtered);
    let errno = workload.exec.exec();
    report_failure(workload.exec_write, WorkloadFailure::Exec, errno)
}

/// The workload of an entry, in a forked copy of the init: signal mask, fds, seccomp,
/// the entry. Returns only by exiting.
fn run_entry_workload(
    process: NewProcess,
    exec_write: OwnedFd,
    ready: Ready,
    seccomp: Option<&CompiledSeccomp>,
    open_files: Option<u64>,
) -> ! {
    unblock_signals();
    // An entry execs nothing, so the inherited fds are closed now.
    let exec_write = match entry::close_inherited(&process, exec_write, CHANNEL_FD) {
        Ok(exec_write) => exec_write,
        // The exec pipe is in an unknown state: exiting is the report.
        Err(_) => sys::exit_now(SETUP_FAILED),
    };
    limit_and_filter(exec_write.as_fd(), seccomp, open_files);
    let Ready::Entry { call, result } = ready else {
        sys::exit_now(SETUP_FAILED)
    };
    // Closing the exec pipe tells the init the workload runs, as an exec would.
    drop(exec_write);
    entry::run(call, result)
}

/// The workload starts with the default dispositions the init set in `hold_signals`
/// (the init installs no handler): the held signals are let through, and act on the
/// workload as they should.
fn unblock_signals() {
    let _ = sys::sigprocmask(libc::SIG_SETMASK, &[]);
}

/// The workload's own open-files limit (the init needs a few fds of its own), then
/// seccomp; a failure is reported on the exec pipe and ends the workload.
fn limit_and_filter(
    exec_write: BorrowedFd<'_>,
    seccomp: Option<&CompiledSeccomp>,
    open_files: Option<u64>,
) {
    if let Some(files) = open_files {
        use nix::sys::resource::{setrlimit, Resource};
        if let Err(errno) = setrlimit(Resource::RLIMIT_NOFILE, files, files) {
            report_failure(exec_write, WorkloadFailure::ResourceLimits, errno);
        }
    }
    if let Some(filter) = seccomp {
        if let Err(errno) = filter.install() {
            report_failure(exec_write, WorkloadFailure::Seccomp, errno);
        }
    }
}

fn report_failure(exec_write: BorrowedFd<'_>, kind: WorkloadFailure, errno: Errno) -> ! {
    let mut message = [0u8; 5];
    message[0] = kind as u8;
    message[1..].copy_from_slice(&(errno as i32).to_ne_bytes());
    let _ = nix::unistd::write(exec_write, &message);
    sys::exit_now(127)
}

/// Reads the workload's failure report; `None` (end of file) means `execve` succeeded.
fn read_failure(exec_read: &OwnedFd) -> Option<(WorkloadFailure, Errno)> {
    let mut message = [0u8; 5];
    let n = loop {
        match nix::unistd::read(exec_read, &mut message) {
            Err(Errno::EINTR) => continue,
            Ok(n) => break n,
            Err(_) => return Some((WorkloadFailure::Exec, Errno::EIO)),
        }
    };
    if n == 0 {
        return None;
    }
    let errno = Errno::from_raw(i32::from_ne_bytes([
        message[1], message[2], message[3], message[4],
    ]));
    let kind = match message[0] {
        1 => WorkloadFailure::Seccomp,
        2 => WorkloadFailure::ResourceLimits,
        _ => WorkloadFailure::Exec,
    };
    Some((kind, errno))
}
