//! [`ZygoteBuilder`]: a Rust program becomes its own zygote, serving named entries that
//! run in children forked from it, with its preloaded state. Runs in the zygote.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::args::{ServeArgs, ServeArgsError};
use super::entries::Entries;
use super::{Zygote, ZygoteConfig, ZygoteError};

/// Builds a zygote with named entries. Made by [`Zygote::builder`].
///
/// Load what every job needs first (a table, a model, a dictionary); the entries capture
/// it, and each child sees it for free, copy-on-write, or shared read-only through
/// [`crate::Preloaded`] (which keeps the fork cost flat in its size).
///
/// ```no_run
/// use hatchery::Zygote;
///
/// let squares: Vec<u64> = (0..1_000_000).map(|i| i * i).collect(); // preloaded once
/// Zygote::builder()
///     .entry("square", move |i: usize| -> Result<u64, String> {
///         squares.get(i).copied().ok_or_else(|| format!("{i} is out of range"))
///     })
///     .serve_from_args()?; // the flags of `hatchery serve`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ZygoteBuilder {
    entries: Entries,
}

impl ZygoteBuilder {
    pub(super) fn new() -> ZygoteBuilder {
        ZygoteBuilder {
            entries: Entries::none(),
        }
    }

    /// Serves `f` as the entry `name`. Its arguments are postcard-decoded from the
    /// request in the zygote (arguments that do not decode fail the request before
    /// anything is cloned); it runs in the child, after every sandbox step, seccomp
    /// included; `Ok` goes back to the caller encoded, `Err` as its text and encoding,
    /// a panic as its message.
    pub fn entry<A, R, E, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Serialize + std::fmt::Display + 'static,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.entries.add(name.into(), f);
        self
    }

    /// Also runs programs ([`crate::protocol::Command::Exec`]), as `hatchery serve` does.
    /// Off by default: a zygote built for its entries refuses them.
    pub fn exec_programs(mut self, allow: bool) -> Self {
        self.entries.exec = allow;
        self
    }

    /// Runs `hook` in every entry's child, before the entry: the place to re-seed random
    /// state the zygote seeded (an RNG in the preloaded state would otherwise produce the
    /// same numbers in every child). Hooks run in the order added.
    pub fn after_fork(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.entries.add_hook(std::sync::Arc::new(hook));
        self
    }

    /// Prepares the zygote with `config` (seccomp compiled, host ids checked). Warns
    /// when the preload has left threads behind: every spawn is then refused.
    pub fn build(self, config: ZygoteConfig) -> Result<Zygote, ZygoteError> {
        if let Ok(threads) = crate::sys::thread_count() {
            if threads > 1 {
                tracing::warn!(
                    threads,
                    "the zygote is not single-threaded; it will refuse to fork until it is"
                );
            }
        }
        Zygote::with_entries(config, self.entries)
    }

    /// Serves on `socket` with `config` until SIGTERM or SIGINT.
    pub fn serve(self, config: ZygoteConfig, socket: &Path) -> Result<(), ZygoteError> {
        self.build(config)?.serve(socket)
    }

    /// Parses the process's command line with the flags of `hatchery serve` (`--socket`,
    /// `--host-uid`, `--default-memory`, ...; `--help` lists them) and serves. A usage
    /// error prints the usage and exits with code 2, as any command-line program does.
    /// Logs to stderr as `--log-format` says, unless the program has installed a
    /// `tracing` subscriber of its own before.
    pub fn serve_from_args(self) -> Result<(), ServeArgsError> {
        self.serve_from_args_of(std::env::args_os())
    }

    /// As [`serve_from_args`](Self::serve_from_args), with the command line given:
    /// `args` starts with the program's name. For a zygote whose process's own command
    /// line is another program's, such as the Python zygote (`python/native/`), which is
    /// a Python interpreter.
    ///
    /// ```no_run
    /// use hatchery::Zygote;
    ///
    /// Zygote::builder()
    ///     .entry("double", |n: u64| -> Result<u64, String> { Ok(n * 2) })
    ///     .serve_from_args_of(["my-zygote", "--socket", "/tmp/my-zygote.sock"])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn serve_from_args_of<I, T>(self, args: I) -> Result<(), ServeArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(Parser)]
        #[command(about = "A hatchery zygote serving named entries")]
        struct ZygoteCli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = ZygoteCli::parse_from(args);
        // A program that installed a log subscriber of its own keeps it.
        cli.serve.log_format.install("info");
        let config = cli.serve.zygote_config()?;
        let socket = cli.serve.socket_path();
        self.serve(config, &socket).map_err(ServeArgsError::Zygote)
    }
}
