//! The `hatchery` command: `serve` runs the daemon, `run` runs one sandboxed command.
//!
//! Parses the command line, calls the library, prints. Exit codes of `run` follow the
//! docker/podman convention: the child's code, 128+N when killed by signal N, 125 for
//! hatchery's own failures, 126 when the program cannot be executed, 127 when it is not
//! found.

#![deny(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use hatchery::client::{default_socket_path, ConnectError, ForwardedSignals};
use hatchery::limits::{LimitFlags, NoPrefix};
use hatchery::protocol::{
    Bind, Layer, NetworkConfig, SandboxConfig, SpawnRequest, Stdio, VethConfig, DEFAULT_SANDBOX_ID,
};
use hatchery::zygote::args::ServeArgs;
use hatchery::zygote::embedded::{self, EmbeddedZygote};
use hatchery::zygote::Zygote;
use hatchery::NetworkSettings;
use hatchery::{error_chain as chain, Client, SpawnError, Verdict};

/// Exit code for hatchery's own failures.
const EXIT_HATCHERY: u8 = 125;
/// Exit code when the program cannot be executed.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit code when the program is not found.
const EXIT_NOT_FOUND: u8 = 127;

#[derive(Parser)]
#[command(
    name = "hatchery",
    version,
    about = "A sandboxed process spawner for Linux"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the zygote daemon.
    Serve(ServeArgs),
    /// Run one command in a sandbox and exit with its status.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    limits: LimitFlags<NoPrefix>,
    /// Run even if this host cannot enforce some of the limits; the verdict lists them.
    #[arg(long)]
    allow_unenforced_limits: bool,
    /// Daemon socket [default: as for `serve`]; without a reachable daemon, an embedded
    /// zygote runs this one command.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Use DIR, read-only, as the root instead of the host's /usr, /bin, /lib*, /etc.
    #[arg(long, value_name = "DIR")]
    chroot: Option<PathBuf>,
    /// Bind SRC read-only at DST (default: the same path) inside the sandbox.
    #[arg(long = "ro-bind", value_name = "SRC[:DST]")]
    ro_binds: Vec<String>,
    /// Bind SRC writable at DST (default: the same path) inside the sandbox.
    #[arg(long = "bind", value_name = "SRC[:DST]")]
    binds: Vec<String>,
    /// Set an environment variable (repeatable); nothing else is passed.
    #[arg(long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(long, default_value = "/")]
    cwd: PathBuf,
    /// Hostname inside the sandbox.
    #[arg(long, default_value = "hatchery")]
    hostname: String,
    /// Uid inside the sandbox.
    #[arg(long, default_value_t = DEFAULT_SANDBOX_ID)]
    uid: u32,
    /// Gid inside the sandbox.
    #[arg(long, default_value_t = DEFAULT_SANDBOX_ID)]
    gid: u32,
    /// Write the verdict (status, times, memory) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    verdict_json: Option<PathBuf>,
    /// The sandbox's network: `none` (only `lo`) or `veth` (a veth pair of its own, with
    /// IPv4 and IPv6 and a default route via the host end; see docs/networking.md).
    #[arg(long, value_name = "KIND", default_value = "none", value_parser = parse_net)]
    net: Net,
    /// The MTU of a `--net veth` pair [default: 1500].
    #[arg(long, value_name = "BYTES")]
    net_mtu: Option<u32>,
    /// The name of the sandbox's end of a `--net veth` pair [default: eth0].
    #[arg(long, value_name = "NAME")]
    net_interface: Option<String>,
    /// Debugging only: switch off a sandbox layer (seccomp, network-namespace).
    #[arg(long = "unsafe-disable", value_name = "LAYER", value_parser = parse_layer)]
    disable: Vec<Layer>,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM [ARGS]...")]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors are hatchery's own failures (125, as docker has it); --help
            // and --version are not errors.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_HATCHERY)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Serve(args) => {
            args.log_format.install("info");
            match serve(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("hatchery serve: {message}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run(args) => {
            init_logging("warn");
            match run(args) {
                Ok(code) => code,
                Err((code, message)) => {
                    eprintln!("hatchery: {message}");
                    ExitCode::from(code)
                }
            }
        }
    }
}

fn init_logging(default: &str) {
    hatchery::zygote::args::LogFormat::Text.install(default);
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let zygote =
        Zygote::new(args.zygote_config().map_err(|e| chain(&e))?).map_err(|e| chain(&e))?;
    zygote.serve(&args.socket_path()).map_err(|e| chain(&e))
}

/// What `run --net` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    None,
    Veth,
}

fn parse_net(text: &str) -> Result<Net, String> {
    match text {
        "none" => Ok(Net::None),
        "veth" => Ok(Net::Veth),
        _ => Err("expected one of: none, veth".into()),
    }
}

fn parse_layer(text: &str) -> Result<Layer, String> {
    match text {
        "seccomp" => Ok(Layer::Seccomp),
        "network-namespace" => Ok(Layer::NetworkNamespace),
        _ => Err("expected one of: seccomp, network-namespace".into()),
    }
}

fn parse_bind(spec: &str, writable: bool) -> Bind {
    let (source, target) = spec.split_once(':').unwrap_or((spec, spec));
    if writable {
        Bind::writable(source, target)
    } else {
        Bind::read_only(source, target)
    }
}

type Failure = (u8, String);

fn hatchery_failure(message: impl Into<String>) -> Failure {
    (EXIT_HATCHERY, message.into())
}

fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let request = build_request(&args)?;
    // Held from before the connection, so that no SIGINT/SIGTERM is lost: until the
    // sandbox runs, one ends `run` at once (however long the daemon takes to answer), and
    // the daemon kills whatever it started for this connection; then each is forwarded
    // to the sandbox.
    let signals = ForwardedSignals::hold().map_err(|e| hatchery_failure(chain(&e)))?;
    let (client, embedded) = connect(args.socket.as_deref(), args.net == Net::Veth, &signals)?;
    let mut child = signals
        .unless_interrupted(|| client.spawn_child(request), interrupted)
        .map_err(|e| hatchery_failure(chain(&e)))?
        .map_err(|e| spawn_failure(&e))?;
    let verdict = child
        .wait_forwarding(&signals)
        .map_err(|e| hatchery_failure(chain(&e)))?;
    drop(child);
    drop(client);
    if let Some(zygote) = embedded {
        zygote.wait();
    }
    if let Some(path) = &args.verdict_json {
        write_verdict(path, &verdict)?;
    }
    Ok(ExitCode::from((verdict.status.code() & 0xff) as u8))
}

fn build_request(args: &RunArgs) -> Result<SpawnRequest, Failure> {
    let mut request = SpawnRequest::new(&args.command[0])
        .args(&args.command[1..])
        .cwd(&args.cwd);
    for entry in &args.env {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| hatchery_failure(format!("--env {entry}: expected KEY=VALUE")))?;
        request = request.env(key, value);
    }
    let mut binds: Vec<Bind> = args.ro_binds.iter().map(|b| parse_bind(b, false)).collect();
    binds.extend(args.binds.iter().map(|b| parse_bind(b, true)));
    request.sandbox = SandboxConfig {
        chroot_dir: args.chroot.as_ref().map(|dir| dir.as_os_str().into()),
        binds,
        hostname: args.hostname.clone(),
        uid: args.uid,
        gid: args.gid,
        opt_out: args.disable.clone(),
        limits: args.limits.limits,
        allow_unenforced_limits: args.allow_unenforced_limits,
        kill_on_disconnect: true,
        network: match args.net {
            Net::None => NetworkConfig::None,
            Net::Veth => NetworkConfig::Veth(VethConfig {
                interface: args.net_interface.clone(),
                mtu: args.net_mtu,
            }),
        },
    };
    // Our own stdin, stdout and stderr, passed through.
    let stdio: Vec<Stdio> = [
        std::io::stdin().as_fd(),
        std::io::stdout().as_fd(),
        std::io::stderr().as_fd(),
    ]
    .into_iter()
    .map(|fd| fd.try_clone_to_owned().map(Stdio::fd))
    .collect::<Result<_, _>>()
    .map_err(|e| hatchery_failure(format!("cannot pass stdio: {e}")))?;
    let [stdin, stdout, stderr]: [Stdio; 3] =
        stdio.try_into().map_err(|_| hatchery_failure("stdio"))?;
    Ok(request.stdin(stdin).stdout(stdout).stderr(stderr))
}

/// Connects to the daemon, or starts an embedded zygote when none is reachable. Returns
/// the embedded zygote, to be reaped at the end.
///
/// The embedded zygote networks with the embedded pools when `veth` is asked for (see
/// `NetworkSettings::embedded`).
fn connect(
    socket: Option<&Path>,
    veth: bool,
    signals: &ForwardedSignals,
) -> Result<(Client, Option<EmbeddedZygote>), Failure> {
    let path = socket
        .map(Path::to_path_buf)
        .unwrap_or_else(default_socket_path);
    let connected = signals
        .unless_interrupted(|| Client::connect(&path), interrupted)
        .map_err(|e| hatchery_failure(chain(&e)))?;
    // The thread that connected has ended: an embedded zygote may be forked.
    match connected {
        Ok(client) => Ok((client, None)),
        Err(ConnectError::Unreachable(_)) => embedded::start(veth.then(NetworkSettings::embedded))
            .map(|(client, zygote)| (client, Some(zygote)))
            .map_err(|e| hatchery_failure(chain(&e))),
        Err(e) => Err(hatchery_failure(format!(
            "{}: {}",
            path.display(),
            chain(&e)
        ))),
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

fn spawn_failure(error: &SpawnError) -> Failure {
    let code = match error {
        SpawnError::NotFound { .. } => EXIT_NOT_FOUND,
        SpawnError::CannotExecute { .. } => EXIT_CANNOT_EXECUTE,
        _ => EXIT_HATCHERY,
    };
    (code, chain(error))
}

fn write_verdict(path: &Path, verdict: &Verdict) -> Result<(), Failure> {
    let json = verdict.to_json();
    std::fs::write(path, format!("{json:#}\n"))
        .map_err(|e| hatchery_failure(format!("{}: {e}", path.display())))
}
