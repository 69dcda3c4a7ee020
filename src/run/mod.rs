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

pub(crate) mod profile;
pub(crate) mod report;
pub(crate) mod request;
pub(crate) mod socket;
pub(crate) mod tty;
pub(crate) mod values;

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
    #[arg(long, value_name = "FILE", env = "HATCHERY_RUN_PROFILE")]
    profile: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitFlags<NoPrefix>,
    /// Run even if this host cannot enforce some of the limits; the verdict lists them.
    #[arg(long, env = "HATCHERY_RUN_ALLOW_UNENFORCED_LIMITS", value_parser = clap::builder::BoolishValueParser::new())]
    allow_unenforced_limits: bool,
    /// The daemon's socket [default: $HATCHERY_SOCKET, else as for `serve`]. A socket
    /// named here or by HATCHERY_SOCKET is used, or nothing runs (exit 69).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Run in an embedded zygote of this command's own, under no daemon's policy. Without
    /// it, one starts only when no socket is named and none is at the default path (with
    /// `--socket`: refused as a flag, overridden from the variable).
    #[arg(long, env = "HATCHERY_RUN_EMBEDDED", value_parser = clap::builder::BoolishValueParser::new())]
    embedded: bool,
    /// Print nothing of hatchery's own but errors: no notice of an embedded zygote, no
    /// line naming the limit that ended the job.
    #[arg(long, short, env = "HATCHERY_RUN_QUIET", value_parser = clap::builder::BoolishValueParser::new())]
    quiet: bool,
    /// Use DIR, read-only, as the root instead of the host's /usr, /bin, /lib*, /etc
    /// (a relative DIR is from the current directory).
    #[arg(long, value_name = "DIR", env = "HATCHERY_RUN_CHROOT")]
    chroot: Option<PathBuf>,
    /// Bind SRC read-only at DST (default: the same path) inside the sandbox; a relative
    /// SRC is from the current directory, DST must be absolute.
    #[arg(
        long = "ro-bind",
        value_name = "SRC[:DST]",
        env = "HATCHERY_RUN_RO_BIND"
    )]
    ro_binds: Vec<String>,
    /// Bind SRC writable at DST (default: the same path) inside the sandbox; a relative
    /// SRC is from the current directory, DST must be absolute.
    #[arg(long = "bind", value_name = "SRC[:DST]", env = "HATCHERY_RUN_BIND")]
    binds: Vec<String>,
    /// Set an environment variable (repeatable); nothing else is passed.
    #[arg(long = "env", value_name = "KEY=VAL", env = "HATCHERY_RUN_ENV")]
    env: Vec<String>,
    /// Working directory inside the sandbox, an absolute path there [default: /].
    #[arg(long, value_name = "DIR", env = "HATCHERY_RUN_CWD")]
    cwd: Option<PathBuf>,
    /// Hostname inside the sandbox [default: hatchery].
    #[arg(long, value_name = "NAME", env = "HATCHERY_RUN_HOSTNAME")]
    hostname: Option<String>,
    /// Uid inside the sandbox [default: 1000].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = values::parse_id, env = "HATCHERY_RUN_UID")]
    uid: Option<u32>,
    /// Gid inside the sandbox [default: 1000].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = values::parse_id, env = "HATCHERY_RUN_GID")]
    gid: Option<u32>,
    /// Write the verdict (status, times, memory) as JSON to FILE (`-` for stdout). The
    /// file is created before the job starts.
    #[arg(long, value_name = "FILE", env = "HATCHERY_RUN_VERDICT_JSON")]
    verdict_json: Option<PathBuf>,
    /// The sandbox's network: `none` (only `lo`) or `veth` (a veth pair of its own, with
    /// IPv4 and IPv6 and a default route via the host end; see docs/networking.md)
    /// [default: none].
    #[arg(long, value_name = "KIND", value_parser = values::parse_net, env = "HATCHERY_RUN_NET")]
    net: Option<values::Net>,
    /// The MTU of a `--net veth` pair [default: 1500].
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = values::parse_mtu, env = "HATCHERY_RUN_NET_MTU")]
    net_mtu: Option<u32>,
    /// The name of the sandbox's end of a `--net veth` pair [default: eth0].
    #[arg(long, value_name = "NAME", env = "HATCHERY_RUN_NET_INTERFACE")]
    net_interface: Option<String>,
    /// Debugging only: switch off a sandbox layer (seccomp, network-namespace); a daemon
    /// allows it only when started with --allow-unsafe-disable.
    #[arg(long = "unsafe-disable", value_name = "LAYER", value_parser = values::parse_layer, value_delimiter = ',', env = "HATCHERY_RUN_UNSAFE_DISABLE")]
    disable: Vec<hatchery::protocol::Layer>,
    /// Like --ro-bind, but skipped if SRC does not exist.
    #[arg(
        long = "ro-bind-try",
        value_name = "SRC[:DST]",
        env = "HATCHERY_RUN_RO_BIND_TRY"
    )]
    ro_bind_tries: Vec<String>,
    /// Like --bind, but skipped if SRC does not exist.
    #[arg(
        long = "bind-try",
        value_name = "SRC[:DST]",
        env = "HATCHERY_RUN_BIND_TRY"
    )]
    bind_tries: Vec<String>,
    /// Bind SRC writable at DST with its device nodes usable (a daemon allows it only
    /// when started with --allow-dev-bind).
    #[arg(
        long = "dev-bind",
        value_name = "SRC[:DST]",
        env = "HATCHERY_RUN_DEV_BIND"
    )]
    dev_binds: Vec<String>,
    /// Mount a new empty tmpfs at DIR (sized as /tmp).
    #[arg(long = "tmpfs", value_name = "DIR", env = "HATCHERY_RUN_TMPFS")]
    tmpfs: Vec<PathBuf>,
    /// Make the directory DIR (and its parents) inside the sandbox.
    #[arg(long = "dir", value_name = "DIR", env = "HATCHERY_RUN_DIR")]
    dirs: Vec<PathBuf>,
    /// Make a symlink at DST pointing to SRC inside the sandbox (no variable: two values;
    /// a `--profile` file has `symlink = [["SRC", "DST"]]`).
    #[arg(long = "symlink", num_args = 2, value_names = ["SRC", "DST"])]
    symlinks: Vec<OsString>,
    /// Put what this process reads from its fd FD at DST, read-only (at most 64 KiB in
    /// all files; no variable: two values).
    #[arg(long = "file", num_args = 2, value_names = ["FD", "DST"])]
    files: Vec<OsString>,
    /// Put a copy of the host file PATH at DST, read-only (at most 64 KiB in all files;
    /// no variable: two values; a `--profile` file has `file-from = [["PATH", "DST"]]`).
    #[arg(long = "file-from", num_args = 2, value_names = ["PATH", "DST"])]
    files_from: Vec<OsString>,
    /// The seccomp policy, by a name the daemon loaded (`default`, `strict` unless its
    /// operator chose others) [default: the daemon's first].
    #[arg(long, value_name = "NAME", env = "HATCHERY_RUN_SECCOMP_POLICY")]
    seccomp_policy: Option<String>,
    /// Run the program on a terminal of the sandbox's own (its stdio and controlling
    /// terminal, in a fresh sandbox), driven from this one in raw mode; `TERM` is passed
    /// unless --env sets it. Refused when stdin is not a terminal.
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM [ARGS]...")]
    command: Vec<OsString>,
}

/// Settles `--embedded` against `--socket` where one of them came from a variable: both
/// typed on the command line are a usage error; a typed `--socket` wins over
/// `HATCHERY_RUN_EMBEDDED` (flags win over variables).
pub fn settle_embedded(args: &mut RunArgs, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
    use clap::parser::ValueSource;
    let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    if !args.embedded || args.socket.is_none() {
        return Ok(());
    }
    if typed("embedded") {
        let mut cmd = <RunArgs as clap::Args>::augment_args(clap::Command::new("hatchery run"));
        return Err(cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            "the argument '--embedded' cannot be used with '--socket <PATH>'",
        ));
    }
    args.embedded = false;
    Ok(())
}

/// A failure of `run` itself: its exit code and the line that says why.
pub struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Hatchery's own failure (exit 125).
    pub(crate) fn hatchery(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_HATCHERY,
            message: message.into(),
        }
    }
}

/// Which command runs the job: `run`, or `shell` (run's options, on a terminal, with a
/// shell, `PATH`, `HOME` and directory where they leave a choice).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Shell,
}

/// Runs the command and returns the exit code, having printed any failure.
pub fn main(args: RunArgs, mode: Mode) -> ExitCode {
    match run(args, mode) {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            eprintln!("hatchery: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: RunArgs, mode: Mode) -> Result<ExitCode, Failure> {
    // `run -t` needs a terminal to drive; `shell` takes what it is given.
    if args.tty && mode == Mode::Run {
        tty::check_stdin()?;
    }
    let mut options = match &args.profile {
        Some(path) => profile::load(path)?,
        None => profile::Options::default(),
    }
    .overridden_by(&args);
    let mut command = args.command.clone();
    if mode == Mode::Shell {
        tty::shell_defaults(&mut options, &mut command);
    }
    let on_terminal = args.tty || mode == Mode::Shell;
    let request = match on_terminal {
        true => request::sandboxed(&options, &command)?,
        false => request::build(&options, &command)?,
    };
    // Checked before the job runs, so that a path that cannot be written costs nothing
    // and the job's exit status is never lost to it.
    let mut verdict_out = args
        .verdict_json
        .as_deref()
        .map(VerdictOut::open)
        .transpose()?;
    let veth = options.net == values::Net::Veth;
    if on_terminal {
        let outcome = tty::run(request, &command[0], &args, veth)?;
        if let Some(verdict) = &outcome.verdict {
            report_end(verdict, args.quiet);
            if let Some(out) = &mut verdict_out {
                out.write(verdict, None)?;
            }
        }
        return Ok(ExitCode::from(outcome.code));
    }
    // Held from before the connection, so that no SIGINT/SIGTERM is lost: until the
    // sandbox runs, one ends `run` at once (however long the daemon takes to answer), and
    // the daemon kills whatever it started for this connection; then each is forwarded
    // to the sandbox.
    let signals = ForwardedSignals::hold().map_err(|e| Failure::hatchery(chain(&e)))?;
    let target = socket::choose(args.socket.as_deref(), args.embedded);
    let (client, embedded) = socket::connect(&target, veth, args.quiet, Some(&signals))?;
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
    report_end(&verdict, args.quiet);
    if let Some(out) = &mut verdict_out {
        out.write(&verdict, network.as_ref())?;
    }
    Ok(ExitCode::from((verdict.status.code() & 0xff) as u8))
}

/// Prints why the job ended when a limit or a signal ended it, unless `--quiet`.
fn report_end(verdict: &Verdict, quiet: bool) {
    if quiet {
        return;
    }
    for line in report::end_reason(verdict)
        .into_iter()
        .chain(report::limits_reached(verdict))
    {
        eprintln!("hatchery: {line}");
    }
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
