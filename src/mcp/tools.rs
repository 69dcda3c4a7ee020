//! The tools of `hatchery mcp`: `run_command` and `run_code`, their schemas, the checks
//! of a call's arguments (each refusal a message for the model), and the run of one call
//! in a fresh sandbox with its output bounded; and `status`, the daemon's report on
//! itself. Runs in the `hatchery mcp` process, one thread per call.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use hatchery::protocol::{EndReason, ExitStatus, Limit, Mount, Stdio};
use hatchery::{error_chain as chain, ChildProcess, Client, SpawnError, Verdict};

use super::output::Captured;
use crate::run::profile::Options;
use crate::run::report;

/// The most of `code` a `run_code` call may send: it travels in the request, whose
/// whole size the protocol bounds.
pub const MAX_CODE_BYTES: usize = 64 * 1024;
/// The most of `stdin` a call may send.
pub const MAX_STDIN_BYTES: usize = 1 << 20;
/// The most files a `run_code` call may put in the sandbox (their size together is
/// bounded by the protocol's 64 KiB for all files of a request).
pub const MAX_FILES: usize = 64;
/// Where `run_code` runs: a fresh tmpfs, its working directory, where `files` go.
pub const CODE_DIR: &str = "/work";

/// What every call shares: the server's options (limits, binds, policy), the output
/// bound, the languages found in the sandbox's root.
pub struct Settings {
    pub options: Options,
    /// The most bytes of each stream a result keeps.
    pub max_output: usize,
    pub languages: Vec<Language>,
}

/// A language of `run_code`, and the interpreter found for it in the sandbox's root.
#[derive(Debug, Clone)]
pub struct Language {
    pub name: &'static str,
    /// The interpreter's path inside the sandbox.
    pub program: PathBuf,
    /// The flag that takes the program's text: `-c`, `-e`.
    pub flag: &'static str,
}

/// The languages whose interpreter is in `root` (the sandbox's root: `/` or `--chroot`).
pub fn find_languages(root: &Path) -> Vec<Language> {
    const KNOWN: [(&str, &str, &str); 4] = [
        ("python", "python3", "-c"),
        ("sh", "sh", "-c"),
        ("bash", "bash", "-c"),
        ("node", "node", "-e"),
    ];
    KNOWN
        .iter()
        .filter_map(|&(name, program, flag)| {
            ["/usr/local/bin", "/usr/bin", "/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(program))
                .find(|path| {
                    root.join(path.strip_prefix("/").unwrap_or(path))
                        .metadata()
                        .is_ok_and(|meta| meta.is_file())
                })
                .map(|program| Language {
                    name,
                    program,
                    flag,
                })
        })
        .collect()
}

/// The result of a run, the same for both tools.
pub(super) fn output_schema() -> Value {
    let stream = |name: &str| {
        json!({"type": "string", "description": format!(
            "What the program wrote to {name}: UTF-8 text, or base64 when it is not text \
             ({name}_encoding). When longer than the server's bound, its head and tail, \
             with a line between them saying how much was left out.")})
    };
    json!({
        "type": "object",
        "properties": {
            "exit_code": {"type": ["integer", "null"],
                "description": "The program's exit code; null when a signal ended it."},
            "signal": {"type": ["string", "null"],
                "description": "The signal that ended the program (SIGKILL, SIGSEGV, ...), or null."},
            "reason": {"type": "string",
                "enum": ["exited", "signaled", "timeout", "cpu_timeout", "oom", "killed", "daemon_shutdown"],
                "description": "Why the sandbox ended: the program exited or a signal of its own \
                    ended it; or a limit did (timeout: wall-clock, cpu_timeout, oom: memory); \
                    or it was killed (cancelled), or the daemon shut down."},
            "duration_ms": {"type": "number", "description": "Wall-clock time of the run."},
            "stdout": stream("stdout"),
            "stderr": stream("stderr"),
            "stdout_encoding": {"type": "string", "enum": ["utf-8", "base64"]},
            "stderr_encoding": {"type": "string", "enum": ["utf-8", "base64"]},
            "stdout_truncated": {"type": "boolean"},
            "stderr_truncated": {"type": "boolean"},
            "stdout_bytes": {"type": "integer", "description": "The whole length of stdout."},
            "stderr_bytes": {"type": "integer", "description": "The whole length of stderr."}
        },
        "required": ["exit_code", "signal", "reason", "duration_ms", "stdout", "stderr",
            "stdout_encoding", "stderr_encoding", "stdout_truncated", "stderr_truncated",
            "stdout_bytes", "stderr_bytes"]
    })
}

/// The `tools/list` entries: `run_command` always, `run_code` when a language is here,
/// `status` always.
pub fn definitions(settings: &Settings) -> Vec<Value> {
    let limits = |what: &str| {
        format!(
            "{what} Each call runs in a fresh sandbox (its own namespaces, no network unless \
             the server allows it, read-only system files, a private /tmp), ended after \
             timeout_s seconds; at most {} of each of stdout and stderr is returned.",
            report::size(settings.max_output as u64)
        )
    };
    let common = json!({
        "stdin": {"type": "string", "description": "Text given to the program on stdin (none: empty)."},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0,
            "description": format!("Seconds before the sandbox is killed{}.",
                match settings.options.limits.wall_time_ms {
                    Some(ms) => format!(" (default and most: {})", report::duration(ms)),
                    None => String::new(),
                })},
        "memory": {"type": ["string", "integer"],
            "description": "Memory of the whole sandbox: bytes, or with a unit (\"256M\", \"1G\")."}
    });
    let mut command_properties = json!({
        "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
            "description": "The program and its arguments, run without a shell (the program looked up in PATH)."},
        "command": {"type": "string", "description": "A shell command line, run with /bin/sh -c (instead of argv)."},
        "env": {"type": "object", "additionalProperties": {"type": "string"},
            "description": "Environment variables to add or replace."},
        "cwd": {"type": "string", "description": "Working directory, an absolute path in the sandbox (default /)."}
    });
    extend(&mut command_properties, &common);
    let mut tools = vec![json!({
        "name": "run_command",
        "title": "Run a command in a sandbox",
        "description": limits("Run a program (argv) or a shell command line (command) and return its exit status, stdout and stderr."),
        "inputSchema": {"type": "object", "properties": command_properties},
        "outputSchema": output_schema(),
        "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
    })];
    if !settings.languages.is_empty() {
        let names: Vec<&str> = settings.languages.iter().map(|l| l.name).collect();
        let mut code_properties = json!({
            "language": {"type": "string", "enum": names},
            "code": {"type": "string", "description": "The program's text."},
            "files": {"type": "object", "additionalProperties": {"type": "string"},
                "description": format!("Files to put beside the code, read-only: path (relative, under {CODE_DIR}) to contents; at most {MAX_FILES}, 64 KiB in all.")}
        });
        extend(&mut code_properties, &common);
        tools.push(json!({
            "name": "run_code",
            "title": "Run code in a sandbox",
            "description": limits(&format!(
                "Run a program in one of {} and return its exit status, stdout and stderr. \
                 It runs in {CODE_DIR}, a fresh writable directory.", names.join(", "))),
            "inputSchema": {"type": "object", "properties": code_properties, "required": ["language", "code"]},
            "outputSchema": output_schema(),
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        }));
    }
    tools.push(status_definition());
    tools
}

/// Which zygote the server's calls go to, as `status` says it.
pub enum Backend {
    /// A daemon, at this socket.
    Daemon(PathBuf),
    /// An embedded zygote of the server's own.
    Embedded,
}

/// What `status` says of the server's zygote: `served_by` in its result.
fn served_by(backend: &Backend) -> Value {
    match backend {
        Backend::Daemon(socket) => json!({
            "kind": "daemon",
            "socket": socket.display().to_string(),
            "description": format!("the hatchery daemon at {}: its operator's policy applies, \
                and other clients' sandboxes may share it", socket.display()),
        }),
        Backend::Embedded => json!({
            "kind": "embedded",
            "socket": null,
            "description": "an embedded zygote of this MCP server's own (no daemon): it runs \
                this server's calls alone, under the server's flags, and ends with it",
        }),
    }
}

/// The `tools/list` entry of `status`.
pub fn status_definition() -> Value {
    let count = json!({"type": "array", "items": {"type": "object",
        "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["name", "count"]}});
    let integer = json!({"type": "integer"});
    json!({
        "name": "status",
        "title": "The sandbox daemon's status",
        "description": "Report on the zygote that runs this server's sandboxes (a hatchery \
            daemon, or an embedded zygote of the server's own: served_by says which): its \
            version and uptime, the live sandboxes this server may see (program, age, memory), \
            its limit on live sandboxes, its warm pool, veth networks, and how many spawns it \
            served and failed. Takes no arguments; runs nothing.",
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false},
        "outputSchema": {
            "type": "object",
            "properties": {
                "served_by": {"type": "object", "properties": {
                    "kind": {"type": "string", "enum": ["daemon", "embedded"]},
                    "socket": {"type": ["string", "null"]},
                    "description": {"type": "string"}},
                    "required": ["kind", "socket", "description"]},
                "version": {"type": "string", "description": "The zygote's name and version."},
                "pid": integer,
                "uptime_ms": integer,
                "all_owners": {"type": "boolean",
                    "description": "Whether sandboxes holds every owner's sandboxes, or only this server's uid's."},
                "sandboxes": {"type": "array", "items": {"type": "object", "properties": {
                    "sandbox": integer, "id": integer, "pid": integer,
                    "owner_uid": {"type": ["integer", "null"]},
                    "program": {"type": "string"},
                    "age_ms": integer,
                    "memory_bytes": {"type": ["integer", "null"]},
                    "phase": {"type": "string", "enum": ["setting_up", "running", "failed", "ending"]},
                    "client_connected": {"type": "boolean"}},
                    "required": ["sandbox", "id", "pid", "owner_uid", "program", "age_ms",
                        "memory_bytes", "phase", "client_connected"]}},
                "sandboxes_omitted": integer,
                "live": {"type": "integer", "description": "Live sandboxes of every owner."},
                "max_children": {"type": "integer", "description": "The most live sandboxes at once."},
                "warm_pool": {"type": "object", "properties": {
                    "size_per_shape": integer, "shapes": integer, "idle": integer,
                    "hits": integer, "misses": integer,
                    "hit_rate": {"type": ["number", "null"]}},
                    "required": ["size_per_shape", "shapes", "idle", "hits", "misses", "hit_rate"]},
                "veth": {"type": "object", "properties": {
                    "enabled": {"type": "boolean"}, "leased": integer, "draining": integer,
                    "free": integer},
                    "required": ["enabled", "leased", "draining", "free"]},
                "served": count, "failed": count, "ended": count
            },
            "required": ["served_by", "version", "pid", "uptime_ms", "all_owners", "sandboxes",
                "sandboxes_omitted", "live", "max_children", "warm_pool", "veth", "served",
                "failed", "ended"]
        },
        "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}
    })
}

/// Checks a `status` call's arguments: there are none.
pub fn check_status(arguments: &Map<String, Value>) -> Result<(), Refusal> {
    match arguments.keys().next() {
        Some(unknown) => Err(Refusal(format!(
            "unknown argument {unknown:?}; status takes no arguments"
        ))),
        None => Ok(()),
    }
}

/// Asks the zygote for its status: `hatchery status --json`'s fields and `served_by`.
pub fn status(client: &Client, backend: &Backend) -> Value {
    let status = match client.status() {
        Ok(status) => status,
        Err(e) => return error_result(&format!("the zygote's status: {}", chain(&e))),
    };
    let mut fields = match status.to_json() {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    fields.insert("served_by".into(), served_by(backend));
    json!({
        "content": [{"type": "text", "text": serde_json::to_string(&fields).unwrap_or_default()}],
        "structuredContent": fields,
        "isError": false,
    })
}

fn extend(properties: &mut Value, more: &Value) {
    if let (Some(properties), Some(more)) = (properties.as_object_mut(), more.as_object()) {
        properties.extend(more.clone());
    }
}

/// A call refused before it ran, or a run that failed: a message for the model (the
/// tool result's text, with `isError`).
#[derive(Debug)]
pub struct Refusal(pub String);

/// One call, checked and ready to run.
pub struct Call {
    argv: Vec<OsString>,
    options: Options,
    stdin: Option<Vec<u8>>,
    /// `run_code`'s files: contents and where they go (an `Options` names host files
    /// only, so these become mounts once the request is built).
    files: Vec<(Vec<u8>, PathBuf)>,
}

/// Checks a call of the tool `name` (one that [`definitions`] lists) and makes it ready.
pub fn prepare(
    settings: &Settings,
    name: &str,
    arguments: &Map<String, Value>,
) -> Result<Call, Refusal> {
    let known: &[&str] = match name {
        "run_command" => &[
            "argv",
            "command",
            "env",
            "cwd",
            "stdin",
            "timeout_s",
            "memory",
        ],
        _ => &["language", "code", "files", "stdin", "timeout_s", "memory"],
    };
    if let Some(unknown) = arguments.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(Refusal(format!(
            "unknown argument {unknown:?}; {name} takes: {}",
            known.join(", ")
        )));
    }
    let mut options = settings.options.clone();
    limits(&mut options, arguments)?;
    let stdin = optional_string(arguments, "stdin")?
        .map(|text| {
            if text.len() > MAX_STDIN_BYTES {
                Err(Refusal(format!(
                    "stdin is {} bytes, more than the {} a call may send",
                    text.len(),
                    report::size(MAX_STDIN_BYTES as u64)
                )))
            } else {
                Ok(text.into_bytes())
            }
        })
        .transpose()?;
    let mut files = Vec::new();
    let argv = match name {
        "run_command" => command(&mut options, arguments)?,
        _ => code(settings, &mut options, &mut files, arguments)?,
    };
    Ok(Call {
        argv,
        options,
        stdin,
        files,
    })
}

pub(super) fn optional_string(
    arguments: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, Refusal> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(Refusal(format!(
            "{key} must be a string, not {}",
            kind(other)
        ))),
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `timeout_s` and `memory`: at most the server's own limits, which are their defaults.
fn limits(options: &mut Options, arguments: &Map<String, Value>) -> Result<(), Refusal> {
    if let Some(value) = arguments.get("timeout_s").filter(|v| !v.is_null()) {
        let seconds = value
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| {
                Refusal(format!(
                    "timeout_s must be a number of seconds above 0, not {value}"
                ))
            })?;
        let ms = (seconds * 1000.0).ceil().min(u64::MAX as f64) as u64;
        let server = options.limits.wall_time_ms;
        if let Some(most) = server.filter(|&most| ms > most) {
            return Err(Refusal(format!(
                "timeout_s {seconds} is more than this server allows: at most {} ({}); \
                 ask for less, or run it in parts",
                most as f64 / 1000.0,
                report::duration(most)
            )));
        }
        options.limits.wall_time_ms = Some(ms);
    }
    if let Some(value) = arguments.get("memory").filter(|v| !v.is_null()) {
        let text = match value {
            Value::String(text) => text.clone(),
            // A number is bytes, as the schema says (a bare number in text is refused
            // below 4096: "64" is more likely 64M).
            Value::Number(n) if n.is_u64() => format!("{n}B"),
            other => {
                return Err(Refusal(format!(
                    "memory must be bytes or a size such as \"256M\", not {other}"
                )))
            }
        };
        let bytes = hatchery::limits::parse_limit(Limit::Memory, &text)
            .map_err(|e| Refusal(format!("memory {text:?}: {e}")))?;
        if bytes == 0 {
            return Err(Refusal("memory must be more than 0".into()));
        }
        if let Some(most) = options.limits.memory_bytes.filter(|&most| bytes > most) {
            return Err(Refusal(format!(
                "memory {text:?} is more than this server allows: at most {}",
                report::size(most)
            )));
        }
        options.limits.memory_bytes = Some(bytes);
        options.limits.unlimited.remove(Limit::Memory);
    }
    Ok(())
}

/// `run_command`'s program: `argv`, or `command` for `/bin/sh -c`; its `env` and `cwd`.
fn command(
    options: &mut Options,
    arguments: &Map<String, Value>,
) -> Result<Vec<OsString>, Refusal> {
    let argv = match (
        arguments.get("argv"),
        optional_string(arguments, "command")?,
    ) {
        (Some(Value::Array(items)), None) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(text) if !text.contains('\0') => Ok(OsString::from(text)),
                other => Err(Refusal(format!(
                    "argv must hold strings without NUL bytes; {other} is not one"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        (Some(Value::Array(_)), None) => {
            return Err(Refusal(
                "argv is empty: give the program and its arguments".into(),
            ))
        }
        (None | Some(Value::Null), Some(line)) => vec!["/bin/sh".into(), "-c".into(), line.into()],
        (None | Some(Value::Null), None) => {
            return Err(Refusal(
                "give argv (the program and its arguments) or command (a shell command line)"
                    .into(),
            ))
        }
        (Some(Value::Array(_)), Some(_)) => {
            return Err(Refusal("give argv or command, not both".into()))
        }
        (Some(other), _) => {
            return Err(Refusal(format!(
                "argv must be an array of strings, not {}",
                kind(other)
            )))
        }
    };
    match arguments.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(env)) => {
            for (key, value) in env {
                let Value::String(value) = value else {
                    return Err(Refusal(format!("env {key}: the value must be a string")));
                };
                if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0')
                {
                    return Err(Refusal(format!(
                        "env {key:?}: a name must be non-empty, without '=' or NUL bytes"
                    )));
                }
                options.set_env(&format!("{key}={value}"));
            }
        }
        Some(other) => {
            return Err(Refusal(format!(
                "env must be an object of strings, not {}",
                kind(other)
            )))
        }
    }
    if let Some(cwd) = optional_string(arguments, "cwd")? {
        let path = PathBuf::from(&cwd);
        let plain = !path.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        });
        if !path.is_absolute() || !plain {
            return Err(Refusal(format!(
                "cwd {cwd:?} must be an absolute path in the sandbox, without \"..\""
            )));
        }
        options.cwd = Some(path);
    }
    Ok(argv)
}

/// `run_code`'s interpreter and program, run in a fresh [`CODE_DIR`] with its `files`.
fn code(
    settings: &Settings,
    options: &mut Options,
    put: &mut Vec<(Vec<u8>, PathBuf)>,
    arguments: &Map<String, Value>,
) -> Result<Vec<OsString>, Refusal> {
    let available = || {
        settings
            .languages
            .iter()
            .map(|l| l.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = optional_string(arguments, "language")?
        .ok_or_else(|| Refusal(format!("language is missing; one of: {}", available())))?;
    let language = settings
        .languages
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| {
            Refusal(format!(
                "language {name:?} is not available in this sandbox; it has: {}",
                available()
            ))
        })?;
    let code = optional_string(arguments, "code")?
        .ok_or_else(|| Refusal("code is missing: give the program's text".into()))?;
    if code.len() > MAX_CODE_BYTES || code.contains('\0') {
        return Err(Refusal(format!(
            "code must be at most {} and without NUL bytes; put larger data in files or stdin",
            report::size(MAX_CODE_BYTES as u64)
        )));
    }
    options.tmpfs.push(CODE_DIR.into());
    options.cwd = Some(CODE_DIR.into());
    let files = match arguments.get("files") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(files)) => files.clone(),
        Some(other) => {
            return Err(Refusal(format!(
                "files must be an object of path to contents, not {}",
                kind(other)
            )))
        }
    };
    if files.len() > MAX_FILES {
        return Err(Refusal(format!(
            "{} files, more than the {MAX_FILES} a call may put in the sandbox",
            files.len()
        )));
    }
    let mut total = 0;
    for (path, contents) in files {
        let Value::String(contents) = contents else {
            return Err(Refusal(format!(
                "files {path:?}: the contents must be a string"
            )));
        };
        let relative = Path::new(&path);
        let plain = relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if path.is_empty() || !plain || path.contains('\0') {
            return Err(Refusal(format!(
                "files {path:?}: a path must be relative, under {CODE_DIR}, without \"..\""
            )));
        }
        total += contents.len();
        if total > hatchery::protocol::validate::MAX_FILE_BYTES {
            return Err(Refusal(format!(
                "the files hold more than the {} a call may carry; put large data on stdin",
                report::size(hatchery::protocol::validate::MAX_FILE_BYTES as u64)
            )));
        }
        let target = Path::new(CODE_DIR).join(relative);
        if let Some(parent) = target.parent().filter(|p| *p != Path::new(CODE_DIR)) {
            if !options.dirs.iter().any(|d| d == parent) {
                options.dirs.push(parent.to_path_buf());
            }
        }
        put.push((contents.into_bytes(), target));
    }
    Ok(vec![
        language.program.clone().into(),
        language.flag.into(),
        code.into(),
    ])
}

/// A running call that `notifications/cancelled` (or the client's going away) can end.
#[derive(Default)]
pub struct Job {
    state: Mutex<JobState>,
}

#[derive(Default)]
struct JobState {
    cancelled: bool,
    child: Option<Arc<Mutex<ChildProcess>>>,
}

impl Job {
    /// Kills the call's sandbox (now, or as soon as it starts); its answer is not sent.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        if let Some(child) = &state.child {
            kill(child);
        }
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.lock().cancelled
    }

    pub(super) fn arm(&self, child: &Arc<Mutex<ChildProcess>>) {
        let mut state = self.lock();
        if state.cancelled {
            kill(child);
        }
        state.child = Some(child.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn kill(child: &Arc<Mutex<ChildProcess>>) {
    let child = child.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = child.kill() {
        tracing::warn!(error = %chain(&e), "cannot kill a cancelled call's sandbox");
    }
}

/// Runs `call` in a fresh sandbox of `client`'s and returns the tool result.
pub fn run(client: &Client, settings: &Settings, call: Call, job: &Job) -> Value {
    match run_sandboxed(client, settings, call, job) {
        Ok(result) => result,
        Err(Refusal(message)) => error_result(&message),
    }
}

/// A tool result that tells the model what went wrong.
pub fn error_result(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

fn run_sandboxed(
    client: &Client,
    settings: &Settings,
    call: Call,
    job: &Job,
) -> Result<Value, Refusal> {
    let Call {
        argv,
        options,
        stdin,
        files,
    } = call;
    let mut request = crate::run::request::sandboxed(&options, &argv)
        .map_err(|failure| Refusal(failure.message))?;
    for (contents, target) in files {
        request.sandbox.mounts.push(Mount::File {
            contents,
            target: target.as_os_str().into(),
        });
    }
    let request = request
        .stdin(if stdin.is_some() {
            Stdio::Pipe
        } else {
            Stdio::Null
        })
        .stdout(Stdio::Pipe)
        .stderr(Stdio::Pipe);
    let mut child = client
        .spawn_child(request)
        .map_err(|e| spawn_refusal(&e, &argv[0]))?;
    let (stdout, stderr, input) = (child.stdout.take(), child.stderr.take(), child.stdin.take());
    let child = Arc::new(Mutex::new(child));
    job.arm(&child);
    let bound = settings.max_output;
    let (stdout, stderr) = std::thread::scope(|scope| {
        if let (Some(mut input), Some(bytes)) = (input, stdin.as_deref()) {
            scope.spawn(move || {
                // A program that does not read it all closes the pipe: not an error.
                let _ = input.write_all(bytes);
            });
        }
        let err = scope.spawn(move || stderr.map(|s| Captured::new(bound).read_all(s)));
        let out = stdout.map(|s| Captured::new(bound).read_all(s));
        (out, err.join().ok().flatten())
    });
    let verdict = wait(&child).map_err(Refusal)?;
    Ok(result(
        &verdict,
        stdout.unwrap_or_else(|| Captured::new(bound)),
        stderr.unwrap_or_else(|| Captured::new(bound)),
    ))
}

/// Waits for the sandbox's end without holding its lock (a cancellation takes it to
/// kill): on its pidfd, then for the daemon's verdict.
pub(super) fn wait(child: &Arc<Mutex<ChildProcess>>) -> Result<Verdict, String> {
    let lock = || child.lock().unwrap_or_else(|p| p.into_inner());
    let pidfd = lock().pidfd().and_then(|fd| fd.try_clone_to_owned().ok());
    match pidfd {
        Some(pidfd) => loop {
            let mut fds = [nix::poll::PollFd::new(
                pidfd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("cannot wait for the sandbox: {e}")),
            }
        },
        None => loop {
            if lock().try_wait().map_err(|e| chain(&e))?.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        },
    }
    lock()
        .wait()
        .map_err(|e| format!("the sandbox's end was not reported: {}", chain(&e)))
}

/// A spawn that failed, said to the model.
pub(super) fn spawn_refusal(error: &SpawnError, program: &OsString) -> Refusal {
    let shown = Path::new(program).display();
    Refusal(match error {
        SpawnError::NotFound { .. } => format!(
            "{shown}: not found in the sandbox (looked up in PATH: /usr/local/bin:/usr/bin:/bin \
             unless env sets it; the sandbox has the host's /usr, /bin, /lib and /etc, read-only)"
        ),
        other => report::spawn_failure(other, program).message,
    })
}

/// The tool result of a finished run: its fields as `structuredContent`, and as JSON
/// text for clients that read only `content`; `isError` when a limit ended it.
pub(super) fn result(verdict: &Verdict, stdout: Captured, stderr: Captured) -> Value {
    let (exit_code, signal) = match verdict.status {
        ExitStatus::Exited(code) => (Some(code), None),
        ExitStatus::Signaled(signal) => (
            None,
            Some(
                nix::sys::signal::Signal::try_from(signal)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {signal}")),
            ),
        ),
    };
    let reason = match verdict.reason {
        EndReason::Exited => "exited",
        EndReason::Signaled => "signaled",
        EndReason::WallTimeout => "timeout",
        EndReason::CpuTimeout => "cpu_timeout",
        EndReason::OomKilled => "oom",
        EndReason::KilledByClient => "killed",
        EndReason::DaemonShutdown => "daemon_shutdown",
    };
    let mut fields = Map::new();
    fields.insert("exit_code".into(), json!(exit_code));
    fields.insert("signal".into(), json!(signal));
    fields.insert("reason".into(), json!(reason));
    fields.insert(
        "duration_ms".into(),
        json!(verdict.wall_time_us as f64 / 1000.0),
    );
    stdout.into_fields("stdout", &mut fields);
    stderr.into_fields("stderr", &mut fields);
    let ended_by_limit = report::end_reason(verdict);
    let text = serde_json::to_string(&fields).unwrap_or_default();
    let mut content = Vec::new();
    if let Some(line) = &ended_by_limit {
        content.push(json!({"type": "text", "text": format!(
            "the sandbox was {line} (the output so far follows)")}));
    }
    content.push(json!({"type": "text", "text": text}));
    json!({
        "content": content,
        "structuredContent": fields,
        "isError": ended_by_limit.is_some() && verdict.reason != EndReason::KilledByClient,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut options = Options::default();
        options.limits.wall_time_ms = Some(30_000);
        options.limits.memory_bytes = Some(256 << 20);
        Settings {
            options,
            max_output: 64 << 10,
            languages: vec![Language {
                name: "python",
                program: "/usr/bin/python3".into(),
                flag: "-c",
            }],
        }
    }

    fn prepared(tool: &str, arguments: Value) -> Result<Call, String> {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object")
        };
        prepare(&settings(), tool, &arguments).map_err(|Refusal(message)| message)
    }

    #[test]
    fn limits_may_be_lowered_never_raised() {
        let call = prepared(
            "run_command",
            json!({"argv": ["true"], "timeout_s": 1.5,
            "memory": 67108864}),
        )
        .ok()
        .unwrap();
        assert_eq!(call.options.limits.wall_time_ms, Some(1500));
        assert_eq!(call.options.limits.memory_bytes, Some(64 << 20));
        let refused = prepared("run_command", json!({"argv": ["true"], "timeout_s": 31}));
        assert_eq!(
            refused.err().unwrap(),
            "timeout_s 31 is more than this server allows: at most 30 (30s); ask for less, \
             or run it in parts"
        );
        let refused = prepared("run_command", json!({"argv": ["true"], "memory": "1G"}));
        assert!(refused.err().unwrap().contains("at most 256 MiB"));
        let refused = prepared("run_command", json!({"argv": ["true"], "memory": "64"}));
        assert!(refused.err().unwrap().contains("did you mean 64M?"));
        let refused = prepared("run_command", json!({"argv": ["true"], "timeout_s": -1}));
        assert!(refused.err().unwrap().contains("above 0"));
    }

    #[test]
    fn a_command_is_argv_or_a_shell_line() {
        let call = prepared("run_command", json!({"command": "echo hi"}))
            .ok()
            .unwrap();
        assert_eq!(call.argv, ["/bin/sh", "-c", "echo hi"]);
        for (arguments, says) in [
            (json!({}), "give argv"),
            (json!({"argv": []}), "argv is empty"),
            (json!({"argv": ["a"], "command": "b"}), "not both"),
            (json!({"argv": "ls"}), "argv must be an array"),
            (json!({"argv": [1]}), "argv must hold strings"),
            (
                json!({"argv": ["ls"], "cwd": "tmp"}),
                "must be an absolute path",
            ),
            (json!({"argv": ["ls"], "env": {"A=B": "c"}}), "without '='"),
            (
                json!({"argv": ["ls"], "shell": true}),
                "unknown argument \"shell\"",
            ),
        ] {
            let message = prepared("run_command", arguments).err().unwrap();
            assert!(message.contains(says), "{message}");
        }
        let call = prepared(
            "run_command",
            json!({"argv": ["env"], "env": {"A": "1"},
            "cwd": "/tmp"}),
        )
        .ok()
        .unwrap();
        assert_eq!(call.options.env, ["A=1"]);
        assert_eq!(call.options.cwd, Some(PathBuf::from("/tmp")));
    }

    #[test]
    fn code_runs_in_its_directory_with_its_files() {
        let call = prepared(
            "run_code",
            json!({"language": "python", "code": "print(1)",
            "files": {"a/b.txt": "x", "c": "y"}}),
        )
        .ok()
        .unwrap();
        assert_eq!(call.argv, ["/usr/bin/python3", "-c", "print(1)"]);
        assert_eq!(call.options.cwd, Some(PathBuf::from(CODE_DIR)));
        assert_eq!(call.options.tmpfs, [PathBuf::from(CODE_DIR)]);
        assert_eq!(call.options.dirs, [PathBuf::from("/work/a")]);
        let targets: Vec<&Path> = call.files.iter().map(|(_, t)| t.as_path()).collect();
        assert_eq!(targets, [Path::new("/work/a/b.txt"), Path::new("/work/c")]);
        for (arguments, says) in [
            (json!({"language": "ruby", "code": "p 1"}), "it has: python"),
            (json!({"language": "python"}), "code is missing"),
            (
                json!({"language": "python", "code": "1", "files": {"../x": ""}}),
                "relative",
            ),
            (
                json!({"language": "python", "code": "1", "files": {"/etc/x": ""}}),
                "relative",
            ),
            (
                json!({"language": "python", "code": "1", "files": {"x": "a".repeat(65 << 10)}}),
                "more than the 64 KiB",
            ),
            (
                json!({"language": "python", "code": "#".repeat(MAX_CODE_BYTES + 1)}),
                "at most 64 KiB",
            ),
        ] {
            let message = prepared("run_code", arguments).err().unwrap();
            assert!(message.contains(says), "{message}");
        }
    }
}
