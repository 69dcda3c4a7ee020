//! `hatchery cp LOCAL NAME:PATH` and `hatchery cp NAME:PATH LOCAL`: a file into or out of
//! a persistent sandbox, written or read inside it as its user (`Sandbox::put`,
//! `Sandbox::fetch`), bounded in size (the CLI's process).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use hatchery::{error_chain as chain, parse_size};

use super::SocketArg;
use crate::run::EXIT_HATCHERY;

/// The flags of `hatchery cp`.
#[derive(Args)]
pub struct CpArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// The largest file copied, e.g. 512M [default: 256M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "256M")]
    max_size: u64,
    /// From: a local path, or NAME:PATH in a sandbox (PATH absolute).
    #[arg(value_name = "SRC")]
    source: String,
    /// To: NAME:PATH in a sandbox, or a local path.
    #[arg(value_name = "DST")]
    destination: String,
}

/// `NAME:/PATH`: a sandbox's name and an absolute path in it.
fn in_sandbox(text: &str) -> Option<(&str, &str)> {
    let (name, path) = text.split_once(':')?;
    (!name.is_empty() && !name.contains('/') && path.starts_with('/')).then_some((name, path))
}

/// Runs `hatchery cp`.
pub fn main(args: CpArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("hatchery cp: {message}");
        ExitCode::from(EXIT_HATCHERY)
    };
    let limit = usize::try_from(args.max_size).unwrap_or(usize::MAX);
    match (in_sandbox(&args.source), in_sandbox(&args.destination)) {
        (None, Some((name, path))) => {
            let local = PathBuf::from(&args.source);
            let metadata = match std::fs::metadata(&local) {
                Ok(metadata) if metadata.is_file() => metadata,
                Ok(_) => return fail(format!("{}: not a regular file", local.display())),
                Err(e) => return fail(format!("{}: {e}", local.display())),
            };
            if metadata.len() > args.max_size {
                return fail(format!(
                    "{}: larger than --max-size ({} bytes)",
                    local.display(),
                    args.max_size
                ));
            }
            let bytes = match std::fs::read(&local) {
                Ok(bytes) => bytes,
                Err(e) => return fail(format!("{}: {e}", local.display())),
            };
            let client = match args.socket.connect("cp") {
                Ok(client) => client,
                Err(code) => return code,
            };
            let mode = metadata.permissions().mode() & 0o777;
            match client.open_sandbox(name).put(path, &bytes, mode) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("{name}: {}", chain(&e))),
            }
        }
        (Some((name, path)), None) => {
            let client = match args.socket.connect("cp") {
                Ok(client) => client,
                Err(code) => return code,
            };
            let bytes = match client.open_sandbox(name).fetch(path, limit) {
                Ok(bytes) => bytes,
                Err(e) => return fail(format!("{name}: {}", chain(&e))),
            };
            match std::fs::write(&args.destination, bytes) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("{}: {e}", args.destination)),
            }
        }
        _ => fail(format!(
            "copy between a local path and NAME:/PATH in a sandbox (one of each): {} {}",
            args.source, args.destination
        )),
    }
}
