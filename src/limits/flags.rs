//! Limits as command-line flags: one flag per kind of limit, each parsed in its own units
//! (`--memory 256M`, `--wall-time 10s`, `--cpu 0.5`), under three prefixes: none for
//! `hatchery run`, `default-` and `max-` for `hatchery serve` and every zygote built with
//! [`crate::ZygoteBuilder::serve_from_args`]. Runs in the CLI, before anything else.

use crate::protocol::{Limit, Limits};

use super::parse::{format_limit, parse_limit_or_unlimited};
use super::policy::SAFE_DEFAULTS;

/// Where a set of limit flags is used: `run --memory`, `serve --default-memory`,
/// `serve --max-memory`.
pub trait FlagPrefix {
    /// Prepended to each limit's name.
    const PREFIX: &'static str;
    /// Prepended to each limit's name, upper-cased, for its environment variable
    /// (`HATCHERY_RUN_MEMORY`, `HATCHERY_DEFAULT_MEMORY`, `HATCHERY_MAX_MEMORY`).
    const ENV_PREFIX: &'static str;
    /// How the help text describes the flag.
    const HELP: &'static str;
    /// What `unlimited` means for the flag.
    const UNLIMITED: &'static str;
    /// How the help names the daemon's built-in default, where it states it.
    const DEFAULT_LABEL: Option<&'static str> = None;
}

/// `run --memory 256M` and the like.
pub struct NoPrefix;
impl FlagPrefix for NoPrefix {
    const PREFIX: &'static str = "";
    const ENV_PREFIX: &'static str = "HATCHERY_RUN_";
    const HELP: &'static str = "Limit";
    const UNLIMITED: &'static str = "`unlimited` lifts the daemon's default, if it allows";
    const DEFAULT_LABEL: Option<&'static str> = Some("built-in daemon default");
}

/// `serve --default-memory 256M`.
pub struct DefaultPrefix;
impl FlagPrefix for DefaultPrefix {
    const PREFIX: &'static str = "default-";
    const ENV_PREFIX: &'static str = "HATCHERY_DEFAULT_";
    const HELP: &'static str = "Default, for requests that set none:";
    const UNLIMITED: &'static str = "`unlimited` for none";
    const DEFAULT_LABEL: Option<&'static str> = Some("default");
}

/// `serve --max-memory 1G`.
pub struct MaxPrefix;
impl FlagPrefix for MaxPrefix {
    const PREFIX: &'static str = "max-";
    const ENV_PREFIX: &'static str = "HATCHERY_MAX_";
    const HELP: &'static str = "Most any request may ask for:";
    const UNLIMITED: &'static str = "`unlimited` for no maximum, as without the flag";
}

/// One flag per kind of limit, each parsed in its own units (`256M`, `10s`, `0.5`), or
/// `unlimited`.
pub struct LimitFlags<P> {
    /// The limits given on the command line; those given as `unlimited` are in its
    /// `unlimited` set (`run`: the request lifts the daemon's default; `serve
    /// --default-*`: no default; `serve --max-*`: no ceiling, as without the flag).
    pub limits: Limits,
    prefix: std::marker::PhantomData<P>,
}

fn limit_help(kind: Limit) -> &'static str {
    match kind {
        Limit::Memory => {
            "memory of the whole sandbox, e.g. 256M (swap off; exceeding it kills the sandbox)"
        }
        Limit::Pids => "processes and threads at once, e.g. 64",
        Limit::Cpu => "CPU bandwidth in CPUs, e.g. 0.5",
        Limit::CpuTime => "CPU time of the whole sandbox, e.g. 10s",
        Limit::WallTime => "wall-clock time, e.g. 30s",
        Limit::FileSize => "largest file written, e.g. 16M (SIGXFSZ past it)",
        Limit::OpenFiles => "open files per process, e.g. 256",
        Limit::TmpSize => "size of /tmp and /dev/shm, e.g. 64M",
        Limit::TmpInodes => "inodes of /tmp and /dev/shm, e.g. 1000",
    }
}

impl<P> Clone for LimitFlags<P> {
    fn clone(&self) -> Self {
        LimitFlags {
            limits: self.limits,
            prefix: std::marker::PhantomData,
        }
    }
}

impl<P: FlagPrefix> clap::FromArgMatches for LimitFlags<P> {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = LimitFlags {
            limits: Limits::default(),
            prefix: std::marker::PhantomData,
        };
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for kind in Limit::ALL {
            let name = format!("{}{}", P::PREFIX, kind.name());
            match matches.get_one::<Option<u64>>(&name) {
                Some(Some(value)) => self.limits.set_limit(kind, Some(*value)),
                Some(None) => self.limits.unlimited.insert(kind),
                None => {}
            }
        }
        Ok(())
    }
}

impl<P: FlagPrefix> clap::Args for LimitFlags<P> {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for kind in Limit::ALL {
            // clap wants 'static names; these few strings live as long as the process.
            let name: &'static str =
                Box::leak(format!("{}{}", P::PREFIX, kind.name()).into_boxed_str());
            let default = match (SAFE_DEFAULTS.get(kind), P::DEFAULT_LABEL) {
                (Some(value), Some(label)) => format!(" [{label}: {}]", format_limit(kind, value)),
                _ => String::new(),
            };
            let help: &'static str = Box::leak(
                format!(
                    "{} {}; {}{default}",
                    P::HELP,
                    limit_help(kind),
                    P::UNLIMITED
                )
                .into_boxed_str(),
            );
            let env: &'static str = Box::leak(
                format!("{}{}", P::ENV_PREFIX, kind.name())
                    .to_uppercase()
                    .replace('-', "_")
                    .into_boxed_str(),
            );
            cmd = cmd.arg(
                clap::Arg::new(name)
                    .long(name)
                    .env(env)
                    .value_name("VALUE")
                    // `--wall-time -1` reaches the parser, which says plainly that no
                    // limit is negative (not clap's tip to write `-- -1`).
                    .allow_negative_numbers(true)
                    .help(help)
                    .value_parser(move |text: &str| parse_limit_or_unlimited(kind, text)),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}
