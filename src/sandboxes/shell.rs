//! `hatchery shell`: a fresh sandbox with an interactive shell on a terminal of its own
//! (the CLI's process). It is `hatchery run -t` with a shell, and takes all of run's
//! options (the same flags, `--profile` and variables): the job itself is run's, in
//! `run::tty`. The shell's exit status is this command's.

use std::process::ExitCode;

use clap::Args;

use crate::run::{self, Mode, RunArgs};

/// The flags of `hatchery shell`: run's, with the program optional (a shell: bash if the
/// root has it, else sh) and `-t` implied.
#[derive(Args)]
#[command(
    mut_arg("command", |arg| arg
        .required(false)
        .help("Another program than the shell, with its arguments")),
    mut_arg("tty", |arg| arg.hide(true)),
    after_help = "\
Where run's options leave them out, the shell gets PATH, HOME=/tmp, the caller's TERM and \
/tmp as its directory.

Exit codes: the shell's own; 128+N when a signal N ended it (or this command); 125 \
hatchery's own failure; 126 the program cannot be executed; 127 the program was not \
found; 69 the socket named by --socket or HATCHERY_SOCKET cannot be used."
)]
pub struct ShellArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Runs `hatchery shell`.
pub fn main(args: ShellArgs) -> ExitCode {
    run::main(args.run, Mode::Shell)
}
