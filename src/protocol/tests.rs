//! Golden bytes pin the wire encoding: a change here breaks every deployed client, so it
//! must come with a new PROTOCOL_VERSION. The expected bytes are derived by hand from
//! postcard's rules (varint lengths and integers, zigzag for signed, a varint variant
//! index for enums, one byte for an Option's tag).

use super::*;

fn round_trip<T>(message: &T, golden: &[u8])
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode(message).expect("encodes");
    assert_eq!(bytes, golden, "encoding of {message:?}");
    let back: T = decode(golden).expect("decodes");
    assert_eq!(&back, message);
}

// The pinned messages, each shown byte by byte in docs/protocol.md §6.

/// §6.1.
fn golden_hello() -> Request {
    Request::Hello {
        version: 1,
        client: "t".into(),
    }
}

/// §6.2.
fn golden_signal() -> Request {
    Request::Signal {
        id: 300,
        signal: 15,
    }
}

/// §6.3.
fn golden_spawn() -> Request {
    Request::Spawn {
        id: 1,
        request: Box::new(SpawnRequest::new("/bin/true")),
    }
}

/// §6.4.
fn golden_spawned() -> Event {
    Event::Spawned {
        id: 2,
        pid: 77,
        fds: vec![FdRole::Stdout, FdRole::Pidfd],
        network: None,
    }
}

/// §6.5.
fn golden_exited() -> Event {
    Event::Exited {
        id: 7,
        verdict: Verdict {
            status: ExitStatus::Signaled(9),
            reason: EndReason::DaemonShutdown,
            wall_time_us: 1500,
            user_cpu_us: 0,
            system_cpu_us: 0,
            max_rss_kib: 2048,
            memory_peak_bytes: Some(4096),
            tasks_started: Some(3),
            limits: Limits {
                wall_time_ms: Some(1000),
                unlimited: [Limit::Pids].into_iter().collect(),
                ..Limits::default()
            },
            skipped_limits: vec![Limit::Memory],
            limits_reached: [Limit::TmpSize].into_iter().collect(),
        },
    }
}

/// §6.6.
fn golden_version_mismatch() -> Event {
    Event::Error {
        id: None,
        kind: ErrorKind::VersionMismatch { supported: 1 },
        message: "v".into(),
    }
}

/// §6.7.
fn golden_setup_error() -> Event {
    Event::Error {
        id: Some(5),
        kind: ErrorKind::Setup {
            step: SetupStep::RootDirectories,
            error: SetupFailure::Sys(SysError {
                op: "m".into(),
                path: None,
                errno: 2,
            }),
        },
        message: String::new(),
    }
}

/// §6.8.
fn golden_status_request() -> Request {
    Request::Status { id: 3 }
}

/// §6.9.
fn golden_status() -> Event {
    Event::Status {
        id: 3,
        status: Box::new(DaemonStatus {
            version: "v".into(),
            pid: 9,
            uptime_ms: 1000,
            all_owners: true,
            sandboxes: vec![SandboxStatus {
                sandbox: 1,
                id: 2,
                pid: 77,
                owner_uid: Some(1000),
                program: "p".into(),
                age_ms: 5,
                memory_bytes: None,
                phase: "r".into(),
                client_connected: true,
            }],
            sandboxes_omitted: 0,
            live: 1,
            max_children: 4,
            warm_pool: PoolStatus {
                size_per_shape: 1,
                shapes: 1,
                idle: 0,
                hits: 2,
                misses: 1,
            },
            veth: VethStatus::default(),
            served: vec![Count {
                name: "w".into(),
                count: 2,
            }],
            failed: vec![],
            ended: vec![],
        }),
    }
}

#[test]
fn status_is_pinned() {
    round_trip(&golden_status_request(), &[0x03, 0x03]);
    #[rustfmt::skip]
    let golden = [
        0x04, 0x03, // Event::Status, id 3
        0x01, b'v', 0x09, 0xE8, 0x07, 0x01, // version, pid, uptime_ms, all_owners
        0x01, // one sandbox:
        0x01, 0x02, 0x9A, 0x01, 0x01, 0xE8, 0x07, 0x01, b'p', 0x05, 0x00, 0x01, b'r', 0x01,
        0x00, 0x01, 0x04, // sandboxes_omitted, live, max_children
        0x01, 0x01, 0x00, 0x02, 0x01, // warm_pool
        0x00, 0x00, 0x00, 0x00, // veth
        0x01, 0x01, b'w', 0x02, // served
        0x00, 0x00, // failed, ended
    ];
    round_trip(&golden_status(), &golden);
}

#[test]
fn hello_is_pinned() {
    round_trip(&golden_hello(), &[0x00, 0x01, 0x01, b't']);
}

#[test]
fn signal_is_pinned() {
    // id 300 = varint AC 02; signal 15 zigzags to 30 = 0x1E.
    round_trip(&golden_signal(), &[0x02, 0xAC, 0x02, 0x1E]);
}

#[test]
fn spawn_is_pinned() {
    let spawn = golden_spawn();
    let mut golden = vec![0x01, 0x01]; // Spawn, id 1
    golden.push(0x00); // Command::Exec
    golden.push(9);
    golden.extend_from_slice(b"/bin/true"); // program
    golden.extend_from_slice(&[1, 9]);
    golden.extend_from_slice(b"/bin/true"); // argv = [program]
    golden.push(0); // env: empty
    golden.extend_from_slice(&[1, b'/']); // cwd
    golden.extend_from_slice(&[0, 0, 0]); // stdin, stdout, stderr: Pipe
    golden.push(0); // chroot_dir: None
    golden.push(0); // binds: empty
    golden.push(8);
    golden.extend_from_slice(b"hatchery"); // hostname
    golden.push(0); // network: None
    golden.extend_from_slice(&[0xE8, 0x07, 0xE8, 0x07]); // uid, gid 1000
    golden.push(0); // opt_out: empty
    golden.extend_from_slice(&[0; 9]); // limits: nine None
    golden.push(0); // limits.unlimited: empty
    golden.push(0); // allow_unenforced_limits: false
    golden.push(1); // kill_on_disconnect: true
    golden.push(0); // mounts: empty
    golden.push(0); // seccomp_policy: None
    round_trip(&spawn, &golden);
}

/// A sandbox verdict (for `SandboxEnded`).
fn golden_sandbox_verdict() -> SandboxVerdict {
    SandboxVerdict {
        name: "s".into(),
        reason: SandboxEndReason::IdleTimeout,
        wall_time_us: 1500,
        user_cpu_us: 0,
        system_cpu_us: 0,
        memory_peak_bytes: Some(4096),
        commands_run: 2,
        limits: Limits::default(),
    }
}

#[test]
fn persistent_sandbox_messages_are_pinned() {
    // CreateSandbox (index 4): id, the config as a Spawn's, then the options.
    let create = Request::CreateSandbox {
        id: 1,
        config: Box::default(),
        options: SandboxOptions {
            name: Some("ab".into()),
            idle_timeout_ms: Some(300),
            lifetime_ms: None,
            survive_creator: true,
        },
    };
    let mut golden = vec![0x04, 0x01];
    golden.extend(encode(&SandboxConfig::default()).unwrap());
    golden.extend_from_slice(&[0x01, 0x02, b'a', b'b']); // name: Some("ab")
    golden.extend_from_slice(&[0x01, 0xAC, 0x02]); // idle_timeout_ms: Some(300)
    golden.push(0x00); // lifetime_ms: None
    golden.push(0x01); // survive_creator: true
    round_trip(&create, &golden);

    // Exec (index 5): id, the sandbox's name, then the command.
    let exec = Request::Exec {
        id: 2,
        sandbox: "s".into(),
        request: Box::new(ExecRequest::new("/t").stdin(Stdio::Null).wall_time_ms(5)),
    };
    let golden = [
        0x05, 0x02, 0x01, b's', // Exec, id 2, sandbox "s"
        0x02, b'/', b't', // program
        0x01, 0x02, b'/', b't', // argv = [program]
        0x00, // env: empty
        0x01, b'/', // cwd
        0x01, 0x00, 0x00, // stdin Null, stdout and stderr Pipe
        0x01, 0x05, // wall_time_ms: Some(5)
        0x00, // cpu_time_ms: None
        0x00, // pty: None
    ];
    round_trip(&exec, &golden);

    // A terminal of 24 rows and 80 columns: Some, then the two u16 varints.
    let with_pty = Request::Exec {
        id: 2,
        sandbox: "s".into(),
        request: Box::new(
            ExecRequest::new("/t")
                .stdin(Stdio::Null)
                .wall_time_ms(5)
                .pty(24, 80),
        ),
    };
    let mut golden_pty = golden[..golden.len() - 1].to_vec();
    golden_pty.extend_from_slice(&[0x01, 0x18, 0x50]);
    round_trip(&with_pty, &golden_pty);

    // DestroySandbox (index 6).
    let destroy = Request::DestroySandbox {
        id: 4,
        sandbox: "ab".into(),
    };
    round_trip(&destroy, &[0x06, 0x04, 0x02, b'a', b'b']);

    // SandboxCreated (index 5): pid 77 zigzags to 154 = varint 9A 01.
    let created = Event::SandboxCreated {
        id: 3,
        name: "ab".into(),
        pid: 77,
    };
    round_trip(&created, &[0x05, 0x03, 0x02, b'a', b'b', 0x9A, 0x01]);

    // SandboxEnded (index 6).
    let ended = Event::SandboxEnded {
        id: 7,
        verdict: golden_sandbox_verdict(),
    };
    let mut golden = vec![0x06, 0x07, 0x01, b's'];
    golden.push(0x01); // reason: IdleTimeout
    golden.extend_from_slice(&[0xDC, 0x0B]); // wall_time_us 1500
    golden.extend_from_slice(&[0x00, 0x00]); // user and system CPU
    golden.extend_from_slice(&[0x01, 0x80, 0x20]); // memory_peak_bytes: Some(4096)
    golden.push(0x02); // commands_run
    golden.extend_from_slice(&[0; 10]); // limits: nine None, unlimited empty
    round_trip(&ended, &golden);

    // ListSandboxes (index 7) and its answer, Sandboxes (index 7).
    round_trip(&Request::ListSandboxes { id: 9 }, &[0x07, 0x09]);
    let listed = Event::Sandboxes {
        id: 9,
        sandboxes: vec![SandboxInfo {
            name: "s".into(),
            owner_uid: Some(1000),
            age_ms: 5,
            commands_running: 1,
            memory_peak_bytes: None,
        }],
    };
    let golden = [
        0x07, 0x09, 0x01, // Sandboxes, id 9, one
        0x01, b's', // name
        0x01, 0xE8, 0x07, // owner_uid: Some(1000)
        0x05, 0x01, 0x00, // age_ms, commands_running, memory_peak_bytes: None
    ];
    round_trip(&listed, &golden);

    // ErrorKind::UnknownSandbox (index 16).
    let unknown = ErrorKind::UnknownSandbox { name: "s".into() };
    round_trip(&unknown, &[0x10, 0x01, b's']);
}

#[test]
fn passed_fd_stdio_is_only_its_tag() {
    // The fd itself travels as SCM_RIGHTS, never in the bytes.
    let bytes = encode(&Stdio::Fd(PassedFd::default())).unwrap();
    assert_eq!(bytes, [0x02]);
    assert_eq!(encode(&Stdio::Null).unwrap(), [0x01]);
}

#[test]
fn spawned_and_exited_are_pinned() {
    let spawned = golden_spawned();
    // pid 77 zigzags to 154 = varint 9A 01.
    round_trip(&spawned, &[0x01, 0x02, 0x9A, 0x01, 0x02, 0x01, 0x03, 0x00]);
    let exited = golden_exited();
    let mut golden = vec![0x02, 0x07]; // Exited, id 7
    golden.extend_from_slice(&[0x01, 0x12]); // status: Signaled(9), zigzag 18
    golden.push(0x06); // reason: DaemonShutdown
    golden.extend_from_slice(&[0xDC, 0x0B, 0x00, 0x00]); // wall 1500 us, no CPU time
    golden.extend_from_slice(&[0x80, 0x10]); // max_rss 2048 KiB
    golden.extend_from_slice(&[0x01, 0x80, 0x20]); // memory_peak_bytes: Some(4096)
    golden.extend_from_slice(&[0x01, 0x03]); // tasks_started: Some(3)
    golden.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // memory, pids, cpus, cpu time
    golden.extend_from_slice(&[0x01, 0xE8, 0x07]); // wall_time_ms: Some(1000)
    golden.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // file size, nofile, tmp size, inodes
    golden.extend_from_slice(&[0x01, 0x01]); // unlimited: [Pids]
    golden.extend_from_slice(&[0x01, 0x00]); // skipped_limits: [Memory]
    golden.extend_from_slice(&[0x01, 0x07]); // limits_reached: [TmpSize]
    round_trip(&exited, &golden);
}

#[test]
fn errors_are_pinned() {
    let error = golden_version_mismatch();
    round_trip(&error, &[0x03, 0x00, 0x01, 0x01, 0x01, b'v']);
    let setup = golden_setup_error();
    // Step 8 (RootDirectories), failure 0 (Sys); errno 2 zigzags to 4.
    round_trip(
        &setup,
        &[
            0x03, 0x01, 0x05, 0x07, 0x08, 0x00, 0x01, b'm', 0x00, 0x04, 0x00,
        ],
    );
}

#[test]
fn setup_steps_are_pinned_by_their_place() {
    // Append-only: a step's wire index is its place in the declaration, never moved.
    for (index, step) in SetupStep::ALL.into_iter().enumerate() {
        assert_eq!(step as usize, index, "{step:?} is out of place in ALL");
        round_trip(&step, &[index as u8]);
    }
    assert_eq!(SetupStep::ALL.len(), 33);
    round_trip(&SetupStep::Clone, &[0x00]);
    round_trip(&SetupStep::IdMaps, &[0x04]);
    round_trip(&SetupStep::Seccomp, &[0x1C]);
    round_trip(&SetupStep::ForwardSignals, &[0x1E]);
    round_trip(&SetupStep::Undumpable, &[0x1F]);
}

#[test]
fn setup_failures_are_pinned() {
    round_trip(
        &SetupFailure::Protocol {
            expected: "a".into(),
            received: "b".into(),
        },
        &[0x01, 1, b'a', 1, b'b'],
    );
    round_trip(&SetupFailure::ZygoteGone, &[0x02]);
    round_trip(&SetupFailure::Verification("v".into()), &[0x03, 1, b'v']);
    round_trip(&SetupFailure::Request("r".into()), &[0x04, 1, b'r']);
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode(&Request::Signal { id: 1, signal: 9 }).unwrap();
    bytes.push(0);
    assert!(matches!(
        decode::<Request>(&bytes),
        Err(ProtocolError::TrailingBytes(1))
    ));
}

#[test]
fn garbage_and_truncation_are_rejected() {
    assert!(matches!(
        decode::<Request>(&[0xFF, 0xFF, 0xFF]),
        Err(ProtocolError::Malformed(_))
    ));
    let bytes = encode(&Request::Spawn {
        id: 1,
        request: Box::new(SpawnRequest::new("/bin/true")),
    })
    .unwrap();
    for len in 0..bytes.len() {
        assert!(
            decode::<Request>(&bytes[..len]).is_err(),
            "a prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn oversized_messages_are_refused() {
    let huge = SpawnRequest::new("/bin/true").arg("x".repeat(MAX_MESSAGE_LEN));
    assert!(matches!(
        encode(&Request::Spawn {
            id: 1,
            request: Box::new(huge)
        }),
        Err(ProtocolError::TooLarge)
    ));
}

#[test]
fn non_utf8_arguments_survive() {
    use std::os::unix::ffi::OsStrExt;
    let arg = std::ffi::OsStr::from_bytes(&[0x66, 0xFF, 0x6F]);
    let request = SpawnRequest::new("/bin/echo").arg(arg);
    let back: SpawnRequest = decode(&encode(&request).unwrap()).unwrap();
    assert_eq!(back.argv()[1].as_bytes(), &[0x66, 0xFF, 0x6F]);
}

#[test]
fn exit_status_decodes_wait_statuses() {
    assert_eq!(ExitStatus::from_wait_status(3 << 8), ExitStatus::Exited(3));
    assert_eq!(ExitStatus::from_wait_status(9), ExitStatus::Signaled(9));
    assert_eq!(ExitStatus::Signaled(15).code(), 143);
}

#[test]
fn network_facts_are_pinned() {
    // Version 6: `Spawned` ends with `network`, an `Option<NetworkFacts>`.
    let spawned = Event::Spawned {
        id: 1,
        pid: 2,
        fds: vec![FdRole::Pidfd],
        network: Some(crate::protocol::NetworkFacts {
            interface: "e".into(),
            host_interface: "h0".into(),
            addresses: vec![
                crate::protocol::AddressFacts {
                    address: "10.0.0.2".parse().unwrap(),
                    prefix_len: 30,
                    gateway: "10.0.0.1".parse().unwrap(),
                },
                crate::protocol::AddressFacts {
                    address: "fd00::2".parse().unwrap(),
                    prefix_len: 126,
                    gateway: "fd00::1".parse().unwrap(),
                },
            ],
        }),
    };
    let mut golden = vec![0x01, 0x01, 0x04, 0x01, 0x03]; // Spawned, id 1, pid 2, [Pidfd]
    golden.push(0x01); // network: Some
    golden.extend_from_slice(&[0x01, b'e', 0x02, b'h', b'0']); // interface, host_interface
    golden.push(0x02); // addresses: 2 items
    golden.extend_from_slice(&[0x00, 10, 0, 0, 2, 30, 0x00, 10, 0, 0, 1]); // V4, /30, V4
    let v6 = |last: u8| {
        let mut bytes = vec![0x01, 0xfd]; // V6, then 16 bytes
        bytes.extend_from_slice(&[0; 14]);
        bytes.push(last);
        bytes
    };
    golden.extend(v6(2));
    golden.push(126);
    golden.extend(v6(1));
    round_trip(&spawned, &golden);
}

#[test]
fn veth_network_is_pinned() {
    // Appended variant 1 of NetworkConfig: old messages (variant 0) decode unchanged.
    let veth = NetworkConfig::Veth(VethConfig {
        interface: Some("e".into()),
        mtu: Some(1400),
    });
    // 1400 = 0x578: varint F8 0A.
    round_trip(&veth, &[0x01, 0x01, 0x01, b'e', 0x01, 0xF8, 0x0A]);
    round_trip(
        &NetworkConfig::Veth(VethConfig::default()),
        &[0x01, 0x00, 0x00],
    );
    round_trip(&NetworkConfig::None, &[0x00]);
}

#[test]
fn network_errors_are_pinned() {
    for (kind, index) in [
        (ErrorKind::NetworkUnavailable, 0x0C),
        (ErrorKind::AddressPoolExhausted, 0x0D),
    ] {
        let error = Event::Error {
            id: Some(2),
            kind,
            message: String::new(),
        };
        round_trip(&error, &[0x03, 0x01, 0x02, index, 0x00]);
    }
}

#[test]
fn entry_spawn_is_pinned() {
    // An entry call is a new Command variant (index 1): Exec requests keep their bytes.
    let mut request = SpawnRequest::entry("lookup", &7u32).expect("encodes");
    request.stdin = Stdio::Pipe;
    let spawn = Request::Spawn {
        id: 1,
        request: Box::new(request),
    };
    let bytes = encode(&spawn).expect("encodes");
    let mut head = vec![0x01, 0x01]; // Spawn, id 1
    head.push(0x01); // Command::Entry
    head.push(6);
    head.extend_from_slice(b"lookup"); // name
    head.extend_from_slice(&[1, 7]); // args: one byte, the varint 7
    head.push(0); // env: empty
    head.extend_from_slice(&[1, b'/']); // cwd
    head.extend_from_slice(&[0, 0, 0]); // stdin, stdout, stderr: Pipe
    assert_eq!(&bytes[..head.len()], &head[..]);
    let back: Request = decode(&bytes).expect("decodes");
    assert_eq!(back, spawn);
}

#[test]
fn entry_events_are_pinned() {
    round_trip(&FdRole::Result, &[0x04]);
    round_trip(
        &ErrorKind::UnknownEntry { name: "x".into() },
        &[0x0E, 1, b'x'],
    );
    round_trip(
        &ErrorKind::BadEntryArgs { name: "x".into() },
        &[0x0F, 1, b'x'],
    );
    round_trip(&EntryResult::Returned(vec![5]), &[0x00, 1, 5]);
    round_trip(
        &EntryResult::Failed {
            message: "m".into(),
            error: vec![],
        },
        &[0x01, 1, b'm', 0],
    );
    round_trip(
        &EntryResult::Panicked {
            message: "p".into(),
        },
        &[0x02, 1, b'p'],
    );
}

// The tables of `docs/protocol.md` against the types: a variant added, removed, renamed
// or reordered fails here until the doc says the same. The exhaustive matches in
// `every_*` fail to compile when a variant is added: give it a sample and a doc row.

const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

/// The cells of the rows of the first table at or after the line holding `heading`,
/// without the header and separator rows, backticks and surrounding spaces.
fn doc_table(heading: &str) -> Vec<Vec<String>> {
    assert!(
        PROTOCOL_DOC.contains(heading),
        "docs/protocol.md has no line with {heading:?}"
    );
    let rows: Vec<Vec<String>> = PROTOCOL_DOC
        .lines()
        .skip_while(|line| !line.contains(heading))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().replace('`', ""))
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "no table after {heading:?}");
    rows
}

/// The variant's name, from its `Debug` form (`Hello { .. }`, `Fd(..)`, `Busy`).
fn variant_name(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Each sample's (wire index, name) against the (Index, Variant) columns of the table
/// after `heading`. The indexes here are below 128: a varint of one byte.
fn assert_table<T: Serialize + std::fmt::Debug>(heading: &str, samples: &[T]) {
    let documented: Vec<(String, String)> = doc_table(heading)
        .into_iter()
        .map(|row| {
            // `VersionMismatch { supported }` in the error-kind table of section 4.
            let name = row[1].chars().take_while(|c| c.is_ascii_alphanumeric());
            (row[0].clone(), name.collect())
        })
        .collect();
    let encoded: Vec<(String, String)> = samples
        .iter()
        .map(|sample| {
            let bytes = encode(sample).expect("encodes");
            (bytes[0].to_string(), variant_name(sample))
        })
        .collect();
    assert_eq!(
        encoded, documented,
        "the table after {heading:?} in docs/protocol.md is not the enum's"
    );
}

#[test]
fn the_error_kind_tables_are_the_enum() {
    // Section 2.3 (the fields) and section 4 (the meanings) both list every kind.
    assert_table("**`ErrorKind`** (enum", &one_of_each_error_kind());
    assert_table("## 4. Error kinds", &one_of_each_error_kind());
}

#[test]
fn the_other_enum_tables_are_the_enums() {
    let request = SpawnRequest::new("/bin/true");
    let requests = [
        Request::Hello {
            version: PROTOCOL_VERSION,
            client: String::new(),
        },
        Request::Spawn {
            id: 1,
            request: Box::new(request.clone()),
        },
        Request::Signal { id: 1, signal: 9 },
        golden_status_request(),
        Request::CreateSandbox {
            id: 1,
            config: Box::default(),
            options: SandboxOptions::default(),
        },
        Request::Exec {
            id: 1,
            sandbox: "s".into(),
            request: Box::new(ExecRequest::new("/bin/true")),
        },
        Request::DestroySandbox {
            id: 1,
            sandbox: "s".into(),
        },
        Request::ListSandboxes { id: 1 },
    ];
    for request in &requests {
        match request {
            Request::Hello { .. } | Request::Spawn { .. } | Request::Signal { .. } => {}
            Request::Status { .. } => {}
            Request::CreateSandbox { .. } | Request::Exec { .. } => {}
            Request::DestroySandbox { .. } | Request::ListSandboxes { .. } => {}
        }
    }
    assert_table("**`Request`** (client → daemon)", &requests);

    let verdict = Verdict {
        status: ExitStatus::Exited(0),
        reason: EndReason::Exited,
        wall_time_us: 0,
        user_cpu_us: 0,
        system_cpu_us: 0,
        max_rss_kib: 0,
        memory_peak_bytes: None,
        tasks_started: None,
        limits: Limits::default(),
        skipped_limits: vec![],
        limits_reached: LimitSet::EMPTY,
    };
    let events = [
        Event::Welcome {
            version: PROTOCOL_VERSION,
            server: String::new(),
        },
        Event::Spawned {
            id: 1,
            pid: 2,
            fds: vec![],
            network: None,
        },
        Event::Exited { id: 1, verdict },
        Event::Error {
            id: None,
            kind: ErrorKind::Protocol,
            message: String::new(),
        },
        golden_status(),
        Event::SandboxCreated {
            id: 1,
            name: "s".into(),
            pid: 2,
        },
        Event::SandboxEnded {
            id: 1,
            verdict: golden_sandbox_verdict(),
        },
        Event::Sandboxes {
            id: 1,
            sandboxes: vec![],
        },
    ];
    for event in &events {
        match event {
            Event::Welcome { .. } | Event::Spawned { .. } | Event::Exited { .. } => {}
            Event::Error { .. } | Event::Status { .. } => {}
            Event::SandboxCreated { .. } | Event::SandboxEnded { .. } => {}
            Event::Sandboxes { .. } => {}
        }
    }
    assert_table("**`Event`** (daemon → client)", &events);

    let commands = [
        request.command.clone(),
        Command::Entry {
            name: "x".into(),
            args: vec![],
        },
    ];
    for command in &commands {
        match command {
            Command::Exec { .. } | Command::Entry { .. } => {}
        }
    }
    assert_table("**`Command`** (enum)", &commands);

    let results = [
        EntryResult::Returned(vec![]),
        EntryResult::Failed {
            message: String::new(),
            error: vec![],
        },
        EntryResult::Panicked {
            message: String::new(),
        },
    ];
    for result in &results {
        match result {
            EntryResult::Returned(_) | EntryResult::Failed { .. } => {}
            EntryResult::Panicked { .. } => {}
        }
    }
    assert_table("| Index | `EntryResult` variant |", &results);

    let stdio = [Stdio::Pipe, Stdio::Null, Stdio::Fd(PassedFd::default())];
    for s in &stdio {
        match s {
            Stdio::Pipe | Stdio::Null | Stdio::Fd(_) => {}
        }
    }
    assert_table("**`Stdio`** (enum)", &stdio);

    let networks = [
        NetworkConfig::None,
        NetworkConfig::Veth(VethConfig::default()),
    ];
    for network in &networks {
        match network {
            NetworkConfig::None | NetworkConfig::Veth(_) => {}
        }
    }
    assert_table("**`NetworkConfig`** (enum)", &networks);

    let layers = [Layer::Seccomp, Layer::NetworkNamespace];
    for layer in &layers {
        match layer {
            Layer::Seccomp | Layer::NetworkNamespace => {}
        }
    }
    assert_table("**`Layer`** (enum)", &layers);

    let roles = [
        FdRole::Stdin,
        FdRole::Stdout,
        FdRole::Stderr,
        FdRole::Pidfd,
        FdRole::Result,
        FdRole::Pty,
    ];
    for role in &roles {
        match role {
            FdRole::Stdin | FdRole::Stdout | FdRole::Stderr | FdRole::Pidfd => {}
            FdRole::Result | FdRole::Pty => {}
        }
    }
    assert_table("**`FdRole`** (enum)", &roles);

    let statuses = [ExitStatus::Exited(0), ExitStatus::Signaled(9)];
    for status in &statuses {
        match status {
            ExitStatus::Exited(_) | ExitStatus::Signaled(_) => {}
        }
    }
    assert_table("**`ExitStatus`** (enum)", &statuses);
}

#[test]
fn the_limit_and_end_reason_tables_carry_their_names() {
    // `Limit::ALL` is in declaration order; `name` is what `hatchery run` and the
    // verdict's JSON call each.
    assert_table("**`Limit`** (enum)", &Limit::ALL);
    let names: Vec<String> = doc_table("**`Limit`** (enum)")
        .into_iter()
        .map(|row| row[3].clone())
        .collect();
    let expected: Vec<&str> = Limit::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(names, expected, "the Name column of the Limit table");

    let reasons = [
        EndReason::Exited,
        EndReason::Signaled,
        EndReason::OomKilled,
        EndReason::WallTimeout,
        EndReason::CpuTimeout,
        EndReason::KilledByClient,
        EndReason::DaemonShutdown,
    ];
    for reason in &reasons {
        match reason {
            EndReason::Exited | EndReason::Signaled | EndReason::OomKilled => {}
            EndReason::WallTimeout | EndReason::CpuTimeout => {}
            EndReason::KilledByClient | EndReason::DaemonShutdown => {}
        }
    }
    assert_table("**`EndReason`** (enum", &reasons);
    let names: Vec<String> = doc_table("**`EndReason`** (enum")
        .into_iter()
        .map(|row| row[2].clone())
        .collect();
    let expected: Vec<&str> = reasons.iter().map(|reason| reason.name()).collect();
    assert_eq!(names, expected, "the Name column of the EndReason table");
}

/// The hex dump of the first code block after `heading` in docs/protocol.md.
fn doc_hex(heading: &str) -> Vec<u8> {
    PROTOCOL_DOC
        .lines()
        .skip_while(|line| !line.starts_with(heading))
        .skip_while(|line| *line != "```")
        .skip(1)
        .take_while(|line| *line != "```")
        .flat_map(|line| line.split_whitespace())
        .map(|byte| u8::from_str_radix(byte, 16).expect("a hex byte"))
        .collect()
}

#[test]
fn the_byte_examples_are_what_the_encoder_writes() {
    // Section 6, one example per golden test above.
    let examples: [(&str, Vec<u8>); 9] = [
        ("### 6.1 ", encode(&golden_hello()).unwrap()),
        ("### 6.2 ", encode(&golden_signal()).unwrap()),
        ("### 6.3 ", encode(&golden_spawn()).unwrap()),
        ("### 6.4 ", encode(&golden_spawned()).unwrap()),
        ("### 6.5 ", encode(&golden_exited()).unwrap()),
        ("### 6.6 ", encode(&golden_version_mismatch()).unwrap()),
        ("### 6.7 ", encode(&golden_setup_error()).unwrap()),
        ("### 6.8 ", encode(&golden_status_request()).unwrap()),
        ("### 6.9 ", encode(&golden_status()).unwrap()),
    ];
    for (heading, bytes) in examples {
        assert_eq!(doc_hex(heading), bytes, "the bytes under {heading:?}");
    }
    // Section 2.3, in the text.
    let veth = NetworkConfig::Veth(VethConfig {
        interface: Some("e".into()),
        mtu: Some(1400),
    });
    let hex: Vec<String> = encode(&veth)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let text = format!("mtu: Some(1400) }})` is\n`{}`", hex.join(" "));
    assert!(PROTOCOL_DOC.contains(&text), "{text:?} in docs/protocol.md");
}

#[test]
fn the_json_of_the_golden_verdict_is_what_to_json_writes() {
    // Section 5 shows the verdict of section 6.5 as `hatchery run --verdict-json` writes it.
    let text: String = PROTOCOL_DOC
        .lines()
        .skip_while(|line| !line.starts_with("The verdict of the golden `Exited` event in §6.5"))
        .skip_while(|line| *line != "```json")
        .skip(1)
        .take_while(|line| *line != "```")
        .collect::<Vec<_>>()
        .join("\n");
    let documented: serde_json::Value = serde_json::from_str(&text).expect("the doc's JSON");
    let Event::Exited { verdict, .. } = golden_exited() else {
        unreachable!("the golden exit is an Exited event")
    };
    assert_eq!(verdict.to_json(), documented);
}
