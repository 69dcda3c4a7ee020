//! The `hatchery` command: `serve` runs the daemon, `run` runs one sandboxed command,
//! `status` and `ps` ask a daemon about itself; `sandbox`, `exec` and `cp` use persistent
//! sandboxes (`src/sandboxes/`).
//!
//! Parses the command line, calls the library, prints. `run` lives in `src/run/`, with
//! its exit codes: the docker/podman convention (the child's code, 128+N when killed by
//! signal N, 125 for hatchery's own failures, 126 when the program cannot be executed,
//! 127 when it is not found), and 69 when a named socket cannot be used.

#![deny(unsafe_code)]

mod mcp;
mod run;
mod sandboxes;
mod service;
mod status;

use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use hatchery::error_chain as chain;
use hatchery::zygote::args::ServeArgs;
use hatchery::zygote::Zygote;

/// Exit code of `hatchery` without a subcommand (help printed): a usage error, as
/// clap and most commands have it.
const EXIT_USAGE: u8 = 2;

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
    Run(run::RunArgs),
    /// Serve MCP on stdin/stdout: AI agents run commands and code in sandboxes.
    Mcp(mcp::McpArgs),
    /// Ask a daemon about itself: uptime, version, warm pool, veth leases, spawn counters
    /// and the live sandboxes you may see (all of them for root).
    Status(status::StatusArgs),
    /// List the live sandboxes of a daemon that you may see: your own (root: every one).
    Ps(status::StatusArgs),
    /// Install, inspect or remove the daemon as a systemd service (socket-activated).
    Service(service::ServiceArgs),
    /// Persistent sandboxes: create and remove them.
    #[command(subcommand)]
    Sandbox(sandboxes::SandboxCommand),
    /// Run one more command in a persistent sandbox and exit with its status.
    Exec(sandboxes::exec::ExecArgs),
    /// Copy a file into (LOCAL NAME:/PATH) or out of (NAME:/PATH LOCAL) a persistent
    /// sandbox.
    Cp(sandboxes::cp::CpArgs),
    /// An interactive shell in a fresh sandbox, on a terminal of the sandbox's own.
    Shell(sandboxes::shell::ShellArgs),
}

fn main() -> ExitCode {
    let parsed = Cli::command().try_get_matches().and_then(|matches| {
        let mut cli = Cli::from_arg_matches(&matches)?;
        match (&mut cli.command, matches.subcommand()) {
            (Command::Run(args), Some(("run", run))) => run::settle_embedded(args, run)?,
            (Command::Shell(args), Some(("shell", shell))) => {
                run::settle_embedded(&mut args.run, shell)?
            }
            _ => {}
        }
        Ok(cli)
    });
    let cli = match parsed {
        Ok(cli) => cli,
        // `hatchery` alone: the help, where a reader looks for it, and a usage error's code.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = Cli::command().print_help();
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            // Usage errors are hatchery's own failures (125, as docker has it); --help,
            // `help` and --version are not errors.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(run::EXIT_HATCHERY)
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
            run::main(args, run::Mode::Run)
        }
        Command::Mcp(args) => {
            init_logging("info");
            mcp::main(args)
        }
        Command::Status(args) => status::main(args, status::Report::Status),
        Command::Ps(args) => status::main(args, status::Report::Ps),
        Command::Service(args) => service::main(args),
        Command::Sandbox(command) => {
            init_logging("warn");
            sandboxes::main(command)
        }
        Command::Exec(args) => {
            init_logging("warn");
            sandboxes::exec::main(args)
        }
        Command::Cp(args) => {
            init_logging("warn");
            sandboxes::cp::main(args)
        }
        Command::Shell(args) => {
            init_logging("warn");
            sandboxes::shell::main(args)
        }
    }
}

fn init_logging(default: &str) {
    hatchery::zygote::args::LogFormat::Text.install(default);
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let socket = args.socket_path();
    // The default socket's directory (`/run/hatchery` for root, as systemd's
    // `RuntimeDirectory=hatchery` makes it) is made when missing, readable by all: the
    // socket's own mode decides who may connect.
    if args.socket.is_none() {
        if let Some(dir) = socket.parent().filter(|dir| !dir.exists()) {
            make_socket_dir(dir)?;
        }
    }
    let zygote =
        Zygote::new(args.zygote_config().map_err(|e| chain(&e))?).map_err(|e| chain(&e))?;
    zygote.serve(&socket).map_err(|e| chain(&e))
}

fn make_socket_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(|e| {
            format!(
                "cannot create the socket's directory {}: {e}",
                dir.display()
            )
        })
}
