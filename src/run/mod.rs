//! `hatchery run`: one command in a sandbox, with the caller's stdio, exiting with its
//! status. Runs in the CLI's process.
//!
//! The order: the options (a `--profile` file, then the flags over it) become a request,
//! with paths resolved as typed; the verdict file is opened; the daemon is chosen (a
//! named socket or nothing, see [`socket`]); the job runs; why it ended is printed
//! ([`report`]). Exit codes follow the docker/podman convention: the child's code, 128+N
//! when killed by signal N, 125 for hatchery's own failures, 126 when the program cannot
//! be executed, 127 when it is not found; and [`EXIT_NO_DAEMON`] when a named socket
//! cannot be used.

mod profile;
mod report;
mod request;
mod socket;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use hatchery::client::ForwardedSignals;
use hatchery::limits::{LimitFlags, NoPrefix};
use hatchery::{error_chain as chain, Verdict};

/// Exit code for hatchery's own failures.
pub const EXIT_HATCHERY: u8 = 125;
/// Exit code when the program cannot be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit code when the program is not found.
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit code when the socket named by `--socket`, `HATCHERY_SOCKET` (or found at the
/// default path) cannot be used: sysexits' `EX_UNAVAILABLE`, "a service is unavailable".
/// Not 125, so that a script can tell "the daemon I named is not there" (retry, or fix
/// the path) from a job hatchery refused or failed to set up.
pub const EXIT_NO_DAEMON: u8 = 69;

/// The flags of `hatchery run`.
#[derive(Args)]
#[command(after_help = "\
Exit codes: the program's own; 128+N when a signal N ended it (137 for a limit's kill); \
125 hatchery's own failure (bad flags, setup failure, refused request); 126 the program \
cannot be executed; 127 the program was not found; 69 the socket named by --socket or \
HATCHERY_SOCKET (or found at the default path) cannot be used.")]
pub struct RunArgs {
    /// Take the options from FILE (TOML, or JSON if it ends in .json; keys are these flags'
    /// names, e.g. `memory = "256M"`, `ro-bind = ["/srv:/srv"]`); flags override it, and
    /// list flags add to its lists (see docs/profiles/).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitFlags<NoPrefix>,
    /// Run even if this host cannot enforce some of the limits; the verdict lists them.
    #[arg(long)]
    allow_unenforced_limits: bool,
    /// The daemon's socket [default: $HATCHERY_SOCKET, else as for `serve`]. A socket
    /// named here or by HATCHERY_SOCKET is used, or nothing runs (exit 69).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Run in an embedded zygote of this command's own, under no daemon's policy. Without
    /// it, one starts only when no socket is named and none is at the default path.
    #[arg(long, conflicts_with = "socket")]
    embedded: bool,
    /// Print nothing of hatchery's own but errors: no notice of an embedded zygote, no
    /// line naming the limit that ended the job.
    #[arg(long, short)]
    quiet: bool,
    /// Use DIR, read-only, as the root instead of the host's /usr, /bin, /lib*, /etc
    /// (a relative DIR is from the current directory).
    #[arg(long, value_name = "DIR")]
    chroot: Option<PathBuf>,
    /// Bind SRC read-only at DST (default: the same path) inside the sandbox; a relative
    /// SRC is from the current directory, DST must be absolute.
    #[arg(long = "ro-bind", value_name = "SRC[:DST]")]
    ro_binds: Vec<String>,
    /// Bind SRC writable at DST (default: the same path) inside the sandbox; a relative
    /// SRC is from the current directory, DST must be absolute.
    #[arg(long = "bind", value_name = "SRC[:DST]")]
    binds: Vec<String>,
    /// Set an environment variable (repeatable); nothing else is passed.
    #[arg(long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Working directory inside the sandbox, an absolute path there [default: /].
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Hostname inside the sandbox [default: hatchery].
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Uid inside the sandbox [default: 1000].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = request::parse_id)]
    uid: Option<u32>,
    /// Gid inside the sandbox [default: 1000].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = request::parse_id)]
    gid: Option<u32>,
    /// Write the verdict (status, times, memory) as JSON to FILE (`-` for stdout). The
    /// file is created before the job starts.
    #[arg(long, value_name = "FILE")]
    verdict_json: Option<PathBuf>,
    /// The sandbox's network: `none` (only `lo`) or `veth` (a veth pair of its own, with
    /// IPv4 and IPv6 and a default route via the host end; see docs/networking.md)
    /// [default: none].
    #[arg(long, value_name = "KIND", value_parser = request::parse_net)]
    net: Option<request::Net>,
    /// The MTU of a `--net veth` pair [default: 1500].
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = request::parse_mtu)]
    net_mtu: Option<u32>,
    /// The name of the sandbox's end of a `--net veth` pair [default: eth0].
    #[arg(long, value_name = "NAME")]
    net_interface: Option<String>,
    /// Debugging only: switch off a sandbox layer (seccomp, network-namespace); a daemon
    /// allows it only when started with --allow-unsafe-disable.
    #[arg(long = "unsafe-disable", value_name = "LAYER", value_parser = request::parse_layer)]
    disable: Vec<hatchery::protocol::Layer>,
    /// Like --ro-bind, but skipped if SRC does not exist.
    #[arg(long = "ro-bind-try", value_name = "SRC[:DST]")]
    ro_bind_tries: Vec<String>,
    /// Like --bind, but skipped if SRC does not exist.
    #[arg(long = "bind-try", value_name = "SRC[:DST]")]
    bind_tries: Vec<String>,
    /// Bind SRC writable at DST with its device nodes usable (a daemon allows it only
    /// when started with --allow-dev-bind).
    #[arg(long = "dev-bind", value_name = "SRC[:DST]")]
    dev_binds: Vec<String>,
    /// Mount a new empty tmpfs at DIR (sized as /tmp).
    #[arg(long = "tmpfs", value_name = "DIR")]
    tmpfs: Vec<PathBuf>,
    /// Make the directory DIR (and its parents) inside the sandbox.
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Make a symlink at DST pointing to SRC inside the sandbox.
    #[arg(long = "symlink", num_args = 2, value_names = ["SRC", "DST"])]
    symlinks: Vec<OsString>,
    /// Put what this process reads from its fd FD at DST, read-only (at most 64 KiB in
    /// all files).
    #[arg(long = "file", num_args = 2, value_names = ["FD", "DST"])]
    files: Vec<OsString>,
    /// Put a copy of the host file PATH at DST, read-only (at most 64 KiB in all files).
    #[arg(long = "file-from", num_args = 2, value_names = ["PATH", "DST"])]
    files_from: Vec<OsString>,
    /// The seccomp policy, by a name the daemon loaded (`default`, `strict` unless its
    /// operator chose others) [default: the daemon's first].
    #[arg(long, value_name = "NAME")]
    seccomp_policy: Option<String>,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM [ARGS]...")]
    command: Vec<OsString>,
}

/// A failure of `run` itself: its exit code and the line that says why.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Hatchery's own failure (exit 125).
    fn hatchery(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_HATCHERY,
            message: message.into(),
        }
    }
}

/// Runs the command and returns the exit code, having printed any failure.
pub fn main(args: RunArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            eprintln!("hatchery: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let options = match &args.profile {
        Some(path) => profile::load(path)?,
        None => profile::Options::default(),
    }
    .overridden_by(&args);
    let request = request::build(&options, &args.command)?;
    // Checked before the job runs, so that a path that cannot be written costs nothing
    // and the job's exit status is never lost to it.
    let mut verdict_out = args
        .verdict_json
        .as_deref()
        .map(VerdictOut::open)
        .transpose()?;
    // Held from before the connection, so that no SIGINT/SIGTERM is lost: until the
    // sandbox runs, one ends `run` at once (however long the daemon takes to answer), and
    // the daemon kills whatever it started for this connection; then each is forwarded
    // to the sandbox.
    let signals = ForwardedSignals::hold().map_err(|e| Failure::hatchery(chain(&e)))?;
    let target = socket::choose(args.socket.as_deref(), args.embedded);
    let (client, embedded) = socket::connect(
        &target,
        options.net == request::Net::Veth,
        args.quiet,
        &signals,
    )?;
    let mut child = signals
        .unless_interrupted(|| client.spawn_child(request), interrupted)
        .map_err(|e| Failure::hatchery(chain(&e)))?
        .map_err(|e| report::spawn_failure(&e, &args.command[0]))?;
    let network = child.network.take();
    let verdict = child
        .wait_forwarding(&signals)
        .map_err(|e| report::lost_daemon(&e))?;
    drop(child);
    drop(client);
    if let Some(zygote) = embedded {
        zygote.wait();
    }
    if !args.quiet {
        if let Some(line) = report::end_reason(&verdict) {
            eprintln!("hatchery: {line}");
        }
    }
    if let Some(out) = &mut verdict_out {
        out.write(&verdict, network.as_ref())?;
    }
    Ok(ExitCode::from((verdict.status.code() & 0xff) as u8))
}

/// Where `--verdict-json` goes: opened (the file created) before the job runs.
enum VerdictOut {
    Stdout,
    File { file: std::fs::File, typed: PathBuf },
}

impl VerdictOut {
    fn open(path: &std::path::Path) -> Result<VerdictOut, Failure> {
        if path.as_os_str() == "-" {
            return Ok(VerdictOut::Stdout);
        }
        std::fs::File::create(path)
            .map(|file| VerdictOut::File {
                file,
                typed: path.to_path_buf(),
            })
            .map_err(|e| {
                Failure::hatchery(format!(
                    "--verdict-json {}: cannot create it: {}",
                    path.display(),
                    report::io_reason(&e)
                ))
            })
    }

    /// Writes the verdict, and the sandbox's network under `network` if it had a veth.
    fn write(
        &mut self,
        verdict: &Verdict,
        network: Option<&hatchery::protocol::NetworkFacts>,
    ) -> Result<(), Failure> {
        let mut json = verdict.to_json();
        if let (Some(network), Some(object)) = (network, json.as_object_mut()) {
            object.insert("network".into(), network.to_json());
        }
        let text = format!("{json:#}\n");
        match self {
            VerdictOut::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .map_err(|e| {
                        Failure::hatchery(format!("--verdict-json -: {}", report::io_reason(&e)))
                    })
            }
            VerdictOut::File { file, typed } => file.write_all(text.as_bytes()).map_err(|e| {
                Failure::hatchery(format!(
                    "--verdict-json {}: {}",
                    typed.display(),
                    report::io_reason(&e)
                ))
            }),
        }
    }
}

/// Ends `run` when a signal it holds arrives before its sandbox runs: with 128 + the
/// signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a command the
/// signal ended.
fn interrupted(signal: i32) -> std::convert::Infallible {
    let name = nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"));
    eprintln!("hatchery: {name} before the sandbox started; its start is cancelled");
    std::process::exit(128 + signal)
}
