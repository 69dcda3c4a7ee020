//! Bad input and hostile clients: each gets a clear error or a closed connection, the
//! daemon keeps serving the next client, and nothing leaks.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{probe_request, run, Daemon};
use hatchery::protocol::{self, ErrorKind, Event, Request, SandboxConfig, PROTOCOL_VERSION};
use hatchery::{ExitStatus, SpawnError, SpawnRequest};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

/// A raw connection, for sending what the client library never would.
fn raw_connect(daemon: &Daemon) -> OwnedFd {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &UnixAddr::new(&daemon.socket).unwrap(),
    )
    .unwrap();
    let timeout = nix::sys::time::TimeVal::new(10, 0);
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &timeout).unwrap();
    fd
}

fn send_raw(fd: &OwnedFd, bytes: &[u8]) {
    socket::send(
        std::os::fd::AsRawFd::as_raw_fd(fd),
        bytes,
        socket::MsgFlags::empty(),
    )
    .expect("send");
}

/// The next event, or `None` once the daemon has closed the connection.
fn next_event(fd: &OwnedFd) -> Option<Event> {
    let mut buf = protocol::RecvBuffer::new();
    protocol::recv::<Event>(fd.as_fd(), &mut buf, false)
        .expect("receive")
        .map(|(event, _)| event)
}

fn hello(fd: &OwnedFd) {
    let bytes = protocol::encode(&Request::Hello {
        version: PROTOCOL_VERSION,
        client: "test".into(),
    })
    .unwrap();
    send_raw(fd, &bytes);
    assert!(matches!(next_event(fd), Some(Event::Welcome { .. })));
}

/// Runs `hatchery run --socket <daemon> -- command` as another uid and gid; returns
/// (exit code, stdout, stderr).
fn run_as(daemon: &Daemon, uid: u32, gid: u32, command: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(common::hatchery_for_others())
        .args(["run", "--socket"])
        .arg(&daemon.socket)
        .arg("--")
        .args(command)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run hatchery as another user");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The daemon still serves a well-behaved client.
fn still_serves(daemon: &Daemon) {
    let out = run(
        &daemon.client(),
        SpawnRequest::new("/bin/echo").arg("still here"),
    );
    assert_eq!(out.stdout, "still here\n");
}

fn expect_protocol_error_then_close(fd: &OwnedFd) {
    match next_event(fd) {
        Some(Event::Error {
            id: None,
            kind: ErrorKind::Protocol,
            message,
        }) => assert!(!message.is_empty()),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(next_event(fd), None, "the daemon closes the connection");
}

#[test]
fn garbage_bytes_get_a_protocol_error() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    send_raw(&fd, &[0xFF; 64]);
    expect_protocol_error_then_close(&fd);
    still_serves(&daemon);
}

#[test]
fn garbage_after_the_handshake_gets_a_protocol_error() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    send_raw(&fd, b"\x01\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff");
    expect_protocol_error_then_close(&fd);
    still_serves(&daemon);
}

#[test]
fn truncated_message_gets_a_protocol_error() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    let bytes = protocol::encode(&Request::Spawn {
        id: 1,
        request: Box::new(SpawnRequest::new("/bin/true")),
    })
    .unwrap();
    send_raw(&fd, &bytes[..bytes.len() - 3]);
    expect_protocol_error_then_close(&fd);
    still_serves(&daemon);
}

#[test]
fn oversized_message_gets_a_protocol_error() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    socket::setsockopt(&fd, socket::sockopt::SndBuf, &(1 << 20)).unwrap();
    hello(&fd);
    send_raw(&fd, &vec![0u8; protocol::MAX_MESSAGE_LEN + 4096]);
    expect_protocol_error_then_close(&fd);
    still_serves(&daemon);
}

#[test]
fn unknown_protocol_version_is_refused_by_name() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    send_raw(
        &fd,
        &protocol::encode(&Request::Hello {
            version: 999,
            client: "future".into(),
        })
        .unwrap(),
    );
    match next_event(&fd) {
        Some(Event::Error {
            kind: ErrorKind::VersionMismatch { supported },
            message,
            ..
        }) => {
            assert_eq!(supported, PROTOCOL_VERSION);
            assert!(message.contains("999"), "{message}");
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    assert_eq!(next_event(&fd), None);
    still_serves(&daemon);
}

#[test]
fn a_request_before_hello_is_refused() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    send_raw(
        &fd,
        &protocol::encode(&Request::Signal { id: 1, signal: 9 }).unwrap(),
    );
    expect_protocol_error_then_close(&fd);
    still_serves(&daemon);
}

#[test]
fn a_missing_program_is_not_found() {
    require_sandbox!();
    let daemon = Daemon::start();
    match daemon
        .client()
        .spawn_child(SpawnRequest::new("/no/such/program"))
    {
        Err(SpawnError::NotFound { message }) => {
            assert!(message.contains("not found"), "{message}")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    match daemon
        .client()
        .spawn_child(SpawnRequest::new("no-such-program-in-path"))
    {
        Err(SpawnError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    still_serves(&daemon);
}

#[test]
fn a_non_executable_program_cannot_execute() {
    require_sandbox!();
    let daemon = Daemon::start();
    let dir = common::open_tempdir();
    let (path, bind) = common::non_executable_file(&dir);
    let (source, target) = bind.split_once(':').unwrap();
    let sandbox = SandboxConfig {
        binds: vec![hatchery::Bind::read_only(source, target)],
        ..SandboxConfig::default()
    };
    match daemon
        .client()
        .spawn_child(SpawnRequest::new(path).sandbox(sandbox))
    {
        Err(SpawnError::CannotExecute { errno, .. }) => {
            assert_eq!(errno, nix::errno::Errno::EACCES)
        }
        other => panic!("expected CannotExecute, got {other:?}"),
    }
    still_serves(&daemon);
}

#[test]
fn a_nonexistent_chroot_dir_is_a_setup_error() {
    require_sandbox!();
    let daemon = Daemon::start();
    let sandbox = SandboxConfig {
        chroot_dir: Some("/no/such/root".into()),
        ..SandboxConfig::default()
    };
    match daemon
        .client()
        .spawn_child(SpawnRequest::new("/bin/true").sandbox(sandbox))
    {
        Err(SpawnError::Setup {
            step,
            errno,
            source,
            hint,
        }) => {
            assert_eq!(
                hint, None,
                "a missing root is the request's fault, not a trap"
            );
            assert_eq!(step, hatchery::protocol::SetupStep::RootDirectories);
            assert_eq!(errno, Some(nix::errno::Errno::ENOENT));
            let path = source.sys_error().and_then(|error| error.path.as_deref());
            assert_eq!(path, Some("/no/such/root"));
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    still_serves(&daemon);
}

#[test]
fn an_invalid_request_is_refused_before_anything_runs() {
    require_sandbox!();
    let daemon = Daemon::start();
    let sandbox = SandboxConfig {
        uid: 0,
        ..SandboxConfig::default()
    };
    match daemon
        .client()
        .spawn_child(SpawnRequest::new("/bin/true").sandbox(sandbox))
    {
        Err(SpawnError::InvalidRequest(message)) => assert!(message.contains("uid"), "{message}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert!(daemon.children().is_empty());
}

#[test]
fn a_client_that_disconnects_mid_spawn_leaves_nothing_behind() {
    require_sandbox!();
    let daemon = Daemon::start();
    daemon.build_probe_template();
    let fds_before = daemon.steady_fd_count();
    for _ in 0..20 {
        let fd = raw_connect(&daemon);
        hello(&fd);
        let spawn = Request::Spawn {
            id: 1,
            request: Box::new(probe_request(&["sleep", "30"])),
        };
        send_raw(&fd, &protocol::encode(&spawn).unwrap());
        drop(fd);
    }
    let left = daemon.wait_childless(Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "sandboxes of gone clients survive: {left:?}"
    );
    still_serves(&daemon);
    assert_eq!(
        daemon.settled_fd_count(fds_before),
        fds_before,
        "the daemon leaks fds"
    );
}

#[test]
fn a_client_that_disconnects_while_its_child_runs_kills_it() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let child = client
        .spawn_child(probe_request(&["sleep", "30"]))
        .expect("spawn");
    assert_eq!(daemon.children().len(), 1);
    drop(child);
    drop(client);
    let left = daemon.wait_childless(Duration::from_secs(10));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_client_from_a_disallowed_uid_is_refused() {
    require_sandbox!();
    let daemon = Daemon::start();
    // Let the socket file itself admit anyone: the peer-credential check must still hold.
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, stderr) = run_as(&daemon, 65534, 65534, &["/bin/true"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("uid 65534 is not allowed"), "{stderr}");
    still_serves(&daemon);
}

#[test]
fn a_group_member_is_allowed_with_group() {
    require_sandbox!();
    let daemon = Daemon::start_with(&["--group", "4242"]);
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    // The group member needs to reach the socket's directory.
    let (code, stdout, stderr) = run_as(&daemon, 65534, 4242, &["/bin/echo", "member"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "member\n");
}

#[test]
fn the_socket_is_private_by_default() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_second_daemon_does_not_steal_a_live_socket() {
    require_sandbox!();
    let daemon = Daemon::start();
    let out = std::process::Command::new(common::HATCHERY)
        .args(["serve", "--socket"])
        .arg(&daemon.socket)
        .output()
        .expect("start a second daemon");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another daemon"),
        "{out:?}"
    );
    still_serves(&daemon);
}

#[test]
fn signal_for_an_unknown_id_is_an_error_for_that_id() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    send_raw(
        &fd,
        &protocol::encode(&Request::Signal { id: 77, signal: 15 }).unwrap(),
    );
    assert!(matches!(
        next_event(&fd),
        Some(Event::Error {
            id: Some(77),
            kind: ErrorKind::UnknownId,
            ..
        })
    ));
    still_serves(&daemon);
}

#[test]
fn sigterm_stops_the_daemon_kills_its_sandboxes_and_removes_the_socket() {
    require_sandbox!();
    let daemon = Daemon::start();
    let client = daemon.client();
    let mut child = client
        .spawn_child(probe_request(&["sleep", "30"]))
        .expect("spawn");
    let socket = daemon.socket.clone();
    let sandbox = child.pid;
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the socket file is removed");
    assert!(
        !std::path::Path::new(&format!("/proc/{sandbox}")).exists(),
        "the sandbox is gone"
    );
    assert_eq!(
        child.wait().unwrap().status,
        ExitStatus::Signaled(libc::SIGKILL)
    );
}

/// 1,000 spawns, good and bad mixed: afterwards the daemon holds the same fds as before
/// and has no child, zombie or otherwise.
#[test]
fn a_thousand_spawns_leak_no_fd_and_no_zombie() {
    require_sandbox!();
    let daemon = Daemon::start();
    daemon.build_probe_template();
    // Counted after our client's handshake (so the daemon holds its connection), once
    // the start-up probe's connection is gone.
    let client = daemon.client();
    let fds_before = daemon.steady_fd_count();
    for i in 0..1000 {
        match i % 10 {
            0 => assert!(client
                .spawn_child(SpawnRequest::new("/no/such/program"))
                .is_err()),
            1 => {
                let child = client
                    .spawn_child(probe_request(&["sleep", "10"]))
                    .expect("spawn");
                child.kill().unwrap();
                drop(child);
            }
            _ => {
                let mut child = client
                    .spawn_child(SpawnRequest::new("/bin/true"))
                    .expect("spawn");
                assert!(child.wait().unwrap().status.success());
            }
        }
    }
    let left = daemon.wait_childless(Duration::from_secs(10));
    assert!(left.is_empty(), "children left: {left:?}");
    still_serves(&daemon);
    assert_eq!(
        daemon.settled_fd_count(fds_before),
        fds_before,
        "fds before and after 1,000 spawns"
    );
}

#[test]
fn too_many_fds_get_a_protocol_error_and_are_closed() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    let fds_before = daemon.steady_fd_count();
    let null = std::fs::File::open("/dev/null").unwrap();
    let many: Vec<OwnedFd> = (0..40)
        .map(|_| null.as_fd().try_clone_to_owned().unwrap())
        .collect();
    let borrowed: Vec<_> = many.iter().map(|f| f.as_fd()).collect();
    let bytes = protocol::encode(&Request::Signal { id: 1, signal: 15 }).unwrap();
    hatchery::internals::sys::send_with_fds(fd.as_fd(), &bytes, &borrowed).expect("send 40 fds");
    expect_protocol_error_then_close(&fd);
    assert!(
        daemon.settled_fd_count(fds_before) <= fds_before,
        "the passed fds were not closed"
    );
    still_serves(&daemon);
}

#[test]
fn an_error_quoting_a_huge_request_still_arrives() {
    require_sandbox!();
    let daemon = Daemon::start();
    // A relative cwd of ~120 KiB: the InvalidRequest error quotes it.
    let cwd = "x".repeat(120 * 1024);
    match daemon
        .client()
        .spawn_child(SpawnRequest::new("/bin/true").cwd(&cwd))
    {
        Err(SpawnError::InvalidRequest(message)) => {
            assert!(message.len() < 2048, "{}", message.len())
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[test]
fn a_failed_spawns_id_is_free_again_at_once() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    let missing = Request::Spawn {
        id: 7,
        request: Box::new(SpawnRequest::new("/no/such/program")),
    };
    send_raw(&fd, &protocol::encode(&missing).unwrap());
    assert!(matches!(
        next_event(&fd),
        Some(Event::Error {
            id: Some(7),
            kind: ErrorKind::NotFound,
            ..
        })
    ));
    let again = Request::Spawn {
        id: 7,
        request: Box::new(
            SpawnRequest::new("/bin/true")
                .stdin(hatchery::Stdio::Null)
                .stdout(hatchery::Stdio::Null)
                .stderr(hatchery::Stdio::Null),
        ),
    };
    send_raw(&fd, &protocol::encode(&again).unwrap());
    assert!(matches!(
        next_event(&fd),
        Some(Event::Spawned { id: 7, .. })
    ));
    assert!(matches!(next_event(&fd), Some(Event::Exited { id: 7, .. })));
}

#[test]
fn an_allowed_uid_reaches_the_daemon() {
    require_sandbox!();
    let daemon = Daemon::start_with(&["--allow-uid", "65534"]);
    let (code, stdout, stderr) = run_as(&daemon, 65534, 65534, &["/bin/echo", "allowed"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "allowed\n");
}

#[test]
fn clients_are_told_when_the_daemon_shuts_down() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    assert!(daemon.stop().success());
    match next_event(&fd) {
        Some(Event::Error {
            id: None,
            kind: ErrorKind::ShuttingDown,
            ..
        }) => {}
        other => panic!("expected a shutdown notice, got {other:?}"),
    }
}

/// A client's fd becomes a workload's stream only if it is a pipe, a socket, a regular
/// file or a character device: a directory (which `openat` would walk out of the
/// sandbox's root from) and an `O_PATH` handle are refused before anything is made, with
/// the stream named, and the daemon serves on.
#[test]
fn a_directory_or_an_o_path_fd_is_refused_as_a_stream() {
    require_sandbox!();
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let daemon = Daemon::start();
    let client = daemon.client();
    let before = daemon.steady_fd_count();
    for (path, flags, what) in [
        ("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY, "a directory"),
        ("/etc", OFlag::O_PATH, "an O_PATH handle"),
        ("/dev/null", OFlag::O_PATH, "an O_PATH handle"),
    ] {
        let fd = open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).expect("open");
        let request = SpawnRequest::new("/bin/true").stdout(hatchery::Stdio::fd(fd));
        match client.spawn_child(request) {
            Err(SpawnError::InvalidRequest(message)) => assert!(
                message.contains(&format!("the fd passed as stdout is {what}")),
                "{path}: {message}"
            ),
            Ok(_) => panic!("{path} opened with {flags:?} was accepted as stdout"),
            Err(other) => panic!("{path}: {other}"),
        }
    }
    // Nothing was kept of the refused fds, and the daemon still spawns.
    assert_eq!(daemon.settled_fd_count(before), before);
    still_serves(&daemon);
}

/// Sends `request` as `Spawn { id }` on a raw, greeted connection.
fn send_spawn(fd: &OwnedFd, id: u64, request: SpawnRequest) {
    let bytes = protocol::encode(&Request::Spawn {
        id,
        request: Box::new(request),
    })
    .expect("the request fits a message");
    send_raw(fd, &bytes);
}

/// A request whose setup fails on a path of ~120 KB (the most a request can hold) gets
/// its error, with the path shortened in the middle: the answer, which echoes the path,
/// would otherwise be larger than any message may be, and the request went unanswered.
#[test]
fn an_error_that_echoes_a_huge_path_is_answered_shortened() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    let cwd = format!("/no-such-dir/{}/end", "d".repeat(120_000));
    send_spawn(&fd, 7, SpawnRequest::new("/bin/true").cwd(&cwd));
    match next_event(&fd) {
        Some(Event::Error {
            id: Some(7),
            kind,
            message,
        }) => {
            let echoed = match &kind {
                ErrorKind::Setup { error, .. } => error.sys_error().and_then(|e| e.path.clone()),
                _ => None,
            };
            let echoed = echoed.unwrap_or_else(|| panic!("no path echoed: {kind:?}"));
            assert!(echoed.len() < 1024, "an echo of {} bytes", echoed.len());
            assert!(
                echoed.starts_with("/no-such-dir/ddd") && echoed.ends_with("ddd/end"),
                "{echoed}"
            );
            assert!(echoed.contains('…'), "{echoed}");
            assert!(
                message.len() <= 1027,
                "a message of {} bytes",
                message.len()
            );
        }
        other => panic!("expected the spawn's error, got {other:?}"),
    }
    still_serves(&daemon);
}

/// A small generator of requests (xorshift, seeded: a failure names its seed and can be
/// replayed): programs that exist or not, cwds short and huge, environments, binds,
/// hostnames, limits, passed fds or not.
struct Requests(u64);

impl Requests {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn text(&mut self, max: usize) -> String {
        let len = (self.next() % (max as u64 + 1)) as usize;
        (0..len)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }

    fn request(&mut self) -> SpawnRequest {
        let program = self.pick(&[
            "/bin/true",
            "/bin/false",
            "/nonexistent",
            "/etc/passwd",
            "true",
        ]);
        let mut request = SpawnRequest::new(program);
        request = match self.next() % 4 {
            // The most a message holds: an error that echoes it whole would not fit one.
            0 => request.cwd(format!(
                "/{}",
                "c".repeat(128_000 + (self.next() % 2_800) as usize)
            )),
            1 => request.cwd("/tmp"),
            2 => request.cwd(format!("/{}", self.text(16))),
            _ => request,
        };
        for _ in 0..self.next() % 4 {
            let (name, value) = (self.text(8), self.text(2_000));
            request = request.env(format!("V{name}"), value);
        }
        if self.next() % 3 == 0 {
            let source = self.pick(&["/usr", "/nonexistent", "/etc/hostname", "/proc/self"]);
            let target = format!("/{}", self.text(40));
            request
                .sandbox
                .binds
                .push(hatchery::Bind::read_only(source, target));
        }
        if self.next() % 4 == 0 {
            request.sandbox.hostname = self.text(80);
        }
        if self.next() % 4 == 0 {
            request.sandbox.limits.wall_time_ms = Some(self.next() % 5_000 + 1);
        }
        request
    }
}

/// Whatever a request holds (among those that fit a message), the daemon answers each
/// with exactly one `Spawned` or `Error`, promptly: a sandbox then runs to its `Exited`.
#[test]
fn every_request_gets_exactly_one_answer() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    hello(&fd);
    let seed = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(std::process::id());
    let mut requests = Requests(seed);
    let mut sent = Vec::new();
    for id in 1..=60u64 {
        let request = requests.request();
        if protocol::encode(&Request::Spawn {
            id,
            request: Box::new(request.clone()),
        })
        .is_err()
        {
            continue; // Larger than a message: the client library refuses to send it.
        }
        send_spawn(&fd, id, request);
        sent.push(id);
    }
    // Each id: one answer (Spawned or Error), and an Exited after a Spawned.
    let mut answers: std::collections::HashMap<u64, Vec<&'static str>> = Default::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let settled = |answers: &std::collections::HashMap<u64, Vec<&'static str>>| {
        sent.iter().all(|id| {
            matches!(
                answers.get(id).map(Vec::as_slice),
                Some(["Error"]) | Some(["Spawned", "Exited"])
            )
        })
    };
    while !settled(&answers) {
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed:#x}: not every request was answered: {answers:?}"
        );
        let (id, what) = match next_event(&fd) {
            Some(Event::Spawned { id, .. }) => (id, "Spawned"),
            Some(Event::Exited { id, .. }) => (id, "Exited"),
            Some(Event::Error { id: Some(id), .. }) => (id, "Error"),
            other => panic!("seed {seed:#x}: unexpected {other:?}"),
        };
        answers.entry(id).or_default().push(what);
        let seen = &answers[&id];
        assert!(
            matches!(
                seen.as_slice(),
                ["Error"] | ["Spawned"] | ["Spawned", "Exited"]
            ),
            "seed {seed:#x}: id {id} got {seen:?}"
        );
    }
    still_serves(&daemon);
}

/// A connection that never says `Hello` is closed after the handshake deadline (2 s),
/// told why: an idle peer cannot hold one of the daemon's fds for long.
#[test]
fn a_connection_without_hello_is_closed_after_the_handshake_deadline() {
    require_sandbox!();
    let daemon = Daemon::start();
    let fd = raw_connect(&daemon);
    let opened = std::time::Instant::now();
    match next_event(&fd) {
        Some(Event::Error {
            id: None,
            kind: ErrorKind::Protocol,
            message,
        }) => assert!(message.contains("no Hello within 2 s"), "{message}"),
        other => panic!("expected the handshake deadline's error, got {other:?}"),
    }
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert!(next_event(&fd).is_none(), "the connection stays open");
    still_serves(&daemon);
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Starts a flood as uid 65534: `count` connections to `daemon`, opened as fast as the
/// daemon takes them, then held, unused, for `seconds`; returns once they are all open.
fn flood(daemon: &Daemon, count: u32, seconds: u32) -> std::process::Child {
    let script = r#"
import socket, sys, time
path, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
held, deadline = [], time.time() + 10
while len(held) < count and time.time() < deadline:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(path)
        held.append(s)
    except OSError:
        time.sleep(0.001)
print(len(held), flush=True)
time.sleep(seconds)
"#;
    let mut flooder = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&daemon.socket)
        .args([count.to_string(), seconds.to_string()])
        .uid(65534)
        .gid(65534)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the flood as uid 65534");
    let mut out = std::io::BufReader::new(flooder.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let opened: u32 = line.trim().parse().expect("the flood's count");
    assert_eq!(opened, count, "the flood opened only {opened} connections");
    flooder
}

/// A uid that floods the daemon with connections it never uses (as another user, past
/// the daemon's fd limit: the daemon runs with 256 fds, the flood holds 1,100) cannot
/// stall it: the flood's connections past its share (32 of the 128 the daemon keeps) are
/// answered `Busy` and closed at once, the daemon idles meanwhile, and an admitted user
/// gets its `Welcome` within 50 ms.
#[test]
fn a_connection_flood_from_another_uid_cannot_stall_an_admitted_client() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start_with_open_files(256, &["--allow-uid", "4242"]);
    let mut flooder = flood(&daemon, 1100, 3);
    let cpu_before = cpu_time(daemon.pid());
    let mut handshakes = Vec::new();
    for _ in 0..7 {
        let began = std::time::Instant::now();
        let client = hatchery::Client::connect(&daemon.socket).expect("an admitted client");
        handshakes.push(began.elapsed());
        drop(client);
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_time(daemon.pid()) - cpu_before;
    handshakes.sort();
    assert!(
        handshakes[3] < Duration::from_millis(50) && handshakes[6] < Duration::from_millis(250),
        "handshakes during the flood: {handshakes:?}"
    );
    // About 0.8 s went by with 1,100 connections held: a daemon spinning on them would
    // have used most of it.
    assert!(
        cpu < Duration::from_millis(200),
        "the daemon used {cpu:?} of CPU"
    );
    assert!(
        daemon.fd_count() < 200,
        "the daemon holds {} fds",
        daemon.fd_count()
    );
    assert!(flooder.wait().unwrap().success());
    still_serves(&daemon);
}

/// Past its fds (bounds set above them on purpose), the daemon sheds the connections it
/// cannot take with the fd it keeps in reserve and pauses: it does not spin on a full
/// listen queue, and serves again once the flood is gone.
#[test]
fn a_daemon_out_of_fds_sheds_connections_without_spinning() {
    require_sandbox!();
    if !common::python_runs() {
        return;
    }
    let daemon = Daemon::start_with_open_files(
        64,
        &[
            "--allow-uid",
            "4242",
            "--max-connections",
            "10000",
            "--max-connections-per-uid",
            "10000",
        ],
    );
    let mut flooder = flood(&daemon, 300, 2);
    let cpu_before = cpu_time(daemon.pid());
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(daemon.pid()) - cpu_before;
    assert!(
        cpu < Duration::from_millis(200),
        "the daemon used {cpu:?} of CPU in 1 s"
    );
    assert!(flooder.wait().unwrap().success());
    // The flood's connections are gone with it: the daemon serves again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hatchery::Client::connect(&daemon.socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never served again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    still_serves(&daemon);
}
