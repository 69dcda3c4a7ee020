//! `hatchery sandbox create` and `hatchery sandbox rm`: persistent sandboxes from the
//! command line (the CLI's process). They live in a daemon (never an embedded zygote,
//! which would end with this command), outlive this command, and are named; `hatchery
//! exec` (`exec.rs`) runs commands in them and `hatchery cp` (`cp.rs`) copies files.

pub mod cp;
pub mod exec;
pub mod shell;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use hatchery::client::{default_socket_path, SOCKET_ENV};
use hatchery::limits::{LimitFlags, NoPrefix};
use hatchery::protocol::SandboxOptions;
use hatchery::{error_chain as chain, parse_duration_ms, Client, SandboxConfig, SpawnError};

use crate::run::{EXIT_HATCHERY, EXIT_NO_DAEMON};

/// `hatchery sandbox ...`.
#[derive(Subcommand)]
pub enum SandboxCommand {
    /// Create a persistent sandbox in the daemon and print its name; it lives until
    /// `hatchery sandbox rm`, its idle timeout or its lifetime.
    Create(CreateArgs),
    /// Destroy persistent sandboxes: every process in them killed, nothing left.
    Rm(RmArgs),
    /// List the live persistent sandboxes this uid may use (root: all): name, age,
    /// commands running, peak memory, owner.
    Ls(LsArgs),
}

/// Which daemon: `--socket`, else `$HATCHERY_SOCKET`, else the default path.
#[derive(Args)]
pub struct SocketArg {
    /// The daemon's socket [default: $HATCHERY_SOCKET, else as for `serve`]; a
    /// persistent sandbox needs a daemon (exit 69 when none answers).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl SocketArg {
    /// Connects, or says why not in the user's words (and exits 69).
    pub fn connect(&self, command: &str) -> Result<Client, ExitCode> {
        let path = match (&self.socket, std::env::var_os(SOCKET_ENV)) {
            (Some(path), _) => path.clone(),
            (None, Some(path)) if !path.is_empty() => PathBuf::from(path),
            _ => default_socket_path(),
        };
        Client::connect(&path).map_err(|e| {
            eprintln!(
                "hatchery {command}: cannot use the daemon at {}: {}",
                Path::new(&path).display(),
                chain(&e)
            );
            ExitCode::from(EXIT_NO_DAEMON)
        })
    }
}

/// The flags of `hatchery sandbox create`.
#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Its name (letters, digits, '-', '_', '.') [default: the daemon's, sandbox-N].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// End it once no command has run in it for this long, e.g. 10m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    idle_timeout: Option<u64>,
    /// End it this long after its creation, e.g. 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    lifetime: Option<u64>,
    #[command(flatten)]
    limits: LimitFlags<NoPrefix>,
    /// Create it even if this host cannot enforce some of the limits.
    #[arg(long)]
    allow_unenforced_limits: bool,
}

/// The flags of `hatchery sandbox rm`.
#[derive(Args)]
pub struct RmArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// The sandboxes' names.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// The flags of `hatchery sandbox ls`.
#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    socket: SocketArg,
}

/// Runs `hatchery sandbox ...`.
pub fn main(command: SandboxCommand) -> ExitCode {
    match command {
        SandboxCommand::Create(args) => create(args),
        SandboxCommand::Rm(args) => rm(args),
        SandboxCommand::Ls(args) => ls(args),
    }
}

fn ls(args: LsArgs) -> ExitCode {
    let client = match args.socket.connect("sandbox ls") {
        Ok(client) => client,
        Err(code) => return code,
    };
    let sandboxes = match client.list_sandboxes() {
        Ok(sandboxes) => sandboxes,
        Err(e) => {
            eprintln!("hatchery sandbox ls: {}", chain(&e));
            return ExitCode::from(EXIT_HATCHERY);
        }
    };
    println!(
        "{:<24} {:>10} {:>8} {:>12} {:>10}",
        "NAME", "AGE", "RUNNING", "PEAK MEMORY", "OWNER"
    );
    for sandbox in sandboxes {
        let age = sandbox.age_ms / 1000;
        let age = match age {
            0..60 => format!("{age}s"),
            60..3600 => format!("{}m{}s", age / 60, age % 60),
            _ => format!("{}h{}m", age / 3600, age % 3600 / 60),
        };
        let memory = sandbox
            .memory_peak_bytes
            .map_or("-".into(), |bytes| format!("{}K", bytes / 1024));
        let owner = sandbox.owner_uid.map_or("-".into(), |uid| uid.to_string());
        println!(
            "{:<24} {:>10} {:>8} {:>12} {:>10}",
            sandbox.name, age, sandbox.commands_running, memory, owner
        );
    }
    ExitCode::SUCCESS
}

fn create(args: CreateArgs) -> ExitCode {
    let client = match args.socket.connect("sandbox create") {
        Ok(client) => client,
        Err(code) => return code,
    };
    let config = SandboxConfig {
        limits: args.limits.limits,
        allow_unenforced_limits: args.allow_unenforced_limits,
        ..SandboxConfig::default()
    };
    let options = SandboxOptions {
        name: args.name,
        idle_timeout_ms: args.idle_timeout,
        lifetime_ms: args.lifetime,
        // This command ends now; the sandbox is for the commands that follow.
        survive_creator: true,
    };
    match client.create_sandbox(config, options) {
        Ok(sandbox) => {
            println!("{}", sandbox.leave());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hatchery sandbox create: {}", chain(&e));
            ExitCode::from(EXIT_HATCHERY)
        }
    }
}

fn rm(args: RmArgs) -> ExitCode {
    let client = match args.socket.connect("sandbox rm") {
        Ok(client) => client,
        Err(code) => return code,
    };
    let mut failed = false;
    for name in args.names {
        match client.open_sandbox(name.clone()).destroy() {
            Ok(verdict) => println!(
                "{name}: {} commands run, {}",
                verdict.commands_run,
                match verdict.memory_peak_bytes {
                    Some(peak) => format!("peak memory {} KiB", peak / 1024),
                    None => "no memory accounting".into(),
                }
            ),
            Err(SpawnError::UnknownSandbox { message, .. }) => {
                eprintln!("hatchery sandbox rm: {message}");
                failed = true;
            }
            Err(e) => {
                eprintln!("hatchery sandbox rm: {name}: {}", chain(&e));
                failed = true;
            }
        }
    }
    match failed {
        true => ExitCode::from(EXIT_HATCHERY),
        false => ExitCode::SUCCESS,
    }
}
