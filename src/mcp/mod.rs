//! `hatchery mcp`: an MCP (Model Context Protocol) server on stdin/stdout, so that an AI
//! agent's host runs the model's code in hatchery sandboxes. Runs in its own process, a
//! client of a daemon or of an embedded zygote of its own (found as `run` finds one).
//!
//! The wire is newline-delimited JSON-RPC 2.0: one message per line on stdin, one answer
//! per line on stdout, nothing else there (logs go to stderr). The first request chooses
//! the era: `initialize` the handshake of revisions up to 2025-11-25, or a request whose
//! `params._meta` names `2026-07-28` (`server/discover`, no handshake, the version on
//! every request). A small loop of our own, not an MCP crate: see docs/mcp.md for why.
//! The main thread reads and answers at once; each `tools/call` runs on a thread of its
//! own, so that a `notifications/cancelled` read meanwhile can kill its sandbox.

mod output;
mod sessions;
mod tools;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Map, Value};

use hatchery::limits::{LimitFlags, NoPrefix};
use hatchery::protocol::Limit;
use hatchery::Client;

use crate::run::profile::{self, Options};
use crate::run::{socket, values, Failure};

/// The revisions of the `initialize` era this server speaks, newest first.
const HANDSHAKE_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The revision of the era without a handshake, named in each request's `_meta`.
const STATELESS_VERSION: &str = "2026-07-28";
/// The `_meta` key naming a request's revision.
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The longest line read: a call's code, stdin and files fit with room to spare; a longer
/// line is answered with an error and skipped, and the server goes on.
pub const MAX_LINE_BYTES: usize = 4 << 20;
/// How long, once stdin has closed, the calls still running get to end (their sandboxes
/// are killed at once; this bounds waiting for a daemon that does not answer).
const DRAIN: Duration = Duration::from_secs(10);

// JSON-RPC's error codes, and MCP's for an unsupported revision.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const UNSUPPORTED_VERSION: i64 = -32004;

/// The flags of `hatchery mcp`.
#[derive(Args)]
#[command(after_help = "\
Speaks MCP on stdin/stdout (newline-delimited JSON-RPC; logs on stderr). Tools: run_command, \
run_code, status, and the session tools (session_create, session_run, job_status, job_output, \
job_kill, file_write, file_read, file_list, session_destroy). Each run_command or run_code call \
runs in a fresh sandbox with these limits (a session is one sandbox with them, its lifetime \
--session-lifetime); a call may ask for less time \
or memory, never more; without --wall-time (here or in the profile) a call may run 30s. \
See docs/mcp.md for the configuration of MCP hosts. Exit codes: 0 \
when stdin closes; 125 bad flags or profile; 69 the socket named by --socket or \
HATCHERY_SOCKET (or found at the default path) cannot be used.")]
pub struct McpArgs {
    /// Take the sandbox's options from FILE, as `run --profile` does (TOML, or JSON if it
    /// ends in .json); flags override it.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitFlags<NoPrefix>,
    /// Run even if this host cannot enforce some of the limits.
    #[arg(long)]
    allow_unenforced_limits: bool,
    /// The daemon's socket [default: $HATCHERY_SOCKET, else as for `serve`]. A socket
    /// named here or by HATCHERY_SOCKET is used, or the server does not start (exit 69).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Run the sandboxes in an embedded zygote of this server's own, under no daemon's
    /// policy. Without it, one starts only when no socket is named and none is at the
    /// default path.
    #[arg(long, conflicts_with = "socket")]
    embedded: bool,
    /// Use DIR, read-only, as the sandboxes' root instead of the host's /usr, /bin,
    /// /lib*, /etc.
    #[arg(long, value_name = "DIR")]
    chroot: Option<PathBuf>,
    /// Bind SRC read-only at DST (default: the same path) in every sandbox.
    #[arg(long = "ro-bind", value_name = "SRC[:DST]")]
    ro_binds: Vec<String>,
    /// Set an environment variable in every sandbox (repeatable); a call's `env` adds to
    /// them.
    #[arg(long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// The sandboxes' network: `none` (only `lo`) or `veth` (see docs/networking.md)
    /// [default: none].
    #[arg(long, value_name = "KIND", value_parser = values::parse_net)]
    net: Option<values::Net>,
    /// The seccomp policy, by a name the daemon loaded [default: the daemon's first].
    #[arg(long, value_name = "NAME")]
    seccomp_policy: Option<String>,
    /// The most bytes of each of stdout and stderr a result keeps (its first and last
    /// halves), e.g. 64K.
    #[arg(long, value_name = "BYTES", default_value = "64K", value_parser = parse_output_bound)]
    max_output: u64,
    /// The most calls running at once; one more is answered with an error result.
    #[arg(long, value_name = "N", default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_calls: u32,
    /// The most sessions (persistent sandboxes) this server holds at once.
    #[arg(long, value_name = "N", default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=256))]
    max_sessions: u32,
    /// A session with no command for this long is destroyed, e.g. 10m.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_session_time)]
    session_idle: u64,
    /// A session older than this is destroyed, whatever runs in it, e.g. 1h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_session_time)]
    session_lifetime: u64,
}

fn parse_session_time(text: &str) -> Result<u64, String> {
    let ms = hatchery::limits::parse_duration_ms(text).map_err(|e| e.to_string())?;
    if !(1000..=7 * 24 * 3_600_000).contains(&ms) {
        return Err("expected a duration from 1s to 168h".into());
    }
    Ok(ms)
}

fn parse_output_bound(text: &str) -> Result<u64, String> {
    let bytes = hatchery::limits::parse_size(text).map_err(|e| e.to_string())?;
    if !(1024..=(16 << 20)).contains(&bytes) {
        return Err("expected a size from 1K to 16M".into());
    }
    Ok(bytes)
}

/// The wall-time limit of each call when neither the flags nor the profile set one (or
/// `unlimited`): an agent's host gives up on a tool call after 30 to 120 s.
const DEFAULT_WALL_TIME_MS: u64 = 30_000;

/// Serves MCP on stdin/stdout until stdin closes.
pub fn main(args: McpArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, message }) => {
            eprintln!("hatchery mcp: {message}");
            ExitCode::from(code)
        }
    }
}

fn options(args: &McpArgs) -> Result<Options, Failure> {
    let mut options = match &args.profile {
        Some(path) => profile::load(path)?,
        None => Options::default(),
    };
    options.set_limits(&args.limits.limits);
    if options.limits.wall_time_ms.is_none() && !options.limits.unlimited.contains(Limit::WallTime)
    {
        options.limits.wall_time_ms = Some(DEFAULT_WALL_TIME_MS);
    }
    options.allow_unenforced_limits |= args.allow_unenforced_limits;
    if args.chroot.is_some() {
        options.chroot.clone_from(&args.chroot);
    }
    options
        .binds
        .extend(args.ro_binds.iter().map(|b| (b.clone(), false)));
    // What a program expects to find, unless the profile or the flags say otherwise.
    for default in [
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/tmp",
        "LANG=C.UTF-8",
    ] {
        let key = &default[..default.find('=').unwrap_or(0) + 1];
        if !options.env.iter().any(|e| e.starts_with(key)) {
            options.env.push(default.into());
        }
    }
    for entry in &args.env {
        if entry.split_once('=').is_none_or(|(key, _)| key.is_empty()) {
            return Err(Failure::hatchery(format!(
                "--env {entry}: expected KEY=VALUE"
            )));
        }
        options.set_env(entry);
    }
    if let Some(net) = args.net {
        options.net = net;
    }
    if args.seccomp_policy.is_some() {
        options.seccomp_policy.clone_from(&args.seccomp_policy);
    }
    // The options' own mistakes (a bind's path, an env entry) are the operator's: said
    // now, not to the model at each call.
    crate::run::request::sandboxed(&options, &["/bin/true".into()])?;
    Ok(options)
}

fn serve(args: McpArgs) -> Result<(), Failure> {
    let options = options(&args)?;
    let root = options.chroot.clone().unwrap_or_else(|| PathBuf::from("/"));
    let settings = tools::Settings {
        languages: tools::find_languages(&root),
        options,
        max_output: args.max_output as usize,
    };
    let target = socket::choose(args.socket.as_deref(), args.embedded);
    // Before any thread starts: an embedded zygote is forked.
    let (client, embedded) = socket::connect(
        &target,
        settings.options.net == values::Net::Veth,
        false,
        None,
    )?;
    tracing::info!(
        languages = ?settings.languages.iter().map(|l| l.name).collect::<Vec<_>>(),
        "serving MCP on stdin/stdout"
    );
    let backend = match (&embedded, &target) {
        (None, socket::Target::Named { path, .. } | socket::Target::Default(path)) => {
            tools::Backend::Daemon(path.clone())
        }
        _ => tools::Backend::Embedded,
    };
    let bounds = sessions::Bounds {
        max: args.max_sessions as usize,
        idle_ms: args.session_idle,
        lifetime_ms: args.session_lifetime,
    };
    let mut definitions = tools::definitions(&settings);
    definitions.extend(sessions::definitions(&settings, &bounds));
    let server = Arc::new(Server {
        tools: definitions,
        sessions: sessions::Sessions::new(bounds),
        backend,
        settings,
        client,
        max_calls: args.max_calls as usize,
        out: Mutex::new(std::io::stdout()),
        calls: Mutex::new(HashMap::new()),
        ended: Condvar::new(),
        era: Mutex::new(Era::Unknown),
    });
    let mut input = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        match read_line(&mut input, &mut line) {
            Ok(Line::Eof) => break,
            Ok(Line::TooLong(bytes)) => server.send(&error(
                Value::Null,
                INVALID_REQUEST,
                &format!(
                    "the message is {bytes} bytes or more, longer than the {} MiB this server \
                     reads; it was skipped",
                    MAX_LINE_BYTES >> 20
                ),
                None,
            )),
            Ok(Line::Text) => server.handle(&line),
            Err(e) => {
                tracing::warn!(error = %e, "reading stdin");
                break;
            }
        }
    }
    server.end_calls();
    server.sessions.end_all();
    // A call's thread lets go of the server just after it has answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while Arc::strong_count(&server) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if Arc::strong_count(&server) > 1 {
        // A call is stuck (a daemon that does not answer): exiting closes the
        // connection, and an embedded zygote dies with this process, its sandboxes
        // with it.
        return Ok(());
    }
    drop(server);
    if let Some(zygote) = embedded {
        zygote.wait();
    }
    Ok(())
}

enum Line {
    Eof,
    /// A whole line is in the buffer, without its newline.
    Text,
    /// A line longer than [`MAX_LINE_BYTES`] was read past (this many bytes).
    TooLong(usize),
}

/// Reads one line into `line`, at most [`MAX_LINE_BYTES`] of it kept: a longer one is
/// read to its end and reported, so that the next line starts fresh.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<Line> {
    line.clear();
    let mut seen = 0usize;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match seen {
                0 => Line::Eof,
                n if n > MAX_LINE_BYTES => Line::TooLong(n),
                _ => Line::Text,
            });
        }
        let (part, used, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], end + 1, true),
            None => (available, available.len(), false),
        };
        seen += part.len();
        if seen <= MAX_LINE_BYTES {
            line.extend_from_slice(part);
        } else {
            line.clear();
        }
        input.consume(used);
        if ended {
            return Ok(if seen > MAX_LINE_BYTES {
                Line::TooLong(seen)
            } else {
                Line::Text
            });
        }
    }
}

/// Which protocol the connection speaks, chosen by its first request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    Unknown,
    /// `initialize` was answered.
    Handshake,
    /// 2026-07-28: each request names its revision in `_meta`.
    Stateless,
}

struct Server {
    settings: tools::Settings,
    /// What `tools/list` answers, made once.
    tools: Vec<Value>,
    /// Which zygote `client` speaks to, as `status` says it.
    backend: tools::Backend,
    /// The persistent sandboxes of this server.
    sessions: sessions::Sessions,
    client: Client,
    max_calls: usize,
    out: Mutex<std::io::Stdout>,
    /// The `tools/call`s running, by their request id (as JSON text).
    calls: Mutex<HashMap<String, Arc<tools::Job>>>,
    /// Signalled when a call ends.
    ended: Condvar,
    era: Mutex<Era>,
}

fn error(id: Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

impl Server {
    /// Writes one message as one line.
    fn send(&self, message: &Value) {
        let mut text = message.to_string();
        text.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // The client may be gone; what is left to do is the same.
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            tracing::debug!(error = %e, "writing to stdout");
        }
    }

    fn handle(self: &Arc<Self>, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let message: Value = match serde_json::from_slice(line) {
            Ok(message) => message,
            Err(e) => {
                return self.send(&error(
                    Value::Null,
                    PARSE_ERROR,
                    &format!("parse error: not JSON ({e})"),
                    None,
                ))
            }
        };
        let Value::Object(message) = message else {
            let what = if message.is_array() {
                "batches are not supported (MCP 2025-06-18 removed them): send one message per line"
            } else {
                "a message must be a JSON object"
            };
            return self.send(&error(Value::Null, INVALID_REQUEST, what, None));
        };
        let id = message.get("id").cloned();
        let valid_id = matches!(id, None | Some(Value::String(_) | Value::Number(_)));
        let reply_id = id.clone().filter(|_| valid_id).unwrap_or(Value::Null);
        if message.get("jsonrpc") != Some(&json!("2.0")) || !valid_id {
            return self.send(&error(
                reply_id,
                INVALID_REQUEST,
                "invalid request: expected \"jsonrpc\": \"2.0\" and an id that is a string or a number",
                None,
            ));
        }
        let Some(Value::String(method)) = message.get("method") else {
            if message.contains_key("result") || message.contains_key("error") {
                // A response: this server sends no requests, so none is awaited.
                return;
            }
            return self.send(&error(
                reply_id,
                INVALID_REQUEST,
                "invalid request: no method",
                None,
            ));
        };
        let params = match message.get("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(params)) => params.clone(),
            Some(_) => {
                if let Some(id) = id {
                    self.send(&error(id, INVALID_PARAMS, "params must be an object", None));
                }
                return;
            }
        };
        match id {
            None => self.notification(method, &params),
            Some(id) => {
                if let Some(answer) = self.request(id.clone(), method, &params) {
                    self.send(&answer);
                }
            }
        }
    }

    fn notification(&self, method: &str, params: &Map<String, Value>) {
        if method == "notifications/cancelled" {
            if let Some(id) = params.get("requestId") {
                let call = self.lock_calls().get(&id.to_string()).cloned();
                if let Some(call) = call {
                    tracing::info!(request = %id, "cancelled: killing its sandbox");
                    call.cancel();
                }
            }
        }
        // notifications/initialized and the others need nothing.
    }

    /// The answer to a request, or `None` when a thread of its own will send it.
    fn request(
        self: &Arc<Self>,
        id: Value,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Value> {
        let requested = params
            .get("_meta")
            .and_then(|meta| meta.get(META_VERSION))
            .cloned();
        let era = {
            let mut era = self.era.lock().unwrap_or_else(|p| p.into_inner());
            if *era == Era::Unknown {
                if method == "initialize" {
                    *era = Era::Handshake;
                } else if requested.is_some() || method == "server/discover" {
                    *era = Era::Stateless;
                }
            } else if *era == Era::Handshake && method == "initialize" {
                return Some(error(id, INVALID_REQUEST, "already initialized", None));
            }
            *era
        };
        let result = match era {
            Era::Unknown => {
                return Some(error(
                    id,
                    INVALID_REQUEST,
                    &format!(
                        "not initialized: send initialize first (revisions up to {}), or name \
                         the revision {STATELESS_VERSION} in params._meta[\"{META_VERSION}\"]",
                        HANDSHAKE_VERSIONS[0]
                    ),
                    None,
                ))
            }
            Era::Handshake => match method {
                "initialize" => self.initialize(params),
                "ping" => json!({}),
                "tools/list" => json!({"tools": self.tools}),
                "tools/call" => return self.call(id, params, false),
                _ => return Some(not_found(id, method)),
            },
            Era::Stateless => {
                if requested.as_ref() != Some(&json!(STATELESS_VERSION)) {
                    return Some(error(
                        id,
                        UNSUPPORTED_VERSION,
                        "Unsupported protocol version",
                        Some(json!({"supported": [STATELESS_VERSION], "requested": requested})),
                    ));
                }
                let mut result = match method {
                    "server/discover" => json!({
                        "supportedVersions": [STATELESS_VERSION],
                        "capabilities": {"tools": {}},
                        "serverInfo": server_info(),
                        "instructions": INSTRUCTIONS,
                    }),
                    "tools/list" => json!({"tools": self.tools}),
                    "tools/call" => return self.call(id, params, true),
                    _ => return Some(not_found(id, method)),
                };
                result["resultType"] = json!("complete");
                // Both are cacheable results: not to be cached (another server's tools,
                // with other flags, may differ), nor shared.
                result["ttlMs"] = json!(0);
                result["cacheScope"] = json!("private");
                result
            }
        };
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    fn initialize(&self, params: &Map<String, Value>) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let version = asked
            .filter(|v| HANDSHAKE_VERSIONS.contains(v))
            .unwrap_or(HANDSHAKE_VERSIONS[0]);
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": server_info(),
            "instructions": INSTRUCTIONS,
        })
    }

    /// Starts a `tools/call` on a thread of its own, which answers it.
    fn call(
        self: &Arc<Self>,
        id: Value,
        params: &Map<String, Value>,
        stateless: bool,
    ) -> Option<Value> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let listed = self.tools.iter().any(|tool| tool["name"] == name);
        if !listed {
            let names: Vec<Value> = self.tools.iter().map(|tool| tool["name"].clone()).collect();
            return Some(error(
                id,
                INVALID_PARAMS,
                &format!("unknown tool {name:?}"),
                Some(json!({"tools": names})),
            ));
        }
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(arguments)) => arguments.clone(),
            Some(_) => {
                return Some(error(
                    id,
                    INVALID_PARAMS,
                    "arguments must be an object",
                    None,
                ))
            }
        };
        let reply_id = id.clone();
        let answer = move |mut result: Value| {
            if stateless {
                result["resultType"] = json!("complete");
            }
            json!({"jsonrpc": "2.0", "id": reply_id.clone(), "result": result})
        };
        if name == "status" {
            if let Err(tools::Refusal(message)) = tools::check_status(&arguments) {
                return Some(answer(tools::error_result(&message)));
            }
            // On a thread of its own, as every call: a daemon slow to answer does not
            // hold up the reading of stdin.
            let server = self.clone();
            let answer_here = answer.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("status {id}"))
                .spawn(move || {
                    server.send(&answer(tools::status(&server.client, &server.backend)))
                });
            return match spawned {
                Ok(_) => None,
                Err(e) => Some(answer_here(tools::error_result(&format!(
                    "the server cannot start a thread for this call: {e}"
                )))),
            };
        }
        let session_tool = sessions::NAMES.contains(&name);
        let call = if session_tool {
            None
        } else {
            match tools::prepare(&self.settings, name, &arguments) {
                Ok(call) => Some(call),
                Err(tools::Refusal(message)) => return Some(answer(tools::error_result(&message))),
            }
        };
        let name = name.to_string();
        let key = id.to_string();
        let job = Arc::new(tools::Job::default());
        {
            let mut calls = self.lock_calls();
            if calls.len() >= self.max_calls {
                return Some(answer(tools::error_result(&format!(
                    "busy: {} calls are running, the most this server runs at once; retry when \
                     one has ended",
                    calls.len()
                ))));
            }
            if calls.contains_key(&key) {
                return Some(error(
                    id,
                    INVALID_REQUEST,
                    "a request with this id is running",
                    None,
                ));
            }
            calls.insert(key.clone(), job.clone());
        }
        let server = self.clone();
        let answer_here = answer.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("call {key}"))
            .spawn(move || {
                let result = match call {
                    Some(call) => tools::run(&server.client, &server.settings, call, &job),
                    None => server.sessions.call(
                        &server.client,
                        &server.settings,
                        &name,
                        &arguments,
                        &job,
                    ),
                };
                let mut calls = server.lock_calls();
                calls.remove(&key);
                server.ended.notify_all();
                drop(calls);
                // A cancelled request is not answered (MCP's cancellation rule).
                if !job.cancelled() {
                    server.send(&answer(result));
                }
            });
        match spawned {
            Ok(_) => None,
            Err(e) => {
                self.lock_calls().remove(&id.to_string());
                Some(answer_here(tools::error_result(&format!(
                    "the server cannot start a thread for this call: {e}"
                ))))
            }
        }
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tools::Job>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills the sandboxes of the calls still running and waits (at most [`DRAIN`]) for
    /// their threads to end.
    fn end_calls(&self) {
        let deadline = std::time::Instant::now() + DRAIN;
        let mut calls = self.lock_calls();
        for job in calls.values() {
            job.cancel();
        }
        while !calls.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                tracing::warn!(calls = calls.len(), "calls still running at exit");
                break;
            }
            calls = self
                .ended
                .wait_timeout(calls, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn not_found(id: Value, method: &str) -> Value {
    error(
        id,
        METHOD_NOT_FOUND,
        &format!("method not found: {method}"),
        None,
    )
}

fn server_info() -> Value {
    json!({"name": "hatchery", "title": "hatchery sandboxes", "version": env!("CARGO_PKG_VERSION")})
}

const INSTRUCTIONS: &str = "Runs commands and code in fresh Linux sandboxes: each call gets \
its own namespaces, a read-only system, a private /tmp and no network unless the server allows \
it; nothing persists between run_command or run_code calls, while a session (session_create) \
keeps its files and processes until session_destroy. Results give stdout and stderr separately, the exit code, \
and why the sandbox ended (a timeout or the memory limit is an error result).";

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut input = std::io::BufReader::with_capacity(7, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line(&mut input, &mut line).unwrap() {
                Line::Eof => return seen,
                Line::Text => seen.push(String::from_utf8(line.clone()).unwrap()),
                Line::TooLong(n) => seen.push(format!("too long: {n}")),
            }
        }
    }

    #[test]
    fn a_huge_line_is_skipped_and_the_next_is_read() {
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
        input.extend(b"\n{\"b\":2}\nlast");
        assert_eq!(
            lines(&input),
            [
                "{\"a\":1}".to_string(),
                format!("too long: {}", MAX_LINE_BYTES + 1),
                "{\"b\":2}".to_string(),
                "last".to_string()
            ]
        );
    }
}
