//! Entries: Rust functions of a zygote, run in children forked from it inside the full
//! sandbox, called with `Client::call`. The zygote under test is
//! `tests/zygote/main.rs`, whose entries misbehave on purpose.

mod common;
#[path = "zygote/shared.rs"]
mod shared;

use std::time::Duration;

use hatchery::protocol::{Command, SpawnRequest};
use hatchery::{CallError, SandboxConfig, SpawnError};

use common::Daemon;
use shared::{Inside, LookupArgs, LookupError, Tampering, HEAP_VALUE, PRELOADED_TEXT, ZYGOTE_SEED};

const TEST_ZYGOTE: &str = env!("CARGO_BIN_EXE_hatchery-test-zygote");

fn zygote() -> Daemon {
    Daemon::start_zygote(TEST_ZYGOTE, &[], &[])
}

fn sandbox() -> SandboxConfig {
    SandboxConfig::default()
}

/// The zygote still serves: a well-behaved call returns its value intact.
fn assert_still_serving(daemon: &Daemon) {
    let client = daemon.client();
    let echoed: String = client
        .call("echo", "still here", sandbox())
        .expect("a call after the failure");
    assert_eq!(echoed, "still here");
}

/// No sandbox of the daemon's is left, and its fd count is back to `fds`.
fn assert_nothing_leaked(daemon: &Daemon, fds: usize) {
    let left = daemon.wait_childless(Duration::from_secs(5));
    assert!(left.is_empty(), "sandboxes left behind: {left:?}");
    assert_eq!(daemon.settled_fd_count(fds), fds, "the daemon's fds");
}

#[test]
fn an_entry_sees_the_preload_inside_every_sandbox_layer() {
    require_sandbox!();
    let daemon = zygote();
    let client = daemon.client();
    let inside: Inside = client.call("inside", &(), sandbox()).expect("call");

    assert_eq!(inside.preloaded, PRELOADED_TEXT, "the preloaded region");
    assert_eq!(inside.heap_value, HEAP_VALUE, "the preloaded heap value");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(inside.status[set], "0000000000000000", "{set}");
    }
    assert_eq!(inside.status["NoNewPrivs"], "1");
    assert_eq!(inside.status["Seccomp"], "2", "mode 2 is a BPF filter");
    // Its namespaces are not the zygote's.
    for (ns, link) in &inside.namespaces {
        let zygote_ns = std::fs::read_link(format!("/proc/{}/ns/{ns}", daemon.pid()))
            .expect("read the zygote's namespace");
        assert!(link.starts_with(&format!("{ns}:[")), "{ns}: {link}");
        assert_ne!(link, &zygote_ns.display().to_string(), "{ns} namespace");
    }
    assert_eq!(inside.pid, 2, "the workload under the sandbox's init");
    assert_eq!(inside.uid, 1000);
    assert_eq!(inside.hostname, "hatchery");
    // Stdio and the result pipe; not the init's channel, nor anything of the zygote.
    assert_eq!(inside.fds, vec![0, 1, 2, 4]);
    // The environment is the request's (empty), not the zygote's.
    assert_eq!(inside.env, Vec::<(String, String)>::new());
}

#[test]
fn typed_results_and_errors_arrive_intact() {
    require_sandbox!();
    let daemon = zygote();
    let client = daemon.client();
    let byte: u8 = client
        .call("lookup", &LookupArgs { index: 3 }, sandbox())
        .expect("lookup");
    assert_eq!(byte, PRELOADED_TEXT[3]);

    let big: Vec<u8> = client.call("big", &100_000usize, sandbox()).expect("big");
    assert_eq!(big, vec![0xAB; 100_000]);

    let index = PRELOADED_TEXT.len() as u32;
    let err = client
        .call::<_, u8>("lookup", &LookupArgs { index }, sandbox())
        .expect_err("out of range");
    assert!(matches!(err, CallError::Failed { .. }), "{err:?}");
    assert_eq!(
        err.entry_error::<LookupError>(),
        Some(LookupError::OutOfRange {
            index,
            len: PRELOADED_TEXT.len() as u32
        })
    );
    assert!(err.to_string().contains("out of range"), "{err}");

    let err = client
        .call::<_, ()>("fail", &(), sandbox())
        .expect_err("fails");
    let output = err.output().expect("output");
    assert_eq!(output.stderr_text(), "failing on purpose\n");
    assert_eq!(output.verdict.as_ref().map(|v| v.status.code()), Some(1));
}

#[test]
fn spawn_child_runs_an_entry_with_its_stdout() {
    require_sandbox!();
    use std::io::Read;
    let daemon = zygote();
    let client = daemon.client();
    let request = SpawnRequest::entry("echo", "hi").expect("encode");
    assert!(matches!(request.command, Command::Entry { .. }));
    let mut child = client.spawn_child(request).expect("spawn");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert_eq!(out, "echo says: hi\n");
    assert!(
        child.result.is_some(),
        "an entry comes with its result pipe"
    );
    assert!(child.wait().expect("wait").status.success());
}

#[test]
fn a_child_cannot_change_what_the_next_child_sees() {
    require_sandbox!();
    let daemon = zygote();
    let client = daemon.client();
    let tampering: Tampering = client.call("tamper", &(), sandbox()).expect("tamper");
    assert!(tampering.process_vm_writev.is_err(), "{tampering:?}");
    assert!(tampering.proc_self_mem.is_err(), "{tampering:?}");
    assert!(tampering.mprotect.is_err(), "{tampering:?}");
    assert!(tampering.map_files.is_err(), "{tampering:?}");
    assert_eq!(
        tampering.preloaded_after, PRELOADED_TEXT,
        "unchanged in the child"
    );
    assert_eq!(
        tampering.heap_value_after, 999,
        "the child's own heap copy changed"
    );

    // A plain store into the region is killed by the kernel.
    let err = client
        .call::<_, ()>("store", &(), sandbox())
        .expect_err("store");
    assert!(
        matches!(err, CallError::Killed { signal: 11, .. }),
        "expected a SIGSEGV, got {err:?}"
    );

    let next: Inside = client.call("inside", &(), sandbox()).expect("next");
    assert_eq!(
        next.preloaded, PRELOADED_TEXT,
        "the next child sees the original"
    );
    assert_eq!(next.heap_value, HEAP_VALUE, "and the original heap value");
}

#[test]
fn after_fork_hooks_reseed_each_child() {
    require_sandbox!();
    let daemon = zygote();
    let client = daemon.client();
    let first: u64 = client.call("seed", &(), sandbox()).expect("seed");
    let second: u64 = client.call("seed", &(), sandbox()).expect("seed");
    assert_ne!(first, ZYGOTE_SEED, "the hook ran before the entry");
    assert_ne!(second, ZYGOTE_SEED, "the hook ran before the entry");
    assert_ne!(first, second, "each child has its own seed");
}

#[test]
fn a_panicking_entry_is_a_panic_error_with_its_stderr() {
    require_sandbox!();
    let daemon = zygote();
    let fds = daemon.steady_fd_count();
    let client = daemon.client();
    let err = client
        .call::<_, ()>("panic", "boom at line 7", sandbox())
        .expect_err("panics");
    match &err {
        CallError::Panicked { message, output } => {
            assert_eq!(message, "boom at line 7");
            let stderr = output.stderr_text();
            assert!(stderr.starts_with("about to panic\n"), "{stderr}");
            assert!(stderr.contains("boom at line 7"), "{stderr}");
            assert_eq!(output.verdict.as_ref().map(|v| v.status.code()), Some(101));
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_still_serving(&daemon);
    drop(client);
    assert_nothing_leaked(&daemon, fds);
}

#[test]
fn an_entry_that_exits_is_an_exit_error_with_its_stdout() {
    require_sandbox!();
    let daemon = zygote();
    let client = daemon.client();
    let err = client
        .call::<_, ()>("exit", &3i32, sandbox())
        .expect_err("exits");
    match &err {
        CallError::Exited { code, output } => {
            assert_eq!(*code, 3);
            assert_eq!(String::from_utf8_lossy(&output.stdout), "exiting with 3\n");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert_still_serving(&daemon);
}

#[test]
fn a_killed_entry_is_a_kill_error() {
    require_sandbox!();
    let daemon = zygote();
    let client = daemon.client();
    let err = client
        .call::<_, ()>("kill-self", &(), sandbox())
        .expect_err("killed");
    assert!(
        matches!(err, CallError::Killed { signal: 9, .. }),
        "expected Killed by 9, got {err:?}"
    );
    assert_still_serving(&daemon);
}

#[test]
fn garbage_on_the_result_pipe_is_a_malformed_result() {
    require_sandbox!();
    let daemon = zygote();
    let client = daemon.client();
    let err = client
        .call::<_, ()>("garbage", &false, sandbox())
        .expect_err("garbage");
    assert!(matches!(err, CallError::Malformed { .. }), "{err:?}");
    // A well-formed result followed by more bytes is malformed too.
    let err = client
        .call::<_, ()>("garbage", &true, sandbox())
        .expect_err("trailing");
    match &err {
        CallError::Malformed { source, .. } => {
            assert!(source.to_string().contains("trailing"), "{source}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // A result of the wrong type: a String where the entry returns raw bytes.
    let err = client
        .call::<_, String>("big", &4usize, sandbox())
        .expect_err("wrong type");
    assert!(matches!(err, CallError::Malformed { .. }), "{err:?}");
    assert_still_serving(&daemon);
}

#[test]
fn a_result_past_the_bound_is_too_large() {
    require_sandbox!();
    let daemon = zygote();
    let fds = daemon.steady_fd_count();
    let client = daemon.client();
    let err = client
        .call_with_limit::<_, Vec<u8>>("big", &5000usize, sandbox(), 1024)
        .expect_err("too large");
    assert!(
        matches!(err, CallError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    // The default bound is 16 MiB.
    let err = client
        .call::<_, Vec<u8>>("big", &(17usize << 20), sandbox())
        .expect_err("too large");
    assert!(
        matches!(err, CallError::TooLarge { limit, .. } if limit == 16 << 20),
        "{err:?}"
    );
    // The bound counts the encoded result: a 1000-byte vector is 2 + 1000 bytes, in a
    // `Returned` of 1 + 2 + 1002 bytes. Right at the bound is fine, one byte less not.
    let ok: Vec<u8> = client
        .call_with_limit("big", &1000usize, sandbox(), 1005)
        .expect("at the bound");
    assert_eq!(ok.len(), 1000);
    let err = client
        .call_with_limit::<_, Vec<u8>>("big", &1000usize, sandbox(), 1004)
        .expect_err("one byte past the bound");
    assert!(matches!(err, CallError::TooLarge { .. }), "{err:?}");
    assert_still_serving(&daemon);
    drop(client);
    assert_nothing_leaked(&daemon, fds);
}

#[test]
fn unknown_entries_and_undecodable_arguments_are_refused_cleanly() {
    require_sandbox!();
    let daemon = zygote();
    let fds = daemon.steady_fd_count();
    let client = daemon.client();
    let err = client
        .call::<_, ()>("nope", &(), sandbox())
        .expect_err("unknown");
    match &err {
        CallError::Spawn(SpawnError::UnknownEntry { name, message }) => {
            assert_eq!(name, "nope");
            assert!(message.contains("no entry named \"nope\""), "{message}");
        }
        other => panic!("expected UnknownEntry, got {other:?}"),
    }
    // A string where `lookup` takes a struct of one u32: the bytes do not decode.
    let err = client
        .call::<_, u8>("lookup", "not a LookupArgs", sandbox())
        .expect_err("bad args");
    match &err {
        CallError::Spawn(SpawnError::BadEntryArgs { name, message }) => {
            assert_eq!(name, "lookup");
            assert!(message.contains("do not decode"), "{message}");
        }
        other => panic!("expected BadEntryArgs, got {other:?}"),
    }
    // A zygote built for entries runs no programs.
    let err = client
        .spawn_child(SpawnRequest::new("/bin/true"))
        .expect_err("no programs");
    assert!(matches!(err, SpawnError::UnknownEntry { .. }), "{err:?}");
    assert!(daemon.children().is_empty(), "nothing was cloned");
    assert_still_serving(&daemon);
    drop(client);
    assert_nothing_leaked(&daemon, fds);
}

#[test]
fn the_stock_daemon_has_no_entries() {
    require_sandbox!();
    let daemon = Daemon::start();
    let err = daemon
        .client()
        .call::<_, ()>("inside", &(), sandbox())
        .expect_err("no entries");
    assert!(
        matches!(err, CallError::Spawn(SpawnError::UnknownEntry { .. })),
        "{err:?}"
    );
}

#[test]
fn a_zygote_with_a_thread_refuses_to_fork() {
    require_sandbox!();
    let daemon = Daemon::start_zygote(TEST_ZYGOTE, &[], &[("HATCHERY_TEST_ZYGOTE_THREAD", "1")]);
    let err = daemon
        .client()
        .call::<_, String>("echo", "hi", sandbox())
        .expect_err("refused");
    match &err {
        CallError::Spawn(SpawnError::Daemon(message)) => {
            assert!(message.contains("the zygote has 2 threads"), "{message}");
            assert!(message.contains("single-threaded"), "{message}");
        }
        other => panic!("expected a daemon error, got {other:?}"),
    }
    assert!(daemon.children().is_empty(), "nothing was forked");
}
