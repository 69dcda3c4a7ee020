//! `hatchery exec NAME -- CMD`: one command in a persistent sandbox, with this
//! command's stdin, stdout and stderr, and its exit status (the CLI's process).

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use hatchery::{error_chain as chain, parse_duration_ms, ExecRequest, SpawnError, Stdio};

use super::{terminal, SocketArg};
use crate::run::{EXIT_CANNOT_EXECUTE, EXIT_HATCHERY, EXIT_NOT_FOUND};

/// The flags of `hatchery exec`.
#[derive(Args)]
#[command(after_help = "\
Exit codes: the program's own; 128+N when a signal N ended it; 125 hatchery's own failure \
(no such sandbox, another uid's, a refused request); 126 the program cannot be executed; \
127 the program was not found; 69 no daemon answers.")]
pub struct ExecArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Set an environment variable (repeatable); nothing else is passed.
    #[arg(long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Working directory inside the sandbox [default: /].
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Kill the command (its process group) after this long, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    wall_time: Option<u64>,
    /// Its CPU time, in whole seconds rounded up, e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    cpu_time: Option<u64>,
    /// Give it a terminal of the sandbox's own (its stdio and controlling terminal),
    /// driven from this one in raw mode; `TERM` is passed unless --env sets it.
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// The sandbox's name.
    #[arg(value_name = "NAME")]
    name: String,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM [ARGS]...")]
    command: Vec<OsString>,
}

/// Runs `hatchery exec`.
pub fn main(args: ExecArgs) -> ExitCode {
    let fail = |message: String, code: u8| {
        eprintln!("hatchery exec: {message}");
        ExitCode::from(code)
    };
    let mut request = ExecRequest::new(&args.command[0]).args(&args.command[1..]);
    for pair in &args.env {
        let Some((key, value)) = pair.split_once('=') else {
            return fail(format!("--env {pair}: expected KEY=VAL"), EXIT_HATCHERY);
        };
        request = request.env(key, value);
    }
    if let Some(dir) = &args.cwd {
        request = request.cwd(dir);
    }
    request.wall_time_ms = args.wall_time;
    request.cpu_time_ms = args.cpu_time;
    if args.tty {
        request = with_terminal(request);
        let client = match args.socket.connect("exec") {
            Ok(client) => client,
            Err(code) => return code,
        };
        let mut child = match client.open_sandbox(args.name.clone()).spawn(request) {
            Ok(child) => child,
            Err(e) => return spawn_failed(&args.name, e),
        };
        return match terminal::session(&mut child) {
            Ok(ended) => ExitCode::from(terminal::exit_code(&ended)),
            Err(message) => fail(message, EXIT_HATCHERY),
        };
    }
    // This command's own streams, passed as they are (a terminal stays this one's: the
    // sandbox gets no controlling terminal, and the filter refuses TIOCSTI).
    let streams = [
        std::io::stdin().as_fd().try_clone_to_owned(),
        std::io::stdout().as_fd().try_clone_to_owned(),
        std::io::stderr().as_fd().try_clone_to_owned(),
    ];
    let [Ok(stdin), Ok(stdout), Ok(stderr)] = streams else {
        return fail(
            "cannot duplicate this command's stdio".into(),
            EXIT_HATCHERY,
        );
    };
    request = request
        .stdin(Stdio::fd(stdin))
        .stdout(Stdio::fd(stdout))
        .stderr(Stdio::fd(stderr));
    let client = match args.socket.connect("exec") {
        Ok(client) => client,
        Err(code) => return code,
    };
    let sandbox = client.open_sandbox(args.name.clone());
    let mut child = match sandbox.spawn(request) {
        Ok(child) => child,
        Err(e) => return spawn_failed(&args.name, e),
    };
    match child.wait() {
        Ok(verdict) => ExitCode::from((verdict.status.code() & 0xff) as u8),
        Err(e) => fail(chain(&e), EXIT_HATCHERY),
    }
}

/// A terminal of the caller's size for `request`, with the caller's `TERM` unless the
/// request sets one.
pub fn with_terminal(request: ExecRequest) -> ExecRequest {
    let (rows, cols) = terminal::caller_size();
    let mut request = request.pty(rows, cols);
    let has_term = request.env.iter().any(|(key, _)| key.as_bytes() == b"TERM");
    if let (false, Some(term)) = (has_term, std::env::var_os("TERM")) {
        request = request.env("TERM", term);
    }
    request
}

/// Says why a command did not start, with `run`'s exit codes.
pub fn spawn_failed(name: &str, error: SpawnError) -> ExitCode {
    let code = match error {
        SpawnError::NotFound { .. } => EXIT_NOT_FOUND,
        SpawnError::CannotExecute { .. } => EXIT_CANNOT_EXECUTE,
        _ => EXIT_HATCHERY,
    };
    eprintln!("hatchery: {name}: {}", chain(&error));
    ExitCode::from(code)
}
