//! `hatchery shell`: a fresh sandbox with an interactive shell on a terminal of its own
//! (the CLI's process). The sandbox is a persistent one that ends with the shell (and
//! with this command, whatever ends it); the shell's exit status is this command's.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Args;

use hatchery::limits::{LimitFlags, NoPrefix};
use hatchery::protocol::SandboxOptions;
use hatchery::{error_chain as chain, ExecRequest, SandboxConfig};

use super::exec::{spawn_failed, with_terminal};
use super::{terminal, SocketArg};
use crate::run::EXIT_HATCHERY;

/// Bash if the root has it, else sh; interactive either way.
const SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash -i; else exec sh -i; fi";

/// The flags of `hatchery shell`.
#[derive(Args)]
#[command(after_help = "\
Exit codes: the shell's own; 128+N when a signal N ended it (or this command); 125 \
hatchery's own failure; 69 no daemon answers.")]
pub struct ShellArgs {
    #[command(flatten)]
    socket: SocketArg,
    #[command(flatten)]
    limits: LimitFlags<NoPrefix>,
    /// Run even if this host cannot enforce some of the limits.
    #[arg(long)]
    allow_unenforced_limits: bool,
    /// Set an environment variable (repeatable); the shell gets PATH, HOME=/tmp and the
    /// caller's TERM otherwise.
    #[arg(long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Another program than the shell, with its arguments.
    #[arg(last = true, value_name = "PROGRAM [ARGS]...")]
    command: Vec<OsString>,
}

/// Runs `hatchery shell`.
pub fn main(args: ShellArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("hatchery shell: {message}");
        ExitCode::from(EXIT_HATCHERY)
    };
    let mut request = match args.command.split_first() {
        Some((program, rest)) => ExecRequest::new(program).args(rest),
        None => ExecRequest::new("/bin/sh").args(["-c", SHELL]),
    };
    let mut keys = Vec::new();
    for pair in &args.env {
        let Some((key, value)) = pair.split_once('=') else {
            return fail(format!("--env {pair}: expected KEY=VAL"));
        };
        keys.push(key.to_string());
        request = request.env(key, value);
    }
    for (key, value) in [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/tmp")] {
        if !keys.iter().any(|k| k == key) {
            request = request.env(key, value);
        }
    }
    let request = with_terminal(request.cwd("/tmp"));
    let client = match args.socket.connect("shell") {
        Ok(client) => client,
        Err(code) => return code,
    };
    let config = SandboxConfig {
        limits: args.limits.limits,
        allow_unenforced_limits: args.allow_unenforced_limits,
        ..SandboxConfig::default()
    };
    // Ends with this command's connection, whatever ends it.
    let sandbox = match client.create_sandbox(config, SandboxOptions::default()) {
        Ok(sandbox) => sandbox,
        Err(e) => return fail(chain(&e)),
    };
    let mut child = match sandbox.spawn(request) {
        Ok(child) => child,
        Err(e) => return spawn_failed(sandbox.name(), e),
    };
    let ended = terminal::session(&mut child);
    drop(child);
    let _ = sandbox.destroy();
    match ended {
        Ok(ended) => ExitCode::from(terminal::exit_code(&ended)),
        Err(message) => fail(message),
    }
}
