//! The nouns of persistent sandboxes: a sandbox that outlives its commands
//! ([`SandboxOptions`]), one more command in it ([`ExecRequest`]), and how it ended
//! ([`SandboxVerdict`]). Used by the client and the daemon alike; no I/O here.

use std::ffi::OsStr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Command, Limits, OsBytes, SpawnRequest, Stdio};

/// The longest name a persistent sandbox may have, in bytes.
pub const MAX_SANDBOX_NAME: usize = 64;

/// How a persistent sandbox lives: the options of `Request::CreateSandbox`.
///
/// ```
/// use hatchery::protocol::SandboxOptions;
/// let options = SandboxOptions {
///     name: Some("build-42".into()),
///     idle_timeout_ms: Some(60_000),
///     ..SandboxOptions::default()
/// };
/// assert!(!options.survive_creator);
/// assert!(options.check().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxOptions {
    /// Its name, unique in the daemon (letters, digits, `-`, `_`, `.`; at most
    /// [`MAX_SANDBOX_NAME`] bytes, not starting with `.`); `None`: the daemon names it
    /// (`sandbox-N`).
    pub name: Option<String>,
    /// End it once no command has run in it for this long (from its creation or its last
    /// command's end).
    pub idle_timeout_ms: Option<u64>,
    /// End it this long after its creation, whatever runs in it (its wall-time limit:
    /// the lower of this and `SandboxConfig::limits.wall_time_ms` applies).
    pub lifetime_ms: Option<u64>,
    /// Keep it when the connection that created it closes (until it is destroyed, idle
    /// or out of lifetime). Without it, the creator's disconnect ends it.
    pub survive_creator: bool,
}

impl SandboxOptions {
    /// Checks the name and the durations, in the words of the fields.
    pub fn check(&self) -> Result<(), String> {
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        if self.idle_timeout_ms == Some(0) {
            return Err("idle_timeout_ms must be at least 1".into());
        }
        if self.lifetime_ms == Some(0) {
            return Err("lifetime_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// Checks a sandbox's name: 1 to [`MAX_SANDBOX_NAME`] bytes of letters, digits, `-`,
/// `_` and `.`, not starting with `.` or `-`.
///
/// ```
/// use hatchery::protocol::check_sandbox_name;
/// assert!(check_sandbox_name("web-1").is_ok());
/// assert!(check_sandbox_name("../etc").is_err());
/// assert!(check_sandbox_name("").is_err());
/// ```
pub fn check_sandbox_name(name: &str) -> Result<(), String> {
    check_name(name)
}

fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_SANDBOX_NAME {
        return Err(format!(
            "a sandbox name has 1 to {MAX_SANDBOX_NAME} characters"
        ));
    }
    if name.starts_with(['.', '-']) || !name.chars().all(allowed) {
        return Err(format!(
            "sandbox name {:?}: only letters, digits, '-', '_' and '.' (not first)",
            name.escape_debug().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// One more command in a live sandbox: the body of `Request::Exec`. It shares the
/// sandbox's root, `/tmp`, processes, IPC and network with every other command there,
/// and has its own limits and verdict.
///
/// ```
/// use hatchery::protocol::{ExecRequest, Stdio};
/// let request = ExecRequest::new("sh")
///     .args(["-c", "ls /tmp"])
///     .env("PATH", "/usr/bin:/bin")
///     .cwd("/tmp")
///     .wall_time_ms(5_000)
///     .stdin(Stdio::Null);
/// assert_eq!(request.argv.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The program; without a `/`, looked up in the `PATH` of `env` (or
    /// `/usr/local/bin:/usr/bin:/bin`), inside the sandbox.
    pub program: OsBytes,
    /// The full argument vector, `argv[0]` included.
    pub argv: Vec<OsBytes>,
    /// The complete environment: nothing is inherited.
    pub env: Vec<(OsBytes, OsBytes)>,
    /// The working directory inside the sandbox.
    pub cwd: OsBytes,
    /// Its stdin.
    pub stdin: Stdio,
    /// Its stdout.
    pub stdout: Stdio,
    /// Its stderr.
    pub stderr: Stdio,
    /// Killed (its process group) this long after the request arrived.
    pub wall_time_ms: Option<u64>,
    /// Its CPU time, as `RLIMIT_CPU` of each of its processes, in whole seconds rounded
    /// up: `SIGXCPU` at the limit, `SIGKILL` a second later.
    pub cpu_time_ms: Option<u64>,
    /// A terminal: a pty from the sandbox's own devpts, of this size, the command's
    /// stdin, stdout, stderr and controlling terminal (in a new session); its master
    /// comes back with `Spawned` (`FdRole::Pty`). The three `Stdio`s are then unused.
    pub pty: Option<WindowSize>,
}

/// A terminal's size, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl ExecRequest {
    /// Runs `program` (`argv[0]` set to it) with an empty environment, `/` as its
    /// directory and piped stdio.
    pub fn new(program: impl AsRef<OsStr>) -> ExecRequest {
        let program = OsBytes::from(program.as_ref());
        ExecRequest {
            argv: vec![program.clone()],
            program,
            env: Vec::new(),
            cwd: OsBytes::from("/"),
            stdin: Stdio::Pipe,
            stdout: Stdio::Pipe,
            stderr: Stdio::Pipe,
            wall_time_ms: None,
            cpu_time_ms: None,
            pty: None,
        }
    }

    /// Gives it a terminal of `rows` × `cols` (see [`ExecRequest::pty`]).
    pub fn pty(mut self, rows: u16, cols: u16) -> Self {
        self.pty = Some(WindowSize { rows, cols });
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.argv.push(OsBytes::from(arg.as_ref()));
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

    /// Sets its stdin.
    pub fn stdin(mut self, stdio: Stdio) -> Self {
        self.stdin = stdio;
        self
    }

    /// Sets its stdout.
    pub fn stdout(mut self, stdio: Stdio) -> Self {
        self.stdout = stdio;
        self
    }

    /// Sets its stderr.
    pub fn stderr(mut self, stdio: Stdio) -> Self {
        self.stderr = stdio;
        self
    }

    /// Sets its wall-time limit.
    pub fn wall_time_ms(mut self, ms: u64) -> Self {
        self.wall_time_ms = Some(ms);
        self
    }

    /// Sets its CPU-time limit.
    pub fn cpu_time_ms(mut self, ms: u64) -> Self {
        self.cpu_time_ms = Some(ms);
        self
    }

    /// The stdio specs in fd order (0, 1, 2).
    pub fn stdio(&self) -> [&Stdio; 3] {
        [&self.stdin, &self.stdout, &self.stderr]
    }

    /// The limits of this command alone, as its verdict lists them.
    pub fn limits(&self) -> Limits {
        Limits {
            wall_time_ms: self.wall_time_ms,
            cpu_time_ms: self.cpu_time_ms,
            ..Limits::default()
        }
    }

    /// The same command as a [`SpawnRequest`] (the default sandbox): what the checks of
    /// a spawn's program, arguments, environment and directory take.
    pub fn as_spawn_request(&self) -> SpawnRequest {
        SpawnRequest {
            command: Command::Exec {
                program: self.program.clone(),
                argv: self.argv.clone(),
            },
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
            sandbox: Default::default(),
        }
    }
}

/// One live persistent sandbox, as `Request::ListSandboxes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// Its name.
    pub name: String,
    /// The uid that created it (`None`: the embedded zygote's client).
    pub owner_uid: Option<u32>,
    /// Since its creation, in milliseconds.
    pub age_ms: u64,
    /// Its commands whose first process has not ended.
    pub commands_running: u64,
    /// Its cgroup's peak memory so far, when it has a cgroup.
    pub memory_peak_bytes: Option<u64>,
}

/// Why a persistent sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxEndReason {
    /// A client destroyed it (`Request::DestroySandbox`).
    Destroyed,
    /// No command ran in it for its idle timeout.
    IdleTimeout,
    /// Its lifetime (its wall-time limit) ran out.
    Lifetime,
    /// The connection that created it closed, and it was not to survive that.
    CreatorGone,
    /// It exceeded its memory limit.
    OomKilled,
    /// Its CPU-time limit (all its commands together) ran out.
    CpuTimeout,
    /// The daemon shut down.
    DaemonShutdown,
    /// Its init ended by itself (it should not: a failure inside).
    Died,
}

impl SandboxEndReason {
    /// The name used in JSON and by the CLI, e.g. `"idle_timeout"`.
    pub fn name(self) -> &'static str {
        match self {
            SandboxEndReason::Destroyed => "destroyed",
            SandboxEndReason::IdleTimeout => "idle_timeout",
            SandboxEndReason::Lifetime => "lifetime",
            SandboxEndReason::CreatorGone => "creator_gone",
            SandboxEndReason::OomKilled => "oom_killed",
            SandboxEndReason::CpuTimeout => "cpu_timeout",
            SandboxEndReason::DaemonShutdown => "daemon_shutdown",
            SandboxEndReason::Died => "died",
        }
    }
}

/// How a persistent sandbox ended and what it used: the body of `Event::SandboxEnded`,
/// returned by `Sandbox::destroy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxVerdict {
    /// Its name.
    pub name: String,
    /// Why it ended.
    pub reason: SandboxEndReason,
    /// From its creation to its end, in microseconds.
    pub wall_time_us: u64,
    /// User CPU time of everything that ran in it, in microseconds.
    pub user_cpu_us: u64,
    /// System CPU time, counted as `user_cpu_us` is.
    pub system_cpu_us: u64,
    /// Peak memory of the whole sandbox, in bytes, when it had a cgroup.
    pub memory_peak_bytes: Option<u64>,
    /// Commands started in it (those whose program was exec'd).
    pub commands_run: u64,
    /// The sandbox's limits that were in force.
    pub limits: Limits,
}
