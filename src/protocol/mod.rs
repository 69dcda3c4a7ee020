//! The wire protocol between clients and the zygote: message types and their framing.
//!
//! Used by both sides (the client library and the daemon); no `unsafe` and no I/O policy
//! here beyond sending and receiving one framed message. See `docs/protocol.md`.
//!
//! Every message is one `SOCK_SEQPACKET` datagram holding one postcard-encoded
//! [`Request`] (client → zygote) or [`Event`] (zygote → client), with file descriptors
//! attached as `SCM_RIGHTS`. A connection starts with [`Request::Hello`] answered by
//! [`Event::Welcome`]; after that a client may run many children at once, each named by
//! a request id of its choosing.

mod bytes;
pub mod echo;
mod entry;
mod framing;
mod limits;
mod persistent;
mod setup;
mod status;
pub mod validate;

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use bytes::OsBytes;
pub use entry::{EntryResult, DEFAULT_RESULT_LIMIT};
pub use framing::{decode, encode, recv, send, ProtocolError, RecvBuffer, MAX_MESSAGE_LEN};
pub use limits::{EndReason, Limit, LimitSet, Limits};
pub use persistent::{
    check_sandbox_name, ExecRequest, SandboxEndReason, SandboxInfo, SandboxOptions, SandboxVerdict,
    WindowSize, MAX_SANDBOX_NAME,
};
pub use setup::{SetupFailure, SetupStep};
pub use status::{Count, DaemonStatus, PoolStatus, SandboxStatus, VethStatus};
pub use validate::{MAX_MTU, MIN_MTU};

use crate::sys::SysError;

/// The protocol version this build speaks. Bumped whenever a message's encoding changes.
///
/// Version 2 added resource limits to `SandboxConfig` and the end reason, peak memory,
/// task count and limits to `Verdict`. Version 3 appended entry calls
/// (`Command::Entry`, `FdRole::Result`, two `ErrorKind`s); version-2 messages keep their
/// bytes. Version 4 made the step of [`ErrorKind::Setup`] a [`SetupStep`] (it was a
/// string) and its error a [`SetupFailure`] (it was a system call's error only).
/// Version 5 appended `unlimited` to [`Limits`], `limits_reached` to [`Verdict`], and
/// `mounts` ([`Mount`]) and `seccomp_policy` to [`SandboxConfig`]. Version 6 appended
/// [`Request::Status`] and [`Event::Status`] ([`DaemonStatus`]); the messages of
/// persistent sandboxes: `Request::CreateSandbox`, `Exec`, `DestroySandbox`,
/// `ListSandboxes`, `Event::SandboxCreated`, `SandboxEnded`, `Sandboxes` and
/// `ErrorKind::UnknownSandbox`; and `network` ([`NetworkFacts`]) to [`Event::Spawned`].
pub const PROTOCOL_VERSION: u32 = 6;

/// A message from a client to the zygote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// The first message on every connection.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
        /// A free-form name for the daemon's logs, e.g. `"hatchery-cli 0.1.0"`.
        client: String,
    },
    /// Start a sandboxed child. Fds for [`Stdio::Fd`] streams follow in stdin, stdout,
    /// stderr order.
    Spawn {
        /// Chosen by the client, unique among its live children.
        id: u64,
        /// What to run and how (boxed only to keep the enum small; the encoding is
        /// the request's own).
        request: Box<SpawnRequest>,
    },
    /// Send a signal to a child's sandbox (its init forwards it to the workload;
    /// `SIGKILL` ends the whole sandbox).
    Signal {
        /// The id the child was spawned with.
        id: u64,
        /// The signal number.
        signal: i32,
    },
    /// Ask the daemon about itself; answered by [`Event::Status`]. A client sees only
    /// its own uid's sandboxes, unless it is root or the daemon's own uid.
    Status {
        /// Chosen by the client, like a spawn's (the answer carries it).
        id: u64,
    },
    /// Create a persistent sandbox: its setup runs, and no command yet. Answered with
    /// [`Event::SandboxCreated`], later [`Event::SandboxEnded`] (same id) when it ends.
    CreateSandbox {
        /// Chosen by the client, unique among its live children and sandboxes.
        id: u64,
        /// The sandbox (its limits are the whole sandbox's).
        config: Box<SandboxConfig>,
        /// Its name, idle timeout, lifetime, and whether it survives this connection.
        options: SandboxOptions,
    },
    /// Run one more command in a live sandbox, forked by its init. Fds for
    /// [`Stdio::Fd`] streams follow in stdin, stdout, stderr order. Answered as a
    /// `Spawn` is: `Spawned`, then `Exited` with the command's own verdict.
    Exec {
        /// Chosen by the client, unique among its live children and commands.
        id: u64,
        /// The sandbox's name.
        sandbox: String,
        /// What to run.
        request: Box<ExecRequest>,
    },
    /// End a sandbox: every process in it killed, everything it held freed. Answered
    /// with [`Event::SandboxEnded`] for this id.
    DestroySandbox {
        /// Chosen by the client.
        id: u64,
        /// The sandbox's name.
        sandbox: String,
    },
    /// List the live persistent sandboxes this client may use (root: all). Answered
    /// with [`Event::Sandboxes`].
    ListSandboxes {
        /// Chosen by the client.
        id: u64,
    },
}

/// A message from the zygote to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The answer to a compatible [`Request::Hello`].
    Welcome {
        /// [`PROTOCOL_VERSION`] of the daemon.
        version: u32,
        /// The daemon's name and version, for logs.
        server: String,
    },
    /// The child's workload has been exec'd. The fds named in `fds` are attached, in
    /// that order.
    Spawned {
        /// The request id.
        id: u64,
        /// The pid of the sandbox (its init), as seen from the daemon's pid namespace.
        pid: i32,
        /// What each attached fd is.
        fds: Vec<FdRole>,
        /// The sandbox's veth network, if it has one: its addresses, gateways and the
        /// host end's name.
        network: Option<NetworkFacts>,
    },
    /// The child's sandbox has ended and been reaped.
    Exited {
        /// The request id.
        id: u64,
        /// How it ended and what it used.
        verdict: Verdict,
    },
    /// A request failed (`id` set) or the connection is being closed (`id` is `None`).
    Error {
        /// The request id, when the error concerns one request.
        id: Option<u64>,
        /// What kind of failure.
        kind: ErrorKind,
        /// A one-line human-readable explanation.
        message: String,
    },
    /// The answer to [`Request::Status`].
    Status {
        /// The request id.
        id: u64,
        /// The daemon's report (boxed only to keep the enum small).
        status: Box<DaemonStatus>,
    },
    /// A persistent sandbox is set up and ready for commands.
    SandboxCreated {
        /// The `CreateSandbox` request's id.
        id: u64,
        /// Its name (the one asked for, or the daemon's).
        name: String,
        /// The pid of its init, as seen from the daemon's pid namespace.
        pid: i32,
    },
    /// A persistent sandbox has ended and been reaped: sent for its `CreateSandbox` id
    /// (to its creator, if still connected) and for each `DestroySandbox` that asked.
    SandboxEnded {
        /// The request id.
        id: u64,
        /// How it ended and what it used.
        verdict: SandboxVerdict,
    },
    /// The answer to [`Request::ListSandboxes`].
    Sandboxes {
        /// The request id.
        id: u64,
        /// The live persistent sandboxes the client may use, by name.
        sandboxes: Vec<SandboxInfo>,
    },
}

/// What an fd attached to [`Event::Spawned`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdRole {
    /// The write end of the child's stdin pipe.
    Stdin,
    /// The read end of the child's stdout pipe.
    Stdout,
    /// The read end of the child's stderr pipe.
    Stderr,
    /// A pidfd of the sandbox's init: readable once it has exited.
    Pidfd,
    /// The read end of an entry's result pipe ([`Command::Entry`] only): one
    /// [`EntryResult`], written by the child, so untrusted.
    Result,
    /// The master of a persistent sandbox's command's terminal (`ExecRequest::pty`):
    /// read its output, write its input, set its window size.
    Pty,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The message could not be decoded, or came out of order; the connection is closed.
    Protocol,
    /// The client speaks another protocol version; the connection is closed.
    VersionMismatch {
        /// The version the daemon speaks.
        supported: u32,
    },
    /// The peer's uid or groups are not allowed to use this daemon.
    PermissionDenied,
    /// The request is invalid (see the message); nothing was started.
    InvalidRequest,
    /// The daemon is out of a resource (see the message); nothing was started.
    Busy,
    /// The program was not found inside the sandbox (`execve` gave `ENOENT`).
    NotFound,
    /// The program could not be executed (`execve` failed with this errno).
    CannotExecute {
        /// The errno of the failed `execve`.
        errno: i32,
    },
    /// A sandbox setup step failed; the child never ran.
    Setup {
        /// The step.
        step: SetupStep,
        /// What went wrong in it.
        error: SetupFailure,
    },
    /// The daemon failed on its side (e.g. `clone3` refused).
    Internal {
        /// The system call that failed, when there is one.
        error: Option<SysError>,
    },
    /// No live child has this id (for [`Request::Signal`]).
    UnknownId,
    /// The daemon is shutting down: no new spawns; with no id, the connection closes.
    ShuttingDown,
    /// This host cannot enforce these limits, and the request did not allow running
    /// without them; nothing was started.
    UnenforceableLimits {
        /// The limits that cannot be enforced.
        limits: Vec<Limit>,
    },
    /// The request asks for a veth network, but this daemon has none to give (it was
    /// started without `--veth-pool`, or cannot create links); nothing was started.
    NetworkUnavailable,
    /// Every subnet of the daemon's veth pool is taken by a live sandbox (or by one whose
    /// pair is still being torn down); nothing was started.
    AddressPoolExhausted,
    /// This zygote has no entry of that name (or, for [`Command::Exec`], does not run
    /// programs); nothing was started.
    UnknownEntry {
        /// The name asked for.
        name: String,
    },
    /// The entry's arguments do not decode as its argument type; nothing was started.
    BadEntryArgs {
        /// The entry's name.
        name: String,
    },
    /// No live persistent sandbox has this name.
    UnknownSandbox {
        /// The name asked for.
        name: String,
    },
}

impl ErrorKind {
    /// The kind's name in logs, e.g. `"invalid_request"`.
    ///
    /// ```
    /// use hatchery::protocol::ErrorKind;
    /// assert_eq!(ErrorKind::InvalidRequest.name(), "invalid_request");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::VersionMismatch { .. } => "version_mismatch",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Busy => "busy",
            ErrorKind::NotFound => "not_found",
            ErrorKind::CannotExecute { .. } => "cannot_execute",
            ErrorKind::Setup { .. } => "setup",
            ErrorKind::Internal { .. } => "internal",
            ErrorKind::UnknownId => "unknown_id",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::UnenforceableLimits { .. } => "unenforceable_limits",
            ErrorKind::NetworkUnavailable => "network_unavailable",
            ErrorKind::AddressPoolExhausted => "address_pool_exhausted",
            ErrorKind::UnknownEntry { .. } => "unknown_entry",
            ErrorKind::BadEntryArgs { .. } => "bad_entry_args",
            ErrorKind::UnknownSandbox { .. } => "unknown_sandbox",
        }
    }
}

/// How a sandbox ended and what it used: the body of [`Event::Exited`], returned by
/// `ChildProcess::wait` and `Client::output`.
///
/// ```no_run
/// use hatchery::{Client, EndReason, Limits, SandboxConfig, SpawnRequest};
///
/// let client = Client::connect("/run/hatchery.sock")?;
/// let request = SpawnRequest::new("/bin/sleep").arg("60").sandbox(SandboxConfig {
///     limits: Limits { wall_time_ms: Some(1_000), ..Limits::default() },
///     ..SandboxConfig::default()
/// });
/// let verdict = client.spawn_child(request)?.wait()?;
/// assert_eq!(verdict.reason, EndReason::WallTimeout);
/// assert_eq!(verdict.status.code(), 137); // SIGKILL, as a shell reports it
/// println!("ran {:?}, {} µs of CPU", verdict.wall_time(), verdict.user_cpu_us + verdict.system_cpu_us);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The workload's exit code or the signal that killed it.
    pub status: ExitStatus,
    /// Why the sandbox ended.
    pub reason: EndReason,
    /// Wall-clock time from spawn request to the end of the workload and everything it
    /// started, in microseconds.
    pub wall_time_us: u64,
    /// User CPU time of the workload and every process it started (of the whole sandbox,
    /// when it had a cgroup), in microseconds.
    pub user_cpu_us: u64,
    /// System CPU time, counted as `user_cpu_us` is, in microseconds.
    pub system_cpu_us: u64,
    /// Largest resident set of any single process of the workload's, in KiB.
    pub max_rss_kib: u64,
    /// Peak memory of the whole sandbox, in bytes, when it had a cgroup (it has one
    /// whenever a memory, pids, CPU or CPU-time limit applies).
    pub memory_peak_bytes: Option<u64>,
    /// Processes and threads started in the sandbox, the init included (the last pid
    /// its pid namespace handed out), when the init could report it.
    pub tasks_started: Option<u64>,
    /// The limits that were in force.
    pub limits: Limits,
    /// Limits the request asked for that could not be enforced here (only ever non-empty
    /// when the request allowed that with `allow_unenforced_limits`).
    pub skipped_limits: Vec<Limit>,
    /// Limits the sandbox ran into without being ended by them, where the host can tell:
    /// `pids` when a fork was refused at the pids limit and the sandbox had a cgroup
    /// (it has one when a memory, CPU or CPU-time limit applies; without one, a refused
    /// fork fails in the sandbox with `EAGAIN` and is not counted).
    pub limits_reached: LimitSet,
}

impl Verdict {
    /// Wall-clock time from spawn request to the end of the workload.
    pub fn wall_time(&self) -> Duration {
        Duration::from_micros(self.wall_time_us)
    }

    /// User CPU time, as [`Verdict::user_cpu_us`].
    pub fn user_cpu(&self) -> Duration {
        Duration::from_micros(self.user_cpu_us)
    }

    /// System CPU time, as [`Verdict::system_cpu_us`].
    pub fn system_cpu(&self) -> Duration {
        Duration::from_micros(self.system_cpu_us)
    }

    /// The verdict as the JSON object `hatchery run --verdict-json` writes (see
    /// `docs/protocol.md`): `exit_code` or `signal` (the other is `null`), times in
    /// milliseconds, the largest process's RSS in KiB, the sandbox's peak memory in bytes,
    /// the limits in force under their field names (`memory_bytes`, `wall_time_ms`, ...)
    /// and the defaults lifted (`unlimited`, when any were), and the kinds of any skipped
    /// and reached limits by their command-line names.
    ///
    /// ```
    /// use hatchery::protocol::{EndReason, ExitStatus, LimitSet, Limits, Verdict};
    /// let verdict = Verdict {
    ///     status: ExitStatus::Exited(3),
    ///     reason: EndReason::Exited,
    ///     wall_time_us: 1500,
    ///     user_cpu_us: 0,
    ///     system_cpu_us: 250,
    ///     max_rss_kib: 1024,
    ///     memory_peak_bytes: None,
    ///     tasks_started: Some(2),
    ///     limits: Limits { memory_bytes: Some(1 << 20), ..Limits::default() },
    ///     skipped_limits: vec![],
    ///     limits_reached: LimitSet::EMPTY,
    /// };
    /// let json = verdict.to_json();
    /// assert_eq!(json["exit_code"], 3);
    /// assert!(json["signal"].is_null());
    /// assert_eq!(json["reason"], "exited");
    /// assert_eq!(json["wall_time_ms"], 1.5);
    /// assert_eq!(json["limits"]["memory_bytes"], 1 << 20);
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        let (exit_code, signal) = match self.status {
            ExitStatus::Exited(code) => (Some(code), None),
            ExitStatus::Signaled(signal) => (None, Some(signal)),
        };
        let ms = |us: u64| us as f64 / 1000.0;
        let names = |set: LimitSet| set.iter().map(Limit::name).collect::<Vec<_>>();
        // The limits in force, under their field names, which carry their units; the
        // defaults lifted, by their command-line names, when there are any.
        let mut limits: serde_json::Map<String, serde_json::Value> =
            match serde_json::to_value(self.limits) {
                Ok(serde_json::Value::Object(all)) => {
                    all.into_iter().filter(|(_, v)| !v.is_null()).collect()
                }
                _ => serde_json::Map::new(),
            };
        limits.remove("unlimited");
        if !self.limits.unlimited.is_empty() {
            limits.insert("unlimited".into(), names(self.limits.unlimited).into());
        }
        serde_json::json!({
            "exit_code": exit_code,
            "signal": signal,
            "reason": self.reason.name(),
            "wall_time_ms": ms(self.wall_time_us),
            "user_cpu_ms": ms(self.user_cpu_us),
            "system_cpu_ms": ms(self.system_cpu_us),
            "max_rss_kib": self.max_rss_kib,
            "memory_peak_bytes": self.memory_peak_bytes,
            "tasks_started": self.tasks_started,
            "limits": limits,
            "skipped_limits": self.skipped_limits.iter().map(|kind| kind.name()).collect::<Vec<_>>(),
            "limits_reached": names(self.limits_reached),
        })
    }
}

/// The workload's exit code, or the signal that ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + N when killed by signal N.
    ///
    /// ```
    /// use hatchery::protocol::ExitStatus;
    /// assert_eq!(ExitStatus::Exited(3).code(), 3);
    /// assert_eq!(ExitStatus::Signaled(9).code(), 137);
    /// ```
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }

    /// Whether the workload exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// Decodes a raw wait status as returned by `wait4`.
    pub fn from_wait_status(raw: i32) -> ExitStatus {
        if libc::WIFSIGNALED(raw) {
            ExitStatus::Signaled(libc::WTERMSIG(raw))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(raw))
        }
    }
}

/// What to run in a sandbox, and how: the body of [`Request::Spawn`].
///
/// ```
/// use hatchery::protocol::{SpawnRequest, Stdio};
/// let request = SpawnRequest::new("/bin/echo")
///     .arg("hello")
///     .env("LANG", "C.UTF-8")
///     .cwd("/tmp")
///     .stdout(Stdio::Pipe);
/// assert_eq!(request.argv().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// The program and its arguments.
    pub command: Command,
    /// The complete environment of the workload: nothing is inherited.
    pub env: Vec<(OsBytes, OsBytes)>,
    /// The working directory inside the sandbox.
    pub cwd: OsBytes,
    /// The workload's stdin.
    pub stdin: Stdio,
    /// The workload's stdout.
    pub stdout: Stdio,
    /// The workload's stderr.
    pub stderr: Stdio,
    /// The sandbox around it.
    pub sandbox: SandboxConfig,
}

/// What the sandbox runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// `execve` a program. Without a `/` in `program`, it is looked up in the `PATH` of
    /// the request's environment (or `/usr/local/bin:/usr/bin:/bin` when there is none),
    /// inside the sandbox.
    Exec {
        /// The program to run.
        program: OsBytes,
        /// The full argument vector, `argv[0]` (the process name) included.
        argv: Vec<OsBytes>,
    },
    /// Call a named entry of the zygote, in a child forked from it (not exec'd), so that
    /// it shares the zygote's preloaded state. Its result comes back on the pipe of
    /// [`FdRole::Result`].
    Entry {
        /// The entry's name, as the zygote registered it.
        name: String,
        /// Its arguments, postcard-encoded.
        args: Vec<u8>,
    },
}

impl SpawnRequest {
    /// Runs `program` with `argv[0]` set to it, an empty environment, `/` as the working
    /// directory, piped stdio and the default sandbox.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program = OsBytes::from(program.as_ref());
        SpawnRequest {
            command: Command::Exec {
                argv: vec![program.clone()],
                program,
            },
            env: Vec::new(),
            cwd: OsBytes::from("/"),
            stdin: Stdio::Pipe,
            stdout: Stdio::Pipe,
            stderr: Stdio::Pipe,
            sandbox: SandboxConfig::default(),
        }
    }

    /// Calls the zygote's entry `name` with `args` (encoded here), with an empty
    /// environment, `/` as the working directory, stdin from `/dev/null`, piped stdout
    /// and stderr, and the default sandbox.
    ///
    /// ```
    /// use hatchery::protocol::{Command, SpawnRequest};
    /// let request = SpawnRequest::entry("lookup", &42u64)?;
    /// assert!(matches!(request.command, Command::Entry { ref name, .. } if name == "lookup"));
    /// assert!(request.argv().is_empty());
    /// # Ok::<(), postcard::Error>(())
    /// ```
    pub fn entry<A: Serialize + ?Sized>(
        name: impl Into<String>,
        args: &A,
    ) -> Result<Self, postcard::Error> {
        Ok(SpawnRequest {
            command: Command::Entry {
                name: name.into(),
                args: postcard::to_allocvec(args)?,
            },
            env: Vec::new(),
            cwd: OsBytes::from("/"),
            stdin: Stdio::Null,
            stdout: Stdio::Pipe,
            stderr: Stdio::Pipe,
            sandbox: SandboxConfig::default(),
        })
    }

    /// Appends one argument (a program's; ignored for an entry, whose arguments are
    /// typed).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        if let Command::Exec { argv, .. } = &mut self.command {
            argv.push(OsBytes::from(arg.as_ref()));
        }
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        args.into_iter().fold(self, |request, arg| request.arg(arg))
    }

    /// Sets `argv[0]`, the name `ps` shows (a program's only: an entry keeps the
    /// zygote's).
    pub fn process_name(mut self, name: impl AsRef<OsStr>) -> Self {
        if let Command::Exec { argv, .. } = &mut self.command {
            match argv.first_mut() {
                Some(first) => *first = OsBytes::from(name.as_ref()),
                None => argv.push(OsBytes::from(name.as_ref())),
            }
        }
        self
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((OsBytes::from(key.as_ref()), OsBytes::from(value.as_ref())));
        self
    }

    /// Sets the working directory inside the sandbox.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = OsBytes::from(dir.as_ref().as_os_str());
        self
    }

    /// Sets the workload's stdin.
    pub fn stdin(mut self, stdio: Stdio) -> Self {
        self.stdin = stdio;
        self
    }

    /// Sets the workload's stdout.
    pub fn stdout(mut self, stdio: Stdio) -> Self {
        self.stdout = stdio;
        self
    }

    /// Sets the workload's stderr.
    pub fn stderr(mut self, stdio: Stdio) -> Self {
        self.stderr = stdio;
        self
    }

    /// Sets the sandbox configuration.
    pub fn sandbox(mut self, sandbox: SandboxConfig) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// The argument vector of a program, `argv[0]` included; empty for an entry.
    pub fn argv(&self) -> &[OsBytes] {
        match &self.command {
            Command::Exec { argv, .. } => argv,
            Command::Entry { .. } => &[],
        }
    }

    /// The stdio specs in fd order (0, 1, 2).
    pub fn stdio(&self) -> [&Stdio; 3] {
        [&self.stdin, &self.stdout, &self.stderr]
    }
}

/// Where one of the workload's standard streams goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stdio {
    /// A new pipe; the client gets the other end in [`Event::Spawned`].
    Pipe,
    /// `/dev/null`.
    Null,
    /// An fd of the client's, passed with the request. On the wire only the variant is
    /// sent; the fd travels as `SCM_RIGHTS`.
    Fd(#[serde(skip)] PassedFd),
}

impl Stdio {
    /// Passes one of the client's own fds (a terminal, a file, a socket).
    pub fn fd(fd: OwnedFd) -> Stdio {
        Stdio::Fd(PassedFd(Some(Arc::new(fd))))
    }
}

/// An fd that travels beside a message rather than in it.
#[derive(Debug, Clone, Default)]
pub struct PassedFd(pub Option<Arc<OwnedFd>>);

impl PartialEq for PassedFd {
    fn eq(&self, other: &Self) -> bool {
        use std::os::fd::AsRawFd;
        self.0.as_ref().map(|fd| fd.as_raw_fd()) == other.0.as_ref().map(|fd| fd.as_raw_fd())
    }
}

/// The sandbox around a workload. Every layer is on unless listed in `opt_out`.
///
/// ```
/// use hatchery::protocol::{Bind, SandboxConfig};
/// let config = SandboxConfig {
///     hostname: "judge".into(),
///     binds: vec![Bind::read_only("/srv/tests", "/tests")],
///     ..SandboxConfig::default()
/// };
/// assert!(config.opt_out.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// A directory to use as the root instead of one built from the host's `/usr`,
    /// `/bin`, `/sbin`, `/lib*` and `/etc`: the root is a tmpfs of the sandbox's own
    /// holding the directory's top-level entries bound read-only (its `proc`, `dev` and
    /// `tmp` replaced by the sandbox's own), so that the directory needs no mount point
    /// and nothing is ever created in it.
    pub chroot_dir: Option<OsBytes>,
    /// Extra bind mounts, applied in order after the root is built.
    pub binds: Vec<Bind>,
    /// The sandbox's own hostname.
    pub hostname: String,
    /// The network the sandbox gets.
    pub network: NetworkConfig,
    /// The uid of the workload inside the sandbox (never 0).
    pub uid: u32,
    /// The gid of the workload inside the sandbox (never 0).
    pub gid: u32,
    /// Layers switched off, for debugging; the daemon logs each.
    pub opt_out: Vec<Layer>,
    /// Resource limits for the whole sandbox.
    pub limits: Limits,
    /// Run even if some requested limits cannot be enforced on this host; the verdict
    /// lists them. Without it, such a spawn fails.
    pub allow_unenforced_limits: bool,
    /// Kill the sandbox when the client's connection closes (the default). Without it the
    /// sandbox runs to its end and its verdict is dropped.
    pub kill_on_disconnect: bool,
    /// More of the sandbox's file tree, made in order after `binds`: tmpfs mounts,
    /// directories, symlinks, files, device binds and binds of sources that may be
    /// missing. A missing mount point is made in a tmpfs of the sandbox's own, never in
    /// a host directory that is bound read-only.
    pub mounts: Vec<Mount>,
    /// The seccomp policy, by one of the names the daemon loaded; `None`: the daemon's
    /// default (its first).
    pub seccomp_policy: Option<String>,
}

/// The uid and gid a workload has inside its sandbox unless the request says otherwise.
pub const DEFAULT_SANDBOX_ID: u32 = 1000;

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            chroot_dir: None,
            binds: Vec::new(),
            hostname: "hatchery".to_string(),
            network: NetworkConfig::None,
            uid: DEFAULT_SANDBOX_ID,
            gid: DEFAULT_SANDBOX_ID,
            opt_out: Vec::new(),
            limits: Limits::default(),
            allow_unenforced_limits: false,
            kill_on_disconnect: true,
            mounts: Vec::new(),
            seccomp_policy: None,
        }
    }
}

/// A bind mount of a host path into the sandbox. Always `nosuid` and `nodev`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bind {
    /// Absolute path on the host.
    pub source: OsBytes,
    /// Absolute path inside the sandbox.
    pub target: OsBytes,
    /// Whether the sandbox may write through it.
    pub writable: bool,
}

impl Bind {
    /// A read-only bind of `source` at `target`.
    pub fn read_only(source: impl AsRef<Path>, target: impl AsRef<Path>) -> Bind {
        Bind {
            source: OsBytes::from(source.as_ref().as_os_str()),
            target: OsBytes::from(target.as_ref().as_os_str()),
            writable: false,
        }
    }

    /// A writable bind of `source` at `target`.
    pub fn writable(source: impl AsRef<Path>, target: impl AsRef<Path>) -> Bind {
        Bind {
            writable: true,
            ..Bind::read_only(source, target)
        }
    }
}

/// One more part of a sandbox's file tree ([`SandboxConfig::mounts`]), as bubblewrap's
/// `--ro-bind-try`, `--dev-bind`, `--tmpfs`, `--dir`, `--symlink` and `--file` make.
/// Every target is an absolute path inside the sandbox, not `/`.
///
/// ```
/// use hatchery::protocol::{Mount, SandboxConfig};
/// let config = SandboxConfig {
///     mounts: vec![
///         Mount::Tmpfs { target: "/scratch".into() },
///         Mount::File { contents: b"nameserver 10.0.0.1\n".to_vec(), target: "/etc/resolv.conf".into() },
///         Mount::Symlink { points_to: "/scratch".into(), target: "/work".into() },
///     ],
///     ..SandboxConfig::default()
/// };
/// assert_eq!(config.mounts.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Mount {
    /// A bind as in [`SandboxConfig::binds`], skipped when its source does not exist.
    BindIfExists(Bind),
    /// A writable bind through which device nodes work (not `nodev`; still `nosuid`).
    /// Only where the daemon allows it (`serve --allow-dev-bind`).
    DevBind {
        /// Absolute path on the host.
        source: OsBytes,
        /// Absolute path inside the sandbox.
        target: OsBytes,
    },
    /// A new empty tmpfs, writable, sized as `/tmp` is (`Limits::tmp_size_bytes`,
    /// `tmp_inodes`).
    Tmpfs {
        /// Where.
        target: OsBytes,
    },
    /// A directory (with its missing parents), if nothing is there.
    Dir {
        /// Where.
        target: OsBytes,
    },
    /// A symbolic link.
    Symlink {
        /// What it points to (read inside the sandbox; may be relative).
        points_to: OsBytes,
        /// Where the link is.
        target: OsBytes,
    },
    /// A read-only file holding `contents` (at most
    /// [`MAX_FILE_BYTES`](validate::MAX_FILE_BYTES) in all the request's files).
    File {
        /// The file's bytes.
        contents: Vec<u8>,
        /// Where.
        target: OsBytes,
    },
}

impl Mount {
    /// Where in the sandbox it goes.
    pub fn target(&self) -> &OsBytes {
        match self {
            Mount::BindIfExists(bind) => &bind.target,
            Mount::DevBind { target, .. }
            | Mount::Tmpfs { target }
            | Mount::Dir { target }
            | Mount::Symlink { target, .. }
            | Mount::File { target, .. } => target,
        }
    }
}

/// The network a sandbox gets.
///
/// ```
/// use hatchery::protocol::{NetworkConfig, SandboxConfig, VethConfig};
/// let config = SandboxConfig {
///     network: NetworkConfig::Veth(VethConfig { mtu: Some(1400), ..VethConfig::default() }),
///     ..SandboxConfig::default()
/// };
/// assert_ne!(config.network, NetworkConfig::None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkConfig {
    /// An empty network namespace with only `lo`, up.
    None,
    /// A veth pair of its own: the host end in the daemon's network namespace, the other
    /// end inside the sandbox, each sandbox in a point-to-point subnet of the daemon's
    /// pool (IPv4 and/or IPv6), with a default route via the host end. See
    /// `docs/networking.md`.
    Veth(VethConfig),
}

/// The sandbox's end of a [`NetworkConfig::Veth`] pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VethConfig {
    /// The interface's name inside the sandbox [default: `eth0`].
    pub interface: Option<String>,
    /// The MTU of both ends, 1280 to 65535 [default: 1500].
    pub mtu: Option<u32>,
}

/// What a sandbox's veth network is, as [`Event::Spawned`] tells the client: so that a
/// client can offer a service to its own sandbox on the host end's address alone.
///
/// ```
/// use hatchery::protocol::{AddressFacts, NetworkFacts};
/// let facts = NetworkFacts {
///     interface: "eth0".into(),
///     host_interface: "hatch7".into(),
///     addresses: vec![AddressFacts {
///         address: "10.213.0.30".parse().unwrap(),
///         prefix_len: 30,
///         gateway: "10.213.0.29".parse().unwrap(),
///     }],
/// };
/// assert_eq!(facts.gateway_v4(), Some("10.213.0.29".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFacts {
    /// The sandbox end's name, inside the sandbox (`eth0` unless the request named it).
    pub interface: String,
    /// The host end's name, in the daemon's network namespace.
    pub host_interface: String,
    /// The sandbox end's addresses: IPv4 first, then IPv6, each family the daemon's
    /// pool has.
    pub addresses: Vec<AddressFacts>,
}

impl NetworkFacts {
    /// As `hatchery run --verdict-json` writes it: `{"interface", "host_interface",
    /// "addresses": [{"address", "prefix_len", "gateway"}]}`, addresses as text.
    pub fn to_json(&self) -> serde_json::Value {
        let addresses: Vec<serde_json::Value> = self
            .addresses
            .iter()
            .map(|a| {
                serde_json::json!({
                    "address": a.address.to_string(),
                    "prefix_len": a.prefix_len,
                    "gateway": a.gateway.to_string(),
                })
            })
            .collect();
        serde_json::json!({
            "interface": self.interface,
            "host_interface": self.host_interface,
            "addresses": addresses,
        })
    }

    /// The IPv4 gateway: the host end's IPv4 address.
    pub fn gateway_v4(&self) -> Option<std::net::IpAddr> {
        self.addresses
            .iter()
            .map(|a| a.gateway)
            .find(std::net::IpAddr::is_ipv4)
    }

    /// The IPv6 gateway: the host end's IPv6 address.
    pub fn gateway_v6(&self) -> Option<std::net::IpAddr> {
        self.addresses
            .iter()
            .map(|a| a.gateway)
            .find(std::net::IpAddr::is_ipv6)
    }
}

/// One address of a sandbox's veth end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressFacts {
    /// The sandbox end's address.
    pub address: std::net::IpAddr,
    /// Its prefix length (30 for IPv4, 126 for IPv6).
    pub prefix_len: u8,
    /// The host end's address of the same subnet: the default route's next hop.
    pub gateway: std::net::IpAddr,
}

/// A sandbox layer that a request may switch off for debugging, where the daemon allows
/// it (`serve --allow-unsafe-disable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layer {
    /// No seccomp filter.
    Seccomp,
    /// Share the daemon's network namespace instead of an empty one.
    NetworkNamespace,
}

impl Layer {
    /// Every layer, in wire order.
    pub const ALL: [Layer; 2] = [Layer::Seccomp, Layer::NetworkNamespace];

    /// Its name on the command line (`--unsafe-disable`, `--allow-unsafe-disable`).
    ///
    /// ```
    /// use hatchery::protocol::Layer;
    /// assert_eq!(Layer::NetworkNamespace.name(), "network-namespace");
    /// assert_eq!(Layer::from_name("seccomp"), Some(Layer::Seccomp));
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Layer::Seccomp => "seccomp",
            Layer::NetworkNamespace => "network-namespace",
        }
    }

    /// The layer of a command-line name.
    pub fn from_name(name: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|layer| layer.name() == name)
    }
}

/// One example of each [`ErrorKind`], in wire order, for the tests that must cover every
/// kind (the protocol document's tables, its Python client). Not part of the API. A kind
/// added to the enum fails to compile here until it has its example.
#[doc(hidden)]
pub fn one_of_each_error_kind() -> Vec<ErrorKind> {
    let error = || SysError {
        op: "mount(MS_BIND)".into(),
        path: Some("/nonexistent".into()),
        errno: 2,
    };
    let examples = vec![
        ErrorKind::Protocol,
        ErrorKind::VersionMismatch { supported: 7 },
        ErrorKind::PermissionDenied,
        ErrorKind::InvalidRequest,
        ErrorKind::Busy,
        ErrorKind::NotFound,
        ErrorKind::CannotExecute { errno: 13 },
        ErrorKind::Setup {
            step: SetupStep::RootDirectories,
            error: SetupFailure::Sys(error()),
        },
        ErrorKind::Internal {
            error: Some(error()),
        },
        ErrorKind::UnknownId,
        ErrorKind::ShuttingDown,
        ErrorKind::UnenforceableLimits {
            limits: vec![Limit::Memory, Limit::TmpInodes],
        },
        ErrorKind::NetworkUnavailable,
        ErrorKind::AddressPoolExhausted,
        ErrorKind::UnknownEntry { name: "e".into() },
        ErrorKind::BadEntryArgs { name: "e".into() },
        ErrorKind::UnknownSandbox { name: "s".into() },
    ];
    for kind in &examples {
        match kind {
            ErrorKind::Protocol
            | ErrorKind::VersionMismatch { .. }
            | ErrorKind::PermissionDenied
            | ErrorKind::InvalidRequest
            | ErrorKind::Busy
            | ErrorKind::NotFound
            | ErrorKind::CannotExecute { .. }
            | ErrorKind::Setup { .. }
            | ErrorKind::Internal { .. }
            | ErrorKind::UnknownId
            | ErrorKind::ShuttingDown
            | ErrorKind::UnenforceableLimits { .. }
            | ErrorKind::NetworkUnavailable
            | ErrorKind::AddressPoolExhausted
            | ErrorKind::UnknownEntry { .. }
            | ErrorKind::BadEntryArgs { .. }
            | ErrorKind::UnknownSandbox { .. } => {}
        }
    }
    examples
}

#[cfg(test)]
mod tests;
