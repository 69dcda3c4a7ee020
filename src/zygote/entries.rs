//! A zygote's named entries: Rust functions that run in a child forked from the zygote,
//! with the zygote's preloaded memory, inside the full sandbox. Runs in the zygote
//! (decoding the arguments, before anything is cloned) and in the child (the call).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::{Command, EntryResult, ErrorKind, OsBytes};
use crate::sandbox::{EntryCall, Workload};

/// Decodes an entry's arguments into a call ready to run in the child.
type Prepare = Box<dyn Fn(&[u8]) -> Result<EntryCall, postcard::Error> + Send + Sync>;

/// A hook run in every entry's child before the entry (to re-seed an RNG, say).
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync>;

/// The entries a zygote serves.
pub(crate) struct Entries {
    /// Whether [`Command::Exec`] requests are served (the stock `hatchery serve`).
    pub exec: bool,
    named: HashMap<String, Prepare>,
    hooks: Vec<Hook>,
}

impl Entries {
    /// What `hatchery serve` serves: programs, and no entries.
    pub fn exec_only() -> Entries {
        Entries {
            exec: true,
            named: HashMap::new(),
            hooks: Vec::new(),
        }
    }

    /// None at all.
    pub fn none() -> Entries {
        Entries {
            exec: false,
            ..Entries::exec_only()
        }
    }

    /// Registers `f` as the entry `name` (replacing one of the same name).
    pub fn add<A, R, E, F>(&mut self, name: String, f: F)
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Serialize + std::fmt::Display + 'static,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let prepare: Prepare = Box::new(move |bytes: &[u8]| {
            let args: A = strict_decode(bytes)?;
            let f = Arc::clone(&f);
            let call: EntryCall = Box::new(move || outcome(|| f(args)));
            Ok(call)
        });
        self.named.insert(name, prepare);
    }

    /// Adds a hook run in each entry's child before the entry.
    pub fn add_hook(&mut self, hook: Hook) {
        self.hooks.push(hook);
    }

    /// What the sandbox for `command` will run, its arguments decoded here so that a bad
    /// request fails before anything is cloned. `env` becomes the entry's environment.
    pub fn prepare(
        &self,
        command: &Command,
        env: &[(OsBytes, OsBytes)],
    ) -> Result<Workload, (ErrorKind, String)> {
        match command {
            Command::Exec { .. } if self.exec => Ok(Workload::Exec),
            Command::Exec { .. } => Err((
                ErrorKind::UnknownEntry {
                    name: String::new(),
                },
                "this zygote runs entries only, not programs".to_string(),
            )),
            Command::Entry { name, args } => {
                let Some(prepare) = self.named.get(name) else {
                    return Err((
                        ErrorKind::UnknownEntry { name: name.clone() },
                        format!("this zygote has no entry named {name:?}"),
                    ));
                };
                let call = prepare(args).map_err(|e| {
                    (
                        ErrorKind::BadEntryArgs { name: name.clone() },
                        format!("the arguments of entry {name:?} do not decode: {e}"),
                    )
                })?;
                let hooks = self.hooks.clone();
                let env = env.to_vec();
                Ok(Workload::Entry(Box::new(move || {
                    set_environment(&env);
                    let hooked = catch_unwind(AssertUnwindSafe(|| hooks.iter().for_each(|h| h())));
                    match hooked {
                        Ok(()) => call(),
                        Err(payload) => EntryResult::Panicked {
                            message: panic_message(payload.as_ref()),
                        },
                    }
                })))
            }
        }
    }
}

/// Decodes exactly one value: trailing bytes are an error.
fn strict_decode<A: DeserializeOwned>(bytes: &[u8]) -> Result<A, postcard::Error> {
    match postcard::take_from_bytes(bytes)? {
        (value, []) => Ok(value),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// Runs the entry, catching a panic, and encodes how it ended.
fn outcome<R, E>(f: impl FnOnce() -> Result<R, E>) -> EntryResult
where
    R: Serialize,
    E: Serialize + std::fmt::Display,
{
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => match postcard::to_allocvec(&value) {
            Ok(bytes) => EntryResult::Returned(bytes),
            Err(e) => EntryResult::Failed {
                message: format!("the entry's result cannot be encoded: {e}"),
                error: Vec::new(),
            },
        },
        Ok(Err(error)) => EntryResult::Failed {
            message: error.to_string(),
            error: postcard::to_allocvec(&error).unwrap_or_default(),
        },
        Err(payload) => EntryResult::Panicked {
            message: panic_message(payload.as_ref()),
        },
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Makes the process environment exactly the request's: the entry is a copy of the
/// zygote, whose own variables must not leak into it.
fn set_environment(env: &[(OsBytes, OsBytes)]) {
    // The child is single-threaded (a fork of a single-threaded zygote), so changing
    // the environment races with nothing.
    for (key, _) in std::env::vars_os() {
        std::env::remove_var(key);
    }
    for (key, value) in env {
        std::env::set_var(key.as_os_str(), value.as_os_str());
    }
}
