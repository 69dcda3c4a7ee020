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

#[test]
fn hello_is_pinned() {
    let hello = Request::Hello {
        version: 1,
        client: "t".into(),
    };
    round_trip(&hello, &[0x00, 0x01, 0x01, b't']);
}

#[test]
fn signal_is_pinned() {
    // id 300 = varint AC 02; signal 15 zigzags to 30 = 0x1E.
    round_trip(
        &Request::Signal {
            id: 300,
            signal: 15,
        },
        &[0x02, 0xAC, 0x02, 0x1E],
    );
}

#[test]
fn spawn_is_pinned() {
    let spawn = Request::Spawn {
        id: 1,
        request: Box::new(SpawnRequest::new("/bin/true")),
    };
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
    golden.push(0); // allow_unenforced_limits: false
    golden.push(1); // kill_on_disconnect: true
    round_trip(&spawn, &golden);
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
    let spawned = Event::Spawned {
        id: 2,
        pid: 77,
        fds: vec![FdRole::Stdout, FdRole::Pidfd],
    };
    // pid 77 zigzags to 154 = varint 9A 01.
    round_trip(&spawned, &[0x01, 0x02, 0x9A, 0x01, 0x02, 0x01, 0x03]);
    let exited = Event::Exited {
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
                ..Limits::default()
            },
            skipped_limits: vec![Limit::Memory],
        },
    };
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
    golden.extend_from_slice(&[0x01, 0x00]); // skipped_limits: [Memory]
    round_trip(&exited, &golden);
}

#[test]
fn errors_are_pinned() {
    let error = Event::Error {
        id: None,
        kind: ErrorKind::VersionMismatch { supported: 1 },
        message: "v".into(),
    };
    round_trip(&error, &[0x03, 0x00, 0x01, 0x01, 0x01, b'v']);
    let setup = Event::Error {
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
    };
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
    assert_eq!(SetupStep::ALL.len(), 31);
    round_trip(&SetupStep::Clone, &[0x00]);
    round_trip(&SetupStep::IdMaps, &[0x04]);
    round_trip(&SetupStep::Seccomp, &[0x1C]);
    round_trip(&SetupStep::ForwardSignals, &[0x1E]);
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
