//! The session tools of `hatchery mcp`: persistent sandboxes held in this server
//! process's own table (`session_create`, `session_run`, `session_destroy`), the
//! commands run in them as jobs that can be polled (`job_status`, `job_output`,
//! `job_kill`), and files written, read and listed by a command inside (`file_write`,
//! `file_read`, `file_list`). Runs in the `hatchery mcp` process: one thread per call,
//! and per job one thread for each of its streams and one that waits for its end.
//!
//! A session's id is 128 random bits minted here and known only to this process's table,
//! so another MCP server (another client) cannot name, use or destroy it; the daemon's
//! sandbox ends when it is destroyed, idle for `--session-idle`, older than
//! `--session-lifetime`, or when this server's connection closes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use hatchery::protocol::{ExecRequest, SandboxOptions, Stdio};
use hatchery::{error_chain as chain, ChildProcess, Client, Sandbox, Verdict};

use super::output::{base64, Captured};
use super::tools::{self, kind, optional_string, Refusal, Settings};
use crate::run::report;
use crate::run::values::Net;

/// The most a call waits for a `session_run` to end before answering with its job.
pub const MAX_WAIT_S: f64 = 25.0;
/// How much of each stream of a job is kept for `job_output` (older bytes are dropped,
/// and said to be).
const KEPT_BYTES: usize = 256 << 10;
/// Where a session's commands run and relative paths resolve: a tmpfs of its own.
pub const SESSION_DIR: &str = "/work";
/// The most jobs a session keeps (finished ones are forgotten oldest first).
const MAX_JOBS: usize = 32;
/// The most jobs running at once in a session (each has threads in this process).
const MAX_RUNNING: usize = 16;

/// The bounds of sessions, from the server's flags.
pub struct Bounds {
    /// The most sessions at once.
    pub max: usize,
    /// A session without a command for this long is ended.
    pub idle_ms: u64,
    /// A session older than this is ended.
    pub lifetime_ms: u64,
}

/// The sessions of this server process.
pub struct Sessions {
    bounds: Bounds,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<String, Arc<Session>>,
    jobs: HashMap<String, Arc<Job>>,
    next_job: u64,
    /// Sessions being made: counted against the bound, so that calls at once keep it.
    creating: usize,
}

struct Session {
    id: String,
    name: Option<String>,
    /// Taken when the session ends: a call using it (a spawn, a file's transfer) holds
    /// it for reading meanwhile, so that the end waits for it.
    sandbox: RwLock<Option<Sandbox>>,
    network: bool,
    created: Instant,
    last_used: Mutex<Instant>,
    /// Its jobs' ids, oldest first.
    jobs: Mutex<Vec<String>>,
}

/// A command run in a session.
struct Job {
    id: String,
    session: String,
    command: String,
    started: Instant,
    child: Arc<Mutex<ChildProcess>>,
    state: Mutex<JobState>,
    ended: Condvar,
}

struct JobState {
    stdout: Stream,
    stderr: Stream,
    /// Set once both streams are read and the verdict came.
    end: Option<Result<Verdict, String>>,
    streams_open: u8,
}

/// One stream of a job: its head and tail for the result, and its last [`KEPT_BYTES`]
/// for `job_output`.
struct Stream {
    captured: Captured,
    kept: Vec<u8>,
    /// The offset of `kept[0]` in the stream.
    start: u64,
}

impl Stream {
    fn new(bound: usize) -> Stream {
        Stream {
            captured: Captured::new(bound),
            kept: Vec::new(),
            start: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.captured.push(bytes);
        self.kept.extend_from_slice(bytes);
        if self.kept.len() > KEPT_BYTES {
            let drop = self.kept.len() - KEPT_BYTES;
            self.kept.drain(..drop);
            self.start += drop as u64;
        }
    }

    fn total(&self) -> u64 {
        self.start + self.kept.len() as u64
    }
}

/// The names of the session tools, as `tools/list` has them.
pub const NAMES: [&str; 9] = [
    "session_create",
    "session_run",
    "session_destroy",
    "job_status",
    "job_output",
    "job_kill",
    "file_write",
    "file_read",
    "file_list",
];

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    pub fn new(bounds: Bounds) -> Sessions {
        Sessions {
            bounds,
            table: Mutex::new(Table::default()),
        }
    }

    /// Runs the session tool `name`; `call` is armed with a `session_run`'s command, so
    /// that cancelling the call kills it.
    pub fn call(
        &self,
        client: &Client,
        settings: &Settings,
        name: &str,
        arguments: &Map<String, Value>,
        call: &tools::Job,
    ) -> Value {
        let done = match name {
            "session_create" => self.create(client, settings, arguments),
            "session_run" => self.run(settings, arguments, call),
            "session_destroy" => self.destroy(arguments),
            "job_status" => self.job_status(arguments),
            "job_output" => self.job_output(settings, arguments),
            "job_kill" => self.job_kill(arguments),
            "file_write" => self.file_write(arguments),
            "file_read" => self.file_read(settings, arguments),
            "file_list" => self.file_list(settings, arguments),
            other => Err(Refusal(format!("unknown tool {other:?}"))),
        };
        done.unwrap_or_else(|Refusal(message)| tools::error_result(&message))
    }

    /// Destroys every session (their jobs die with them): the server is ending.
    pub fn end_all(&self) {
        let sessions: Vec<Arc<Session>> = {
            let mut table = lock(&self.table);
            table.jobs.clear();
            table.sessions.drain().map(|(_, s)| s).collect()
        };
        for session in sessions {
            end(session);
        }
    }

    fn create(
        &self,
        client: &Client,
        settings: &Settings,
        arguments: &Map<String, Value>,
    ) -> Result<Value, Refusal> {
        known(arguments, "session_create", &["name", "network"])?;
        let name = optional_string(arguments, "name")?;
        if name.as_ref().is_some_and(|n| n.len() > 64) {
            return Err(Refusal("name must be at most 64 bytes".into()));
        }
        let network = match arguments.get("network") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(Refusal(format!(
                    "network must be a boolean, not {}",
                    kind(other)
                )))
            }
        };
        if network && settings.options.net != Net::Veth {
            return Err(Refusal(
                "network: this server gives sandboxes no network (it was started without \
                 --net veth); sessions have only lo"
                    .into(),
            ));
        }
        self.forget_ended();
        {
            let mut table = lock(&self.table);
            if table.sessions.len() + table.creating >= self.bounds.max {
                let listed: Vec<String> = table
                    .sessions
                    .values()
                    .map(|s| {
                        format!(
                            "{} (idle {})",
                            s.id,
                            report::duration(lock(&s.last_used).elapsed().as_millis() as u64)
                        )
                    })
                    .collect();
                return Err(Refusal(format!(
                    "this server holds {} sessions, the most it allows (--max-sessions): \
                     destroy one first (session_destroy); they are: {}",
                    table.sessions.len(),
                    listed.join(", ")
                )));
            }
            table.creating += 1;
        }
        let made = self.make(client, settings, network, name);
        lock(&self.table).creating -= 1;
        let session = made?;
        let fields = session_fields(&session, &self.bounds);
        lock(&self.table)
            .sessions
            .insert(session.id.clone(), session);
        Ok(structured(fields, false))
    }

    /// Makes a session's sandbox.
    fn make(
        &self,
        client: &Client,
        settings: &Settings,
        network: bool,
        name: Option<String>,
    ) -> Result<Arc<Session>, Refusal> {
        let mut options = settings.options.clone();
        if !network {
            options.net = Net::None;
        }
        options.tmpfs.push(SESSION_DIR.into());
        let request = crate::run::request::sandboxed(&options, &["/bin/true".into()])
            .map_err(|failure| Refusal(failure.message))?;
        let mut config = request.sandbox;
        // A session's lifetime is its own bound; each command may have a timeout.
        config.limits.wall_time_ms = None;
        let sandbox = client
            .create_sandbox(
                config,
                SandboxOptions {
                    name: None,
                    idle_timeout_ms: Some(self.bounds.idle_ms),
                    lifetime_ms: Some(self.bounds.lifetime_ms),
                    survive_creator: false,
                },
            )
            .map_err(|e| Refusal(format!("the session could not be made: {}", chain(&e))))?;
        let id = mint_id().map_err(Refusal)?;
        Ok(Arc::new(Session {
            id: id.clone(),
            name,
            sandbox: RwLock::new(Some(sandbox)),
            network,
            created: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            jobs: Mutex::new(Vec::new()),
        }))
    }

    /// Drops the sessions that the daemon has ended by their idle time or lifetime (a
    /// bound here, not asked of the daemon: a session with a job running is not idle).
    fn forget_ended(&self) {
        let ended: Vec<Arc<Session>> = {
            let mut table = lock(&self.table);
            let idle = Duration::from_millis(self.bounds.idle_ms);
            let lifetime = Duration::from_millis(self.bounds.lifetime_ms);
            let gone: Vec<String> = table
                .sessions
                .values()
                .filter(|s| {
                    let running = lock(&s.jobs).iter().any(|j| {
                        table
                            .jobs
                            .get(j)
                            .is_some_and(|job| lock(&job.state).end.is_none())
                    });
                    s.created.elapsed() >= lifetime
                        || (!running && lock(&s.last_used).elapsed() >= idle)
                })
                .map(|s| s.id.clone())
                .collect();
            gone.iter()
                .filter_map(|id| {
                    let session = table.sessions.remove(id)?;
                    for job in lock(&session.jobs).iter() {
                        table.jobs.remove(job);
                    }
                    Some(session)
                })
                .collect()
        };
        for session in ended {
            end(session);
        }
    }

    fn session(&self, arguments: &Map<String, Value>) -> Result<Arc<Session>, Refusal> {
        self.forget_ended();
        let id = optional_string(arguments, "id")?
            .ok_or_else(|| Refusal("id is missing: give the session's id".into()))?;
        let session = lock(&self.table)
            .sessions
            .get(&id)
            .cloned()
            .ok_or_else(|| unknown_session(&id))?;
        *lock(&session.last_used) = Instant::now();
        Ok(session)
    }

    fn job(&self, arguments: &Map<String, Value>) -> Result<Arc<Job>, Refusal> {
        self.forget_ended();
        let id = optional_string(arguments, "job")?
            .ok_or_else(|| Refusal("job is missing: give the job's id".into()))?;
        lock(&self.table).jobs.get(&id).cloned().ok_or_else(|| {
            Refusal(format!(
                "unknown job {id:?}: this server has no such job (its session may have been \
                 destroyed or ended idle)"
            ))
        })
    }

    fn destroy(&self, arguments: &Map<String, Value>) -> Result<Value, Refusal> {
        known(arguments, "session_destroy", &["id"])?;
        let session = self.session(arguments)?;
        {
            let mut table = lock(&self.table);
            table.sessions.remove(&session.id);
            for job in lock(&session.jobs).iter() {
                table.jobs.remove(job);
            }
        }
        let id = session.id.clone();
        end(session);
        Ok(structured(json!({"id": id, "destroyed": true}), false))
    }

    fn run(
        &self,
        settings: &Settings,
        arguments: &Map<String, Value>,
        call: &tools::Job,
    ) -> Result<Value, Refusal> {
        known(
            arguments,
            "session_run",
            &[
                "id",
                "command",
                "argv",
                "language",
                "code",
                "stdin",
                "env",
                "cwd",
                "timeout_s",
                "background",
                "wait_s",
            ],
        )?;
        let session = self.session(arguments)?;
        let (argv, shown) = command(settings, arguments)?;
        let running = {
            let table = lock(&self.table);
            let jobs = lock(&session.jobs);
            jobs.iter()
                .filter(|j| {
                    table
                        .jobs
                        .get(*j)
                        .is_some_and(|job| lock(&job.state).end.is_none())
                })
                .count()
        };
        if running >= MAX_RUNNING {
            return Err(Refusal(format!(
                "{running} jobs are running in this session, the most it runs at once: wait \
                 for one to end (job_status) or end one (job_kill)"
            )));
        }
        let background = match arguments.get("background") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(Refusal(format!(
                    "background must be a boolean, not {}",
                    kind(other)
                )))
            }
        };
        let wait_s = seconds(arguments, "wait_s")?.unwrap_or(MAX_WAIT_S);
        if wait_s > MAX_WAIT_S {
            return Err(Refusal(format!(
                "wait_s is at most {MAX_WAIT_S}: a longer run goes on as a job to poll"
            )));
        }
        let stdin = optional_string(arguments, "stdin")?;
        if stdin
            .as_ref()
            .is_some_and(|s| s.len() > tools::MAX_STDIN_BYTES)
        {
            return Err(Refusal(format!(
                "stdin is more than the {} a call may send",
                report::size(tools::MAX_STDIN_BYTES as u64)
            )));
        }
        let mut request = ExecRequest::new(&argv[0])
            .args(&argv[1..])
            .cwd(SESSION_DIR)
            .stdin(if stdin.is_some() {
                Stdio::Pipe
            } else {
                Stdio::Null
            });
        let mut env: Vec<(String, String)> = settings
            .options
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match arguments.get("env") {
            None | Some(Value::Null) => {}
            Some(Value::Object(more)) => {
                for (key, value) in more {
                    let Value::String(value) = value else {
                        return Err(Refusal(format!("env {key:?}: the value must be a string")));
                    };
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        return Err(Refusal(format!(
                            "env {key:?}: a name must be non-empty, without '='"
                        )));
                    }
                    env.retain(|(k, _)| k != key);
                    env.push((key.clone(), value.clone()));
                }
            }
            Some(other) => {
                return Err(Refusal(format!(
                    "env must be an object, not {}",
                    kind(other)
                )))
            }
        }
        for (key, value) in env {
            request = request.env(key, value);
        }
        if let Some(cwd) = optional_string(arguments, "cwd")? {
            request = request.cwd(inside(&cwd)?);
        }
        if let Some(timeout) = seconds(arguments, "timeout_s")? {
            request = request.wall_time_ms((timeout * 1000.0).ceil() as u64);
        }
        let spawned = session.with_sandbox(|sandbox| Ok(sandbox.spawn(request)))?;
        let mut child = match spawned {
            Ok(child) => child,
            Err(hatchery::SpawnError::UnknownSandbox { .. }) => {
                return Err(self.ended_meanwhile(&session))
            }
            Err(e) => return Err(tools::spawn_refusal(&e, &argv[0])),
        };
        let (input, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let job = self.start_job(&session, shown, child, settings.max_output);
        call.arm(&job.child);
        if let (Some(mut input), Some(text)) = (input, stdin) {
            std::thread::spawn(move || {
                use std::io::Write;
                // A program that does not read it all closes the pipe: not an error.
                let _ = input.write_all(text.as_bytes());
            });
        }
        follow(&job, stdout, stderr);
        if !background {
            let deadline = Instant::now() + Duration::from_secs_f64(wait_s);
            let mut state = lock(&job.state);
            while state.end.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = job
                    .ended
                    .wait_timeout(state, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if state.end.is_some() {
                drop(state);
                *lock(&session.last_used) = Instant::now();
                return Ok(job_result(&job));
            }
        }
        Ok(structured(
            json!({
                "job": job.id,
                "session": session.id,
                "running": true,
                "note": "running in the background: poll job_status or job_output with this job, \
                    or end it with job_kill",
            }),
            false,
        ))
    }

    /// The daemon ended the session (its lifetime, idle time, or a limit): forgets it.
    fn ended_meanwhile(&self, session: &Session) -> Refusal {
        let mut table = lock(&self.table);
        table.sessions.remove(&session.id);
        for job in lock(&session.jobs).iter() {
            table.jobs.remove(job);
        }
        Refusal(format!(
            "session {:?} has ended (its lifetime or idle time ran out, or a limit ended it); \
             make a new one with session_create",
            session.id
        ))
    }

    fn start_job(
        &self,
        session: &Session,
        command: String,
        child: ChildProcess,
        bound: usize,
    ) -> Arc<Job> {
        let mut table = lock(&self.table);
        table.next_job += 1;
        let id = format!("{}-job-{}", &session.id[..8], table.next_job);
        let job = Arc::new(Job {
            id: id.clone(),
            session: session.id.clone(),
            command,
            started: Instant::now(),
            child: Arc::new(Mutex::new(child)),
            state: Mutex::new(JobState {
                stdout: Stream::new(bound),
                stderr: Stream::new(bound),
                end: None,
                streams_open: 2,
            }),
            ended: Condvar::new(),
        });
        table.jobs.insert(id.clone(), job.clone());
        let mut jobs = lock(&session.jobs);
        jobs.push(id);
        if jobs.len() > MAX_JOBS {
            let finished = jobs.iter().position(|j| {
                table
                    .jobs
                    .get(j)
                    .is_none_or(|job| lock(&job.state).end.is_some())
            });
            if let Some(at) = finished {
                let old = jobs.remove(at);
                table.jobs.remove(&old);
            }
        }
        job
    }

    fn job_status(&self, arguments: &Map<String, Value>) -> Result<Value, Refusal> {
        known(arguments, "job_status", &["job"])?;
        let job = self.job(arguments)?;
        let running = lock(&job.state).end.is_none();
        if running {
            let state = lock(&job.state);
            return Ok(structured(
                json!({
                    "job": job.id,
                    "session": job.session,
                    "command": job.command,
                    "running": true,
                    "duration_ms": job.started.elapsed().as_millis() as u64,
                    "stdout_bytes": state.stdout.total(),
                    "stderr_bytes": state.stderr.total(),
                }),
                false,
            ));
        }
        Ok(job_result(&job))
    }

    fn job_output(
        &self,
        settings: &Settings,
        arguments: &Map<String, Value>,
    ) -> Result<Value, Refusal> {
        known(
            arguments,
            "job_output",
            &["job", "stdout_since", "stderr_since"],
        )?;
        let job = self.job(arguments)?;
        let since = |key: &str| match arguments.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(value) => value.as_u64().ok_or_else(|| {
                Refusal(format!(
                    "{key} must be a byte offset (0 or more), as the last answer's {}",
                    key.replace("since", "next")
                ))
            }),
        };
        let (out_since, err_since) = (since("stdout_since")?, since("stderr_since")?);
        let state = lock(&job.state);
        let mut fields = Map::new();
        fields.insert("job".into(), json!(job.id));
        fields.insert("running".into(), json!(state.end.is_none()));
        for (name, stream, since) in [
            ("stdout", &state.stdout, out_since),
            ("stderr", &state.stderr, err_since),
        ] {
            let from = since.max(stream.start).min(stream.total());
            let at = (from - stream.start) as usize;
            let end = (at + settings.max_output).min(stream.kept.len());
            let bytes = &stream.kept[at..end];
            let (text, encoding) = match std::str::from_utf8(bytes) {
                Ok(text) => (text.to_string(), "utf-8"),
                Err(_) => (base64(bytes), "base64"),
            };
            let next = stream.start + end as u64;
            fields.insert(name.into(), json!(text));
            fields.insert(format!("{name}_encoding"), json!(encoding));
            fields.insert(format!("{name}_from"), json!(from));
            fields.insert(format!("{name}_next"), json!(next));
            fields.insert(format!("{name}_skipped"), json!(from - since.min(from)));
            fields.insert(format!("{name}_more"), json!(next < stream.total()));
        }
        Ok(structured(Value::Object(fields), false))
    }

    fn job_kill(&self, arguments: &Map<String, Value>) -> Result<Value, Refusal> {
        known(arguments, "job_kill", &["job"])?;
        let job = self.job(arguments)?;
        if lock(&job.state).end.is_none() {
            let child = lock(&job.child);
            if let Err(e) = child.kill() {
                return Err(Refusal(format!(
                    "the job could not be killed: {}",
                    chain(&e)
                )));
            }
        }
        let mut state = lock(&job.state);
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.end.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = job
                .ended
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(state);
        Ok(job_result(&job))
    }

    fn file_write(&self, arguments: &Map<String, Value>) -> Result<Value, Refusal> {
        known(
            arguments,
            "file_write",
            &["id", "path", "content", "encoding"],
        )?;
        let session = self.session(arguments)?;
        let path = path(arguments)?;
        let content = optional_string(arguments, "content")?
            .ok_or_else(|| Refusal("content is missing: give the file's contents".into()))?;
        let bytes = match optional_string(arguments, "encoding")?.as_deref() {
            None | Some("utf-8") => content.into_bytes(),
            Some("base64") => super::output::unbase64(&content)
                .ok_or_else(|| Refusal("content is not valid base64".into()))?,
            Some(other) => {
                return Err(Refusal(format!(
                    "encoding {other:?}: expected \"utf-8\" or \"base64\""
                )))
            }
        };
        if bytes.len() > MAX_FILE_WRITE {
            return Err(Refusal(format!(
                "the file is {} bytes, more than the {} file_write takes",
                bytes.len(),
                report::size(MAX_FILE_WRITE as u64)
            )));
        }
        session.with_sandbox(|sandbox| {
            sandbox
                .put(&path, &bytes, 0o644)
                .map_err(|e| Refusal(chain(&e)))
        })?;
        Ok(structured(
            json!({"id": session.id, "path": path, "bytes": bytes.len()}),
            false,
        ))
    }

    fn file_read(
        &self,
        settings: &Settings,
        arguments: &Map<String, Value>,
    ) -> Result<Value, Refusal> {
        known(arguments, "file_read", &["id", "path"])?;
        let session = self.session(arguments)?;
        let path = path(arguments)?;
        let bytes = session.with_sandbox(|sandbox| {
            sandbox.fetch(&path, settings.max_output).map_err(|e| {
                Refusal(format!(
                    "{} (file_read returns at most {}, the server's --max-output; read a part \
                     with session_run, e.g. head -c)",
                    chain(&e),
                    report::size(settings.max_output as u64)
                ))
            })
        })?;
        let (content, encoding) = match String::from_utf8(bytes) {
            Ok(text) => (text, "utf-8"),
            Err(e) => (base64(e.as_bytes()), "base64"),
        };
        Ok(structured(
            json!({"id": session.id, "path": path, "content": content, "encoding": encoding}),
            false,
        ))
    }

    fn file_list(
        &self,
        settings: &Settings,
        arguments: &Map<String, Value>,
    ) -> Result<Value, Refusal> {
        known(arguments, "file_list", &["id", "path"])?;
        let session = self.session(arguments)?;
        let path = match optional_string(arguments, "path")? {
            None => SESSION_DIR.to_string(),
            Some(_) => path(arguments)?,
        };
        let request = ExecRequest::new("/bin/ls")
            .args(["-lA", "--", &path])
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::Null)
            .wall_time_ms(10_000);
        let mut child = session.with_sandbox(|sandbox| {
            sandbox
                .spawn(request)
                .map_err(|e| Refusal(format!("ls in the session: {}", chain(&e))))
        })?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let bound = settings.max_output;
        let err = std::thread::spawn(move || stderr.map(|s| Captured::new(4096).read_all(s)));
        let out = stdout.map(|s| Captured::new(bound).read_all(s));
        let err = err.join().ok().flatten();
        let verdict = child
            .wait()
            .map_err(|e| Refusal(format!("ls in the session: {}", chain(&e))))?;
        let mut fields = Map::new();
        out.unwrap_or_else(|| Captured::new(bound))
            .into_fields("listing", &mut fields);
        if !verdict.status.success() {
            let mut said = Map::new();
            err.unwrap_or_else(|| Captured::new(4096))
                .into_fields("e", &mut said);
            return Err(Refusal(format!(
                "{path:?} cannot be listed: {}",
                said.get("e").and_then(Value::as_str).unwrap_or("").trim()
            )));
        }
        fields.insert("id".into(), json!(session.id));
        fields.insert("path".into(), json!(path));
        Ok(structured(Value::Object(fields), false))
    }
}

/// The most bytes of one `file_write`.
pub const MAX_FILE_WRITE: usize = 1 << 20;

/// Destroys a session's sandbox, once the calls using it are done with it.
fn end(session: Arc<Session>) {
    let sandbox = session
        .sandbox
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(sandbox) = sandbox {
        if let Err(e) = sandbox.destroy() {
            tracing::debug!(error = %chain(&e), "destroying a session");
        }
    }
}

impl Session {
    /// Runs `f` with the session's sandbox, unless it has ended.
    fn with_sandbox<T>(
        &self,
        f: impl FnOnce(&Sandbox) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let sandbox = self.sandbox.read().unwrap_or_else(|p| p.into_inner());
        match sandbox.as_ref() {
            Some(sandbox) => f(sandbox),
            None => Err(unknown_session(&self.id)),
        }
    }
}

fn unknown_session(id: &str) -> Refusal {
    Refusal(format!(
        "unknown session {id:?}: this server has no such session (a session belongs to the \
         server that made it, and ends when destroyed, idle for too long, or when the server \
         ends); make one with session_create"
    ))
}

fn known(arguments: &Map<String, Value>, tool: &str, keys: &[&str]) -> Result<(), Refusal> {
    match arguments.keys().find(|key| !keys.contains(&key.as_str())) {
        Some(unknown) => Err(Refusal(format!(
            "unknown argument {unknown:?}; {tool} takes: {}",
            keys.join(", ")
        ))),
        None => Ok(()),
    }
}

fn seconds(arguments: &Map<String, Value>, key: &str) -> Result<Option<f64>, Refusal> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(Some)
            .ok_or_else(|| Refusal(format!("{key} must be a number of seconds above 0"))),
    }
}

/// A path in the session: absolute, or relative to [`SESSION_DIR`].
fn inside(path: &str) -> Result<String, Refusal> {
    if path.is_empty() || path.contains('\0') {
        return Err(Refusal(format!(
            "path {path:?} must be non-empty, without NUL"
        )));
    }
    Ok(if path.starts_with('/') {
        path.to_string()
    } else {
        Path::new(SESSION_DIR).join(path).display().to_string()
    })
}

fn path(arguments: &Map<String, Value>) -> Result<String, Refusal> {
    let path =
        optional_string(arguments, "path")?.ok_or_else(|| Refusal("path is missing".into()))?;
    inside(&path)
}

/// A `session_run`'s argv, and how a job shows it.
fn command(
    settings: &Settings,
    arguments: &Map<String, Value>,
) -> Result<(Vec<OsString>, String), Refusal> {
    let command = optional_string(arguments, "command")?;
    let code = optional_string(arguments, "code")?;
    let argv = match arguments.get("argv") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| {
                    item.as_str()
                        .filter(|s| !s.contains('\0'))
                        .map(OsString::from)
                        .ok_or_else(|| Refusal("argv must hold strings without NUL".into()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(Refusal(format!(
                "argv must be an array of strings, not {}",
                kind(other)
            )))
        }
    };
    match (argv, command, code) {
        (Some(argv), None, None) if !argv.is_empty() => {
            let shown = argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            Ok((argv, shown))
        }
        (None, Some(command), None) if !command.contains('\0') => Ok((
            vec!["/bin/sh".into(), "-c".into(), command.clone().into()],
            command,
        )),
        (None, None, Some(code)) => {
            let name = optional_string(arguments, "language")?
                .ok_or_else(|| Refusal("language is missing: code needs one".into()))?;
            let language = settings
                .languages
                .iter()
                .find(|l| l.name == name)
                .ok_or_else(|| {
                    Refusal(format!(
                        "language {name:?} is not available in this sandbox; it has: {}",
                        settings
                            .languages
                            .iter()
                            .map(|l| l.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if code.len() > tools::MAX_CODE_BYTES || code.contains('\0') {
                return Err(Refusal(format!(
                    "code must be at most {} and without NUL bytes; write larger programs with \
                     file_write",
                    report::size(tools::MAX_CODE_BYTES as u64)
                )));
            }
            Ok((
                vec![
                    language.program.clone().into(),
                    language.flag.into(),
                    code.into(),
                ],
                format!("{name} code"),
            ))
        }
        _ => Err(Refusal(
            "give one of: command (a shell line), argv (a non-empty array), or language and code"
                .into(),
        )),
    }
}

/// Reads a job's streams and waits for its end, on threads of their own.
fn follow(
    job: &Arc<Job>,
    stdout: Option<impl Read + Send + 'static>,
    stderr: Option<impl Read + Send + 'static>,
) {
    fn reader(job: Arc<Job>, stream: Option<impl Read>, err: bool) {
        if let Some(mut stream) = stream {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut state = lock(&job.state);
                        if err {
                            state.stderr.push(&chunk[..n]);
                        } else {
                            state.stdout.push(&chunk[..n]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let mut state = lock(&job.state);
        state.streams_open -= 1;
        drop(state);
        job.ended.notify_all();
    }
    let (a, b) = (job.clone(), job.clone());
    std::thread::spawn(move || reader(a, stdout, false));
    std::thread::spawn(move || reader(b, stderr, true));
    let job = job.clone();
    std::thread::spawn(move || {
        let end = tools::wait(&job.child);
        let mut state = lock(&job.state);
        // The verdict counts once what was written is read (the pipes close at the end).
        let deadline = Instant::now() + Duration::from_secs(2);
        while state.streams_open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = job
                .ended
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.end = Some(end);
        drop(state);
        job.ended.notify_all();
    });
}

/// A finished job's result: `run_command`'s fields and the job's.
fn job_result(job: &Job) -> Value {
    let state = lock(&job.state);
    let mut result = match &state.end {
        Some(Ok(verdict)) => tools::result(
            verdict,
            state.stdout.captured.clone(),
            state.stderr.captured.clone(),
        ),
        Some(Err(message)) => return tools::error_result(message),
        None => return tools::error_result("the job is still running"),
    };
    if let Some(fields) = result["structuredContent"].as_object_mut() {
        fields.insert("job".into(), json!(job.id));
        fields.insert("session".into(), json!(job.session));
        fields.insert("running".into(), json!(false));
        let text = serde_json::to_string(fields).unwrap_or_default();
        if let Some(last) = result["content"].as_array_mut().and_then(|c| c.last_mut()) {
            last["text"] = json!(text);
        }
    }
    result
}

fn session_fields(session: &Session, bounds: &Bounds) -> Value {
    json!({
        "id": session.id,
        "name": session.name,
        "network": session.network,
        "cwd": SESSION_DIR,
        "idle_timeout_s": bounds.idle_ms as f64 / 1000.0,
        "lifetime_s": bounds.lifetime_ms as f64 / 1000.0,
    })
}

fn structured(fields: Value, is_error: bool) -> Value {
    json!({
        "content": [{"type": "text", "text": fields.to_string()}],
        "structuredContent": fields,
        "isError": is_error,
    })
}

/// 128 random bits as 32 hex digits.
fn mint_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("no random bytes for a session id: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The `tools/list` entries of the session tools.
pub fn definitions(settings: &Settings, bounds: &Bounds) -> Vec<Value> {
    let id = json!({"type": "string", "description": "The session's id, from session_create."});
    let job = json!({"type": "string", "description": "The job's id, from session_run."});
    let path = json!({"type": "string", "description": format!(
        "A path in the session: absolute, or relative to {SESSION_DIR} (its working directory).")});
    let annotations = |read_only: bool, destructive: bool| {
        json!({"readOnlyHint": read_only,
        "destructiveHint": destructive, "idempotentHint": false, "openWorldHint": false})
    };
    let languages: Vec<&str> = settings.languages.iter().map(|l| l.name).collect();
    let mut run_schema = tools::output_schema();
    if let Some(properties) = run_schema["properties"].as_object_mut() {
        properties.insert("job".into(), json!({"type": "string"}));
        properties.insert("session".into(), json!({"type": "string"}));
        properties.insert("running".into(), json!({"type": "boolean"}));
        properties.insert("note".into(), json!({"type": "string"}));
    }
    // A running job's answer has only job, session and running.
    run_schema["required"] = json!(["job", "running"]);
    vec![
        json!({
            "name": "session_create",
            "title": "Create a persistent sandbox session",
            "description": format!(
                "Make a sandbox that persists across calls: its files (under {SESSION_DIR} and /tmp) \
                 and processes stay until session_destroy, {} without a command, {} of age, or the \
                 end of this server. At most {} sessions at once. Returns its id.",
                report::duration(bounds.idle_ms), report::duration(bounds.lifetime_ms), bounds.max),
            "inputSchema": {"type": "object", "properties": {
                "name": {"type": "string", "description": "A label of your own for it."},
                "network": {"type": "boolean", "description": "Give it the network (only if this server allows it; default false)."}
            }, "additionalProperties": false},
            "outputSchema": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": ["string", "null"]},
                "network": {"type": "boolean"}, "cwd": {"type": "string"},
                "idle_timeout_s": {"type": "number"}, "lifetime_s": {"type": "number"}},
                "required": ["id", "name", "network", "cwd", "idle_timeout_s", "lifetime_s"]},
            "annotations": annotations(false, false)
        }),
        json!({
            "name": "session_run",
            "title": "Run a command in a session",
            "description": format!(
                "Run a shell line (command), a program (argv) or code (language: {}) in a session, \
                 in {SESSION_DIR}. Returns the result if it ends within wait_s (default and most \
                 {MAX_WAIT_S} s), else (or at once with background: true) a job id to poll with \
                 job_status and job_output and to end with job_kill.", languages.join(", ")),
            "inputSchema": {"type": "object", "properties": {
                "id": id,
                "command": {"type": "string", "description": "A shell command line, run with /bin/sh -c."},
                "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "language": {"type": "string", "enum": languages},
                "code": {"type": "string", "description": "The program's text (with language)."},
                "stdin": {"type": "string"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "cwd": path,
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "description": "Kill the command after this long (default: only the session's lifetime)."},
                "background": {"type": "boolean", "description": "Answer at once with a job id."},
                "wait_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_S}
            }, "required": ["id"], "additionalProperties": false},
            "outputSchema": run_schema,
            "annotations": annotations(false, false)
        }),
        json!({
            "name": "job_status",
            "title": "A session job's status",
            "description": "Whether a job still runs; once it ended, its result (exit code, reason, head and tail of its output).",
            "inputSchema": {"type": "object", "properties": {"job": job}, "required": ["job"], "additionalProperties": false},
            "annotations": annotations(true, false)
        }),
        json!({
            "name": "job_output",
            "title": "A session job's output since an offset",
            "description": format!(
                "A job's stdout and stderr from byte offsets on (at most {} of each per answer; \
                 the last {} of each are kept). Pass the last answer's stdout_next and stderr_next \
                 as stdout_since and stderr_since to get only what is new.",
                report::size(settings.max_output as u64), report::size(KEPT_BYTES as u64)),
            "inputSchema": {"type": "object", "properties": {
                "job": job,
                "stdout_since": {"type": "integer", "minimum": 0},
                "stderr_since": {"type": "integer", "minimum": 0}
            }, "required": ["job"], "additionalProperties": false},
            "annotations": annotations(true, false)
        }),
        json!({
            "name": "job_kill",
            "title": "Kill a session job",
            "description": "Kill a job's command (not its session) and return its result.",
            "inputSchema": {"type": "object", "properties": {"job": job}, "required": ["job"], "additionalProperties": false},
            "annotations": annotations(false, true)
        }),
        json!({
            "name": "file_write",
            "title": "Write a file in a session",
            "description": format!("Write a file (at most {}) in a session, as the session's user; replaces it.",
                report::size(MAX_FILE_WRITE as u64)),
            "inputSchema": {"type": "object", "properties": {
                "id": id, "path": path,
                "content": {"type": "string"},
                "encoding": {"type": "string", "enum": ["utf-8", "base64"], "description": "How content is given (default utf-8)."}
            }, "required": ["id", "path", "content"], "additionalProperties": false},
            "annotations": annotations(false, true)
        }),
        json!({
            "name": "file_read",
            "title": "Read a file in a session",
            "description": format!("Read a regular file (at most {}) of a session: UTF-8 text, or base64 (encoding says which).",
                report::size(settings.max_output as u64)),
            "inputSchema": {"type": "object", "properties": {"id": id, "path": path},
                "required": ["id", "path"], "additionalProperties": false},
            "annotations": annotations(true, false)
        }),
        json!({
            "name": "file_list",
            "title": "List a directory in a session",
            "description": format!("ls -lA of a path in a session (default {SESSION_DIR})."),
            "inputSchema": {"type": "object", "properties": {"id": id, "path": path},
                "required": ["id"], "additionalProperties": false},
            "annotations": annotations(true, false)
        }),
        json!({
            "name": "session_destroy",
            "title": "Destroy a session",
            "description": "End a session: its processes killed, its files gone.",
            "inputSchema": {"type": "object", "properties": {"id": id}, "required": ["id"], "additionalProperties": false},
            "annotations": annotations(false, true)
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_its_last_bytes_and_counts_all() {
        let mut stream = Stream::new(16);
        stream.push(&vec![b'a'; KEPT_BYTES]);
        stream.push(b"bc");
        assert_eq!(stream.total(), KEPT_BYTES as u64 + 2);
        assert_eq!(stream.start, 2);
        assert_eq!(stream.kept.len(), KEPT_BYTES);
        assert!(stream.kept.ends_with(b"abc"));
    }

    #[test]
    fn paths_are_under_the_session_directory_unless_absolute() {
        assert_eq!(inside("a/b").ok().unwrap(), "/work/a/b");
        assert_eq!(inside("/tmp/x").ok().unwrap(), "/tmp/x");
        assert!(inside("").is_err());
        assert!(inside("a\0b").is_err());
    }

    #[test]
    fn a_run_is_one_of_command_argv_or_code() {
        let settings = Settings {
            options: crate::run::profile::Options::default(),
            max_output: 1024,
            languages: vec![tools::Language {
                name: "python",
                program: "/usr/bin/python3".into(),
                flag: "-c",
            }],
        };
        let run = |arguments: Value| {
            let Value::Object(arguments) = arguments else {
                panic!("an object")
            };
            command(&settings, &arguments).map_err(|Refusal(message)| message)
        };
        let (argv, shown) = run(json!({"command": "echo hi"})).ok().unwrap();
        assert_eq!(argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(shown, "echo hi");
        let (argv, _) = run(json!({"language": "python", "code": "print(1)"}))
            .ok()
            .unwrap();
        assert_eq!(argv, ["/usr/bin/python3", "-c", "print(1)"]);
        for (arguments, says) in [
            (json!({}), "give one of"),
            (json!({"command": "a", "argv": ["b"]}), "give one of"),
            (json!({"argv": []}), "give one of"),
            (json!({"argv": [1]}), "strings"),
            (json!({"code": "1"}), "language is missing"),
            (json!({"language": "ruby", "code": "1"}), "it has: python"),
        ] {
            let message = run(arguments).err().unwrap();
            assert!(message.contains(says), "{message}");
        }
    }
}
