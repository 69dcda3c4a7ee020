//! `hatchery service install|status|remove`: the daemon as a systemd service. Writes the
//! units shipped under `deploy/systemd/` (a `.socket` unit holding the socket, a
//! `Type=notify` service started on it, the `hatchery` group's sysusers snippet), with
//! this binary's path and the `serve` flags given on the `ExecStart=` line, then enables
//! and starts them; shows systemd's view and the daemon's own; removes them. Runs in the
//! CLI's process; `--root DIR` writes under another root and runs nothing, `--dry-run`
//! prints and writes nothing, and both work where systemd is not running.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Args, Subcommand};

use hatchery::Client;

/// The shipped units, the templates of what `install` writes.
const SYSTEM_SOCKET_UNIT: &str = include_str!("../deploy/systemd/hatchery.socket");
const SYSTEM_SERVICE_UNIT: &str = include_str!("../deploy/systemd/hatchery.service");
const SYSUSERS: &str = include_str!("../deploy/systemd/hatchery.sysusers");
const USER_SOCKET_UNIT: &str = include_str!("../deploy/systemd/user/hatchery.socket");
const USER_SERVICE_UNIT: &str = include_str!("../deploy/systemd/user/hatchery.service");

/// The `ExecStart=` line of the shipped service units, replaced on install.
const SHIPPED_EXEC_START: &str = "ExecStart=/usr/local/bin/hatchery serve --shutdown-grace 30s";

/// `status`'s exit code when the units are not (all) installed, as `systemctl status`
/// has it for a unit that is not running.
const EXIT_NOT_INSTALLED: u8 = 3;

/// The flags of `hatchery service`.
#[derive(Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Write the units (hatchery.socket, hatchery.service, the group's sysusers
    /// snippet), create the group, then enable and start them. Flags after `--` are
    /// `serve`'s, for the ExecStart= line (the socket is the .socket unit's).
    Install(InstallArgs),
    /// Show which unit files are installed, systemd's view of them and the daemon's own
    /// status; exits 3 when they are not installed.
    Status(Target),
    /// Stop and disable the units and delete every file `install` wrote.
    Remove(Target),
}

/// Where the units go, and whether anything is done.
#[derive(Args)]
struct Target {
    /// Print what would be written or removed, and do nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write under DIR as the root of another system (or, with --user, as the home
    /// directory), and run no systemctl.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// A service of the calling user's manager (systemd --user), in
    /// ~/.config/systemd/user, on $XDG_RUNTIME_DIR/hatchery.sock.
    #[arg(long)]
    user: bool,
}

#[derive(Args)]
struct InstallArgs {
    #[command(flatten)]
    target: Target,
    /// `hatchery serve`'s flags for the service, e.g. `-- --group hatchery --warm-pool 4`
    /// [default: --shutdown-grace 30s].
    #[arg(last = true, value_name = "SERVE FLAGS")]
    serve: Vec<String>,
}

/// One file `install` writes.
struct UnitFile {
    path: PathBuf,
    text: String,
}

/// Runs the subcommand; prints what it did or why not.
pub fn main(args: ServiceArgs) -> ExitCode {
    let result = match args.action {
        Action::Install(install) => self::install(&install),
        Action::Status(target) => status(&target),
        Action::Remove(target) => remove(&target),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("hatchery service: {message}");
            ExitCode::from(1)
        }
    }
}

/// Whether systemd runs this machine (`sd_booted`'s test).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Refuses to act on this machine's systemd when there is none to act on.
fn require_systemd(target: &Target, what: &str) -> Result<(), String> {
    if target.root.is_some() || target.dry_run || systemd_running() {
        return Ok(());
    }
    Err(format!(
        "systemd is not running on this machine (no /run/systemd/system), so nothing can \
         be {what}; --dry-run prints the units, --root DIR writes them for another system"
    ))
}

/// The directory the unit paths are under: `--root`, else `/` (or `$HOME` for `--user`).
fn base(target: &Target) -> Result<PathBuf, String> {
    match (&target.root, target.user) {
        (Some(root), _) => Ok(root.clone()),
        (None, false) => Ok(PathBuf::from("/")),
        (None, true) => std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| "--user needs $HOME (or --root DIR)".to_string()),
    }
}

/// The files `install` writes for `target`, with `exec_start` as the service's line.
fn unit_files(target: &Target, exec_start: &str) -> Result<Vec<UnitFile>, String> {
    let base = base(target)?;
    let service = |template: &str| template.replace(SHIPPED_EXEC_START, exec_start);
    Ok(match target.user {
        false => vec![
            UnitFile {
                path: base.join("etc/systemd/system/hatchery.socket"),
                text: SYSTEM_SOCKET_UNIT.to_string(),
            },
            UnitFile {
                path: base.join("etc/systemd/system/hatchery.service"),
                text: service(SYSTEM_SERVICE_UNIT),
            },
            UnitFile {
                path: base.join("etc/sysusers.d/hatchery.conf"),
                text: SYSUSERS.to_string(),
            },
        ],
        true => vec![
            UnitFile {
                path: base.join(".config/systemd/user/hatchery.socket"),
                text: USER_SOCKET_UNIT.to_string(),
            },
            UnitFile {
                path: base.join(".config/systemd/user/hatchery.service"),
                text: service(USER_SERVICE_UNIT),
            },
        ],
    })
}

/// One argument of an `ExecStart=` line, quoted as systemd reads it: `%` and `$` doubled
/// (no specifier, no variable), in double quotes with `\` and `"` escaped when it holds
/// anything but plain characters.
fn unit_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,@+-".contains(c));
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if plain {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The service's `ExecStart=` line: this binary, `serve`, the flags (checked as `serve`
/// parses them), with `--shutdown-grace 30s` unless they set it.
fn exec_start(flags: &[String]) -> Result<String, String> {
    use clap::{Args, FromArgMatches};
    let command = hatchery::zygote::args::ServeArgs::augment_args(
        clap::Command::new("hatchery serve").no_binary_name(true),
    );
    let matches = command
        .try_get_matches_from(flags)
        .map_err(|e| format!("the serve flags: {}", e.render().to_string().trim_end()))?;
    let serve = hatchery::zygote::args::ServeArgs::from_arg_matches(&matches)
        .map_err(|e| format!("the serve flags: {e}"))?;
    if serve.socket.is_some() {
        return Err(
            "--socket: the socket is hatchery.socket's ListenSequentialPacket= \
                    (edit that unit to move it)"
                .into(),
        );
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let exe = exe
        .to_str()
        .ok_or_else(|| format!("this program's path {exe:?} is not UTF-8"))?;
    let mut args: Vec<String> = vec![exe.to_string(), "serve".into()];
    let grace_given =
        matches.value_source("shutdown_grace") == Some(clap::parser::ValueSource::CommandLine);
    if !grace_given {
        args.extend(["--shutdown-grace".into(), "30s".into()]);
    }
    args.extend(flags.iter().cloned());
    let line: Vec<String> = args.iter().map(|arg| unit_quote(arg)).collect();
    Ok(format!("ExecStart={}", line.join(" ")))
}

/// Runs `program args`, saying which; fails with its words if it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    println!("running: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    if !status.success() {
        return Err(format!("`{program} {}` failed ({status})", args.join(" ")));
    }
    Ok(())
}

fn systemctl(target: &Target, args: &[&str]) -> Result<(), String> {
    let mut all = Vec::with_capacity(args.len() + 1);
    if target.user {
        all.push("--user");
    }
    all.extend_from_slice(args);
    run("systemctl", &all)
}

fn install(args: &InstallArgs) -> Result<ExitCode, String> {
    let target = &args.target;
    let files = unit_files(target, &exec_start(&args.serve)?)?;
    if target.dry_run {
        for file in &files {
            println!("# {}\n{}", file.path.display(), file.text);
        }
        return Ok(ExitCode::SUCCESS);
    }
    require_systemd(target, "installed")?;
    if !target.user && target.root.is_none() && !nix::unistd::geteuid().is_root() {
        return Err("a system service needs root (or --user for your own)".into());
    }
    for file in &files {
        if let Some(dir) = file.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&file.path, &file.text)
            .map_err(|e| format!("cannot write {}: {e}", file.path.display()))?;
        println!("wrote {}", file.path.display());
    }
    if target.root.is_some() {
        println!("(--root: nothing enabled or started; the target system's systemd does that)");
        return Ok(ExitCode::SUCCESS);
    }
    if !target.user {
        run("systemd-sysusers", &["/etc/sysusers.d/hatchery.conf"])?;
    }
    systemctl(target, &["daemon-reload"])?;
    systemctl(
        target,
        &["enable", "--now", "hatchery.socket", "hatchery.service"],
    )?;
    Ok(ExitCode::SUCCESS)
}

fn status(target: &Target) -> Result<ExitCode, String> {
    let files = unit_files(target, SHIPPED_EXEC_START)?;
    let mut installed = true;
    for file in &files {
        let present = file.path.exists();
        installed &= present;
        let state = if present { "installed" } else { "missing" };
        println!("{state:9}  {}", file.path.display());
    }
    if target.root.is_none() && !target.dry_run {
        if systemd_running() {
            // systemctl's own exit code says whether the units run; ours, whether they are
            // installed.
            let mut command = Command::new("systemctl");
            if target.user {
                command.arg("--user");
            }
            let _ = command
                .args([
                    "status",
                    "--no-pager",
                    "hatchery.socket",
                    "hatchery.service",
                ])
                .status();
        } else {
            println!("systemd:   not running on this machine (no /run/systemd/system)");
        }
        let socket = match target.user {
            true => std::env::var_os("XDG_RUNTIME_DIR")
                .map(|dir| PathBuf::from(dir).join("hatchery.sock"))
                .unwrap_or_else(hatchery::client::default_socket_path),
            false => PathBuf::from(hatchery::client::SYSTEM_SOCKET),
        };
        match Client::connect(&socket).and_then(|client| {
            client
                .status()
                .map_err(hatchery::client::ConnectError::Handshake)
        }) {
            Ok(status) => print!("{}", crate::status::summary(&status)),
            Err(e) => println!(
                "daemon:    no answer at {}: {}",
                socket.display(),
                hatchery::error_chain(&e)
            ),
        }
    }
    Ok(match installed {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(EXIT_NOT_INSTALLED),
    })
}

fn remove(target: &Target) -> Result<ExitCode, String> {
    let files = unit_files(target, SHIPPED_EXEC_START)?;
    if target.dry_run {
        if target.root.is_none() {
            println!("would run: systemctl disable --now hatchery.service hatchery.socket");
        }
        for file in files.iter().filter(|f| f.path.exists()) {
            println!("would remove {}", file.path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    require_systemd(target, "removed")?;
    if target.root.is_none() {
        systemctl(
            target,
            &["disable", "--now", "hatchery.service", "hatchery.socket"],
        )?;
    }
    for file in files.iter().filter(|f| f.path.exists()) {
        std::fs::remove_file(&file.path)
            .map_err(|e| format!("cannot remove {}: {e}", file.path.display()))?;
        println!("removed {}", file.path.display());
    }
    match &target.root {
        // Under another root, the directories install made go too when left empty.
        Some(root) => {
            for file in &files {
                let mut dir = file.path.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(root) && *d != root.as_path()) {
                    if std::fs::remove_dir(d).is_err() {
                        break;
                    }
                    dir = d.parent();
                }
            }
        }
        None => systemctl(target, &["daemon-reload"])?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_as_systemd_reads_them() {
        assert_eq!(unit_quote("--warm-pool"), "--warm-pool");
        assert_eq!(unit_quote("/srv/a b"), "\"/srv/a b\"");
        assert_eq!(unit_quote("50%"), "\"50%%\"");
        assert_eq!(unit_quote("$HOME"), "\"$$HOME\"");
        assert_eq!(unit_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(unit_quote(""), "\"\"");
    }

    #[test]
    fn the_shipped_services_have_the_line_install_replaces() {
        assert!(SYSTEM_SERVICE_UNIT.contains(&format!("\n{SHIPPED_EXEC_START}\n")));
        assert!(USER_SERVICE_UNIT.contains(&format!("\n{SHIPPED_EXEC_START}\n")));
    }
}
