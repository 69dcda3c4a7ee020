//! `Sandbox`: a persistent sandbox as a client holds it — one more command at a time,
//! run by the sandbox's own init, and its end. Runs in the client's process.

use std::sync::Arc;

use super::{spawn_error, ChildProcess, Client, ClientError, Output, Shared, SpawnError};
use crate::protocol::{
    ErrorKind, Event, ExecRequest, Request, SandboxConfig, SandboxInfo, SandboxOptions,
    SandboxVerdict, Stdio,
};

/// A sandbox that outlives its commands: every command of it shares its root, `/tmp`,
/// processes, IPC and network, and has its own limits and verdict. Made by
/// [`Client::create_sandbox`] (destroyed when dropped, unless [`Sandbox::leave`] lets it
/// live on) or named by [`Client::open_sandbox`] (left alone when dropped).
///
/// ```no_run
/// use hatchery::{Client, ExecRequest, SandboxConfig, SandboxOptions};
///
/// let client = Client::connect("/run/hatchery/hatchery.sock")?;
/// let sandbox = client.create_sandbox(SandboxConfig::default(), SandboxOptions::default())?;
/// sandbox.output(ExecRequest::new("sh").args(["-c", "echo hi > /tmp/note"]))?;
/// let output = sandbox.output(ExecRequest::new("cat").arg("/tmp/note"))?;
/// assert_eq!(output.stdout, b"hi\n");
/// let verdict = sandbox.destroy()?;
/// assert_eq!(verdict.commands_run, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sandbox {
    shared: Arc<Shared>,
    name: String,
    pid: Option<i32>,
    /// The id of its `CreateSandbox`, when this handle made it.
    created: Option<u64>,
    /// Destroy it when dropped.
    owned: bool,
}

impl Client {
    /// Creates a persistent sandbox and returns once it is set up (or with why not).
    /// `config.limits` are the whole sandbox's (its cgroup's): memory, pids, CPU; its
    /// wall time is its lifetime.
    pub fn create_sandbox(
        &self,
        config: SandboxConfig,
        options: SandboxOptions,
    ) -> Result<Sandbox, SpawnError> {
        let shared = &self.shared;
        let id = shared.next_id();
        let request = Request::CreateSandbox {
            id,
            config: Box::new(config),
            options,
        };
        shared.send(&request)?;
        let (event, _fds) = shared.next_event(id)?;
        match event {
            Event::SandboxCreated { name, pid, .. } => Ok(Sandbox {
                shared: shared.clone(),
                name,
                pid: Some(pid),
                created: Some(id),
                owned: true,
            }),
            Event::Error { kind, message, .. } => Err(spawn_error(kind, message)),
            other => Err(ClientError::Unexpected(format!("{other:?}")).into()),
        }
    }

    /// The live persistent sandboxes this client's uid may use (root: all), by name.
    pub fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>, ClientError> {
        let id = self.shared.next_id();
        self.shared.send(&Request::ListSandboxes { id })?;
        match self.shared.next_event(id)?.0 {
            Event::Sandboxes { sandboxes, .. } => Ok(sandboxes),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A handle to the live sandbox `name` (made by this or another connection of the
    /// same uid; root may open any): nothing is checked until it is used, and dropping
    /// it leaves the sandbox as it is.
    pub fn open_sandbox(&self, name: impl Into<String>) -> Sandbox {
        Sandbox {
            shared: self.shared.clone(),
            name: name.into(),
            pid: None,
            created: None,
            owned: false,
        }
    }
}

impl Sandbox {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its init's pid as the daemon sees it (known to the handle that created it).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Runs one more command in it, forked by its init, and returns once the program
    /// has been exec'd (or with why not). The child's verdict is the command's own.
    pub fn spawn(&self, request: ExecRequest) -> Result<ChildProcess, SpawnError> {
        let stdio = request.stdio().map(Stdio::clone);
        let sandbox = self.name.clone();
        self.shared.start(stdio, |id| Request::Exec {
            id,
            sandbox,
            request: Box::new(request),
        })
    }

    /// Runs a command and collects what it prints, as [`Client::output`] does.
    pub fn output(&self, request: ExecRequest) -> Result<Output, SpawnError> {
        Ok(self.spawn(request)?.output()?)
    }

    /// Ends the sandbox: every process in it killed, its mounts, cgroup and network
    /// gone. Returns its verdict (also when it had ended already, by its idle timeout
    /// or lifetime, and this handle created it).
    pub fn destroy(mut self) -> Result<SandboxVerdict, SpawnError> {
        self.owned = false;
        if let Some(verdict) = self.ended() {
            self.created = None;
            return Ok(verdict);
        }
        let id = self.shared.next_id();
        let request = Request::DestroySandbox {
            id,
            sandbox: self.name.clone(),
        };
        self.shared.send(&request)?;
        let (event, _fds) = self.shared.next_event(id)?;
        match event {
            Event::SandboxEnded { verdict, .. } => Ok(verdict),
            // It ended by itself meanwhile (idle, lifetime, a limit): its creator is sent
            // its verdict (before this answer, when the end was the reap).
            Event::Error {
                kind: ErrorKind::UnknownSandbox { .. },
                ..
            } if self.created.is_some() => self.wait_ended(),
            Event::Error { kind, message, .. } => Err(spawn_error(kind, message)),
            other => Err(ClientError::Unexpected(format!("{other:?}")).into()),
        }
    }

    /// Waits for the verdict sent to this handle's create request at the sandbox's end.
    fn wait_ended(&mut self) -> Result<SandboxVerdict, SpawnError> {
        let Some(id) = self.created else {
            return Err(ClientError::Unexpected("no create request to wait on".into()).into());
        };
        match self.shared.next_event(id)?.0 {
            Event::SandboxEnded { verdict, .. } => {
                self.created = None;
                Ok(verdict)
            }
            // Nothing else is sent for a create request once it has been answered.
            other => Err(ClientError::Unexpected(format!("{other:?}")).into()),
        }
    }

    /// Lets the sandbox live on when this handle goes; returns its name. It outlives
    /// this connection only if it was created with `survive_creator`.
    pub fn leave(mut self) -> String {
        self.owned = false;
        std::mem::take(&mut self.name)
    }

    /// The verdict its creator was sent, if it has ended already.
    fn ended(&self) -> Option<SandboxVerdict> {
        let id = self.created?;
        let mut state = self.shared.lock();
        let events = state.queued.get_mut(&id)?;
        let at = events
            .iter()
            .position(|(event, _)| matches!(event, Event::SandboxEnded { .. }))?;
        match events.remove(at) {
            Some((Event::SandboxEnded { verdict, .. }, _)) => Some(verdict),
            _ => None,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.owned && self.ended().is_none() {
            // Best effort, unanswered: the daemon ends it, and also does when this
            // connection closes (unless it was to survive that).
            let id = self.shared.next_id();
            self.shared.lock().abandoned.insert(id);
            let _ = self.shared.send(&Request::DestroySandbox {
                id,
                sandbox: std::mem::take(&mut self.name),
            });
        }
        if let Some(id) = self.created {
            let mut state = self.shared.lock();
            let ended = state.queued.remove(&id).is_some_and(|events| {
                events
                    .iter()
                    .any(|(event, _)| matches!(event, Event::SandboxEnded { .. }))
            });
            if !ended {
                state.abandoned.insert(id);
            }
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}
