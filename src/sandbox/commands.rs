//! A persistent sandbox's init once its setup is done: it forks each command the zygote
//! sends it, as it would a fresh sandbox's workload, reports each one's start and end,
//! signals a command's process group when asked, and reaps every process. Runs in the
//! sandbox's init, never anywhere else.
//!
//! This is the whole of "exec into a sandbox": a command is started by the init, which
//! is inside every namespace already, unprivileged, with `no_new_privs`; nothing ever
//! joins the sandbox's namespaces from outside, so the escapes that need a joining
//! process (runc's CVE-2016-9962, CVE-2019-5736, CVE-2024-21626) have nothing to work
//! with. The init is undumpable ([`SetupStep::Undumpable`]): a command, though it runs
//! as the init's user, can neither ptrace it nor open its `/proc/1/mem`. Each command
//! takes the workload's own last steps (`workload::run_exec`): signals let through, a
//! session of its own, its CPU-time limit, every fd but 0-2 close-on-exec, its open-files
//! limit, the seccomp filter, `execve`.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::channel::{CommandFailure, Order, SandboxEnd, WorkloadUsage};
use super::exec::ExecArgs;
use super::init::held;
use super::workload::{self, ExecWorkload};
use super::{SetupError, SETUP_FAILED};
use crate::protocol::{ExecRequest, ExitStatus, SetupFailure, SetupStep};
use crate::seccomp::CompiledSeccomp;
use crate::sys::{self, Context, NewProcess, SysError};

/// The `ptmx` of the sandbox's own devpts (`SetupStep::Devpts`).
const PTMX: &str = "/dev/pts/ptmx";

/// What every command of this sandbox takes from its config.
pub(super) struct CommandSetup<'a> {
    /// The workload filter, unless the sandbox opted out.
    pub seccomp: Option<&'a CompiledSeccomp>,
    /// Each command's open-files limit.
    pub open_files: Option<u64>,
}

/// The init's life once the sandbox is ready; never returns. Its stdio are `/dev/null`
/// (a persistent sandbox is created with no streams), and stay so between commands.
pub(super) fn serve(process: &NewProcess, channel: &SandboxEnd, setup: CommandSetup<'_>) -> ! {
    channel.report_exec(None);
    let fail = |error: SetupError| -> ! {
        channel.report_failure(error);
        sys::exit_now(SETUP_FAILED)
    };
    let signals = match super::step(SetupStep::ForwardSignals, || sys::signalfd(held())) {
        Ok(signals) => signals,
        Err(error) => fail(error),
    };
    // A copy of /dev/null, to put back on 0-2 after each command: the init must hold no
    // end of a command's pipes, or their readers would never see end of file.
    let null = match sys::dupfd_cloexec(std::io::stdin().as_fd(), 10) {
        Ok(null) => null,
        Err(error) => fail(SetupError {
            step: SetupStep::PlaceFds,
            error: error.into(),
        }),
    };
    let mut running: HashMap<i32, u64> = HashMap::new();
    let mut buf = crate::protocol::RecvBuffer::new();
    loop {
        let mut fds = [
            PollFd::new(channel.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => sys::exit_now(SETUP_FAILED),
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let (orders, ended) = (ready(&fds[0]), ready(&fds[1]));
        if ended {
            reap(channel, signals.as_fd(), &mut running);
        }
        if orders {
            match channel.next_order(&mut buf) {
                Ok(Some(Order::Nothing)) => {}
                Ok(Some(Order::Exec {
                    command,
                    request,
                    stdio,
                })) => {
                    let started = start(process, &request, stdio, &setup);
                    // 0-2 back to /dev/null whatever happened.
                    for slot in 0..3 {
                        let _ = process.dup_onto(null.as_fd(), slot);
                    }
                    let _ = nix::unistd::chdir("/");
                    match started {
                        Ok((pid, master)) => {
                            running.insert(pid, command);
                            // The master goes to the client; the init keeps no end.
                            channel.report_command_started(command, master);
                        }
                        Err(failure) => channel.report_command_failed(command, failure),
                    }
                }
                Ok(Some(Order::Signal { command, signal })) => {
                    if let Some((&pid, _)) = running.iter().find(|(_, &c)| c == command) {
                        // Its process group (it leads one: its own session); the process
                        // itself if it has left it.
                        if sys::send_signal(-pid, signal).is_err() {
                            let _ = sys::send_signal(pid, signal);
                        }
                    }
                }
                // The zygote is gone (its death signal follows), or talks nonsense: the
                // sandbox ends, and with it every command.
                Ok(None) | Err(_) => sys::exit_now(SETUP_FAILED),
            }
        }
    }
}

/// Reaps every ended process; reports those that were a command's first.
fn reap(
    channel: &SandboxEnd,
    signals: std::os::fd::BorrowedFd<'_>,
    running: &mut HashMap<i32, u64>,
) {
    // The signals read are SIGCHLD or one to forward, which the init of a persistent
    // sandbox has no one to forward to (a command's signals go to its process group).
    // One read: the signalfd polled readable (more pending make it readable again).
    let _ = sys::read_signal(signals);
    while let Ok(Some(reaped)) = sys::wait4_any_nohang() {
        if let Some(command) = running.remove(&reaped.pid) {
            channel.report_command_exited(
                command,
                ExitStatus::from_wait_status(reaped.status),
                WorkloadUsage::from(&reaped.rusage),
            );
        }
    }
}

/// Starts one command: its stdio on 0-2 (the slave of a pty of the sandbox's devpts
/// when it asks for a terminal), its directory, then the workload's steps in a child
/// that shares the init's memory until its `execve`. Returns its pid once it has
/// exec'd, and the pty's master if it has one.
fn start(
    process: &NewProcess,
    request: &ExecRequest,
    stdio: [OwnedFd; 3],
    setup: &CommandSetup<'_>,
) -> Result<(i32, Option<OwnedFd>), CommandFailure> {
    let failed =
        |step: SetupStep, error: SetupFailure| CommandFailure::Setup(SetupError { step, error });
    let exec = ExecArgs::new(&request.as_spawn_request())
        .map_err(|error| failed(SetupStep::PrepareWorkload, error))?;
    let (stdio, master) = match request.pty {
        None => (stdio, None),
        Some(size) => {
            let (master, slave) = sys::open_pty(std::path::Path::new(PTMX), size.rows, size.cols)
                .map_err(|error| failed(SetupStep::Devpts, error.into()))?;
            let copy = |fd: &OwnedFd| {
                fd.try_clone()
                    .op("dup(pty)")
                    .map_err(|error| failed(SetupStep::Devpts, error.into()))
            };
            ([copy(&slave)?, copy(&slave)?, slave], Some(master))
        }
    };
    for (slot, fd) in stdio.iter().enumerate() {
        process
            .dup_onto(fd.as_fd(), slot as i32)
            .map_err(|error| failed(SetupStep::PlaceFds, error.into()))?;
    }
    drop(stdio);
    nix::unistd::chdir(request.cwd.as_path())
        .op_path("chdir", request.cwd.as_path())
        .map_err(|error| failed(SetupStep::WorkingDirectory, error.into()))?;
    let (exec_read, exec_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .op("pipe2")
        .map_err(|error: SysError| failed(SetupStep::StartWorkload, error.into()))?;
    let workload = ExecWorkload {
        exec: &exec,
        exec_write: exec_write.as_fd(),
        seccomp: setup.seccomp,
        open_files: setup.open_files,
        new_session: true,
        cpu_time_s: request.cpu_time_ms.map(|ms| ms.div_ceil(1000)),
        controlling_terminal: master.is_some(),
    };
    let pid = sys::spawn_sharing_memory(process.single_threaded(), &workload, workload::run_exec)
        .map_err(|error| failed(SetupStep::StartWorkload, error.into()))?;
    drop(exec_write);
    // The workload has exec'd or ended (`CLONE_VFORK`): its report is there, or EOF.
    match workload::read_report(&exec_read) {
        Ok(None) => Ok((pid, master)),
        Ok(Some(errno)) => Err(CommandFailure::Exec(errno)),
        Err(error) => Err(CommandFailure::Setup(error)),
    }
}
