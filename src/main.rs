//! The `hatchery` command: `serve` runs the daemon, `run` runs one sandboxed command.
//!
//! Parses the command line, calls the library, prints. Exit codes of `run` follow the
//! docker/podman convention: the child's code, 128+N when killed by signal N, 125 for
//! hatchery's own failures, 126 when the program cannot be executed, 127 when it is not
//! found.

#![deny(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use hatchery::client::{default_socket_path, ConnectError};
use hatchery::network::NetworkSettings;
use hatchery::protocol::{
    Bind, Layer, NetworkConfig, SandboxConfig, SpawnRequest, Stdio, VethConfig, DEFAULT_SANDBOX_ID,
};
use hatchery::serve_args::{LimitFlags, NoPrefix, ServeArgs};
use hatchery::zygote::{Zygote, ZygoteConfig};
use hatchery::{error_chain as chain, ChildProcess, Client, SpawnError, Verdict};

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
            init_logging("info");
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
    // Held from before the spawn, so that no SIGINT/SIGTERM is lost; forwarded to the
    // sandbox while it runs.
    let signals = forwarded_signals()?;
    let (client, embedded) = connect(args.socket.as_deref(), args.net == Net::Veth)?;
    let mut child = client.spawn_child(request).map_err(|e| spawn_failure(&e))?;
    let verdict = wait_forwarding(&mut child, &signals)?;
    drop(child);
    drop(client);
    if let Some(pid) = embedded {
        let _ = nix::sys::wait::waitpid(pid, None);
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
/// the embedded zygote's pid, to be reaped at the end.
///
/// The embedded zygote networks with the embedded pools when `veth` is asked for (see
/// `NetworkSettings::embedded`).
fn connect(
    socket: Option<&Path>,
    veth: bool,
) -> Result<(Client, Option<nix::unistd::Pid>), Failure> {
    let path = socket
        .map(Path::to_path_buf)
        .unwrap_or_else(default_socket_path);
    match Client::connect(&path) {
        Ok(client) => Ok((client, None)),
        Err(ConnectError::Unreachable(_)) => start_embedded(veth),
        Err(e) => Err(hatchery_failure(format!(
            "{}: {}",
            path.display(),
            chain(&e)
        ))),
    }
}

fn start_embedded(veth: bool) -> Result<(Client, Option<nix::unistd::Pid>), Failure> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| hatchery_failure(format!("socketpair: {e}")))?;
    let single = hatchery::sys::Threads::now()
        .ok()
        .and_then(hatchery::sys::Threads::single);
    let single = single.ok_or_else(|| hatchery_failure("cannot fork: more than one thread"))?;
    match hatchery::sys::fork(single).map_err(|e| hatchery_failure(e.to_string()))? {
        hatchery::sys::Forked::Child(_) => {
            drop(ours);
            hatchery::sys::exit_now(embedded_zygote(theirs, veth))
        }
        hatchery::sys::Forked::Parent(pid) => {
            drop(theirs);
            let client = Client::handshake(ours).map_err(|e| {
                hatchery_failure(format!("the embedded zygote did not start: {}", chain(&e)))
            })?;
            Ok((client, Some(nix::unistd::Pid::from_raw(pid))))
        }
    }
}

/// The embedded zygote's process: serves the one connection, then exits.
fn embedded_zygote(conn: OwnedFd, veth: bool) -> i32 {
    // Out of the terminal's process group: a ^C is for the sandbox (forwarded by
    // `run`), not a shutdown request for this zygote. And gone when `run` is.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let result = ZygoteConfig::new()
        .map(|mut config| {
            config.network = veth.then(NetworkSettings::embedded);
            config
        })
        .and_then(Zygote::new)
        .and_then(|z| z.serve_connection(conn));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hatchery: embedded zygote: {}", chain(&e));
            i32::from(EXIT_HATCHERY)
        }
    }
}

fn spawn_failure(error: &SpawnError) -> Failure {
    let code = match error {
        SpawnError::NotFound { .. } => EXIT_NOT_FOUND,
        SpawnError::CannotExecute { .. } => EXIT_CANNOT_EXECUTE,
        _ => EXIT_HATCHERY,
    };
    (code, chain(error))
}

const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

fn forwarded_signals() -> Result<SignalFd, Failure> {
    let mut mask = SigSet::empty();
    for signal in FORWARDED {
        mask.add(signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| hatchery_failure(format!("sigprocmask: {e}")))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| hatchery_failure(format!("signalfd: {e}")))
}

/// Waits for the child, forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT to it meanwhile.
fn wait_forwarding(child: &mut ChildProcess, signals: &SignalFd) -> Result<Verdict, Failure> {
    drop(child.stdin.take());
    while let Some(pidfd) = child.pidfd() {
        let mut fds = [
            PollFd::new(pidfd, PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(hatchery_failure(format!("poll: {e}"))),
        }
        let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            while let Ok(Some(info)) = signals.read_signal() {
                child
                    .signal(info.ssi_signo as i32)
                    .map_err(|e| hatchery_failure(chain(&e)))?;
            }
        }
        if exited {
            break;
        }
    }
    child.wait().map_err(|e| hatchery_failure(chain(&e)))
}

fn write_verdict(path: &Path, verdict: &Verdict) -> Result<(), Failure> {
    let json = verdict.to_json();
    std::fs::write(path, format!("{json:#}\n"))
        .map_err(|e| hatchery_failure(format!("{}: {e}", path.display())))
}
