//! Any spawn request that decodes goes through the daemon's checks without a panic:
//! validation, and resolution of its limits against a policy with defaults and ceilings;
//! and the errors that echo it (its refusal, a failed setup quoting its paths, an entry's
//! name) always fit a message, so that the request can always be answered.
#![no_main]

use hatchery::limits::LimitPolicy;
use hatchery::protocol::echo::shorten_message;
use hatchery::protocol::validate::validate;
use hatchery::protocol::{
    decode, encode, ErrorKind, Event, Limits, SetupFailure, SetupStep, SpawnRequest,
};
use hatchery::SysError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode::<SpawnRequest>(data) else {
        return;
    };
    let refusal = validate(&request).err().map(|e| e.to_string());
    // The answers that quote the request, bounded as the daemon bounds them.
    let quote = |path: &hatchery::protocol::OsBytes| {
        String::from_utf8_lossy(path.as_bytes()).into_owned()
    };
    let echoes = [
        ErrorKind::Setup {
            step: SetupStep::WorkingDirectory,
            error: SetupFailure::Sys(SysError {
                op: "chdir".into(),
                path: Some(quote(&request.cwd)),
                errno: 2,
            }),
        },
        ErrorKind::InvalidRequest,
    ];
    for kind in echoes {
        let event = Event::Error {
            id: Some(u64::MAX),
            kind: kind.bounded(),
            message: shorten_message(refusal.clone().unwrap_or_else(|| quote(&request.cwd))),
        };
        assert!(encode(&event).is_ok(), "an answer that does not fit a message");
    }
    let policy = LimitPolicy {
        defaults: Limits {
            wall_time_ms: Some(10_000),
            ..Limits::default()
        },
        ceilings: Limits {
            memory_bytes: Some(1 << 30),
            pids: Some(512),
            ..Limits::default()
        },
        // Lifting a default is allowed, a ceiling never is.
        allow_unlimited: hatchery::protocol::LimitSet::all(),
    };
    if let Ok(resolved) = policy.resolve(&request.sandbox.limits) {
        assert!(resolved.memory_bytes.is_some_and(|m| m <= 1 << 30));
        assert!(resolved.pids.is_some_and(|p| p <= 512));
        assert!(!resolved.unlimited.contains(hatchery::protocol::Limit::Memory));
    }
});
