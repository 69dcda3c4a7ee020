//! Any spawn request that decodes goes through the daemon's checks without a panic:
//! validation, and resolution of its limits against a policy with defaults and ceilings.
#![no_main]

use hatchery::limits::LimitPolicy;
use hatchery::protocol::{decode, Limits, SpawnRequest};
use hatchery::protocol::validate::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode::<SpawnRequest>(data) else {
        return;
    };
    let _ = validate(&request);
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
    };
    if let Ok(resolved) = policy.resolve(&request.sandbox.limits) {
        assert!(resolved.memory_bytes.is_some_and(|m| m <= 1 << 30));
        assert!(resolved.pids.is_some_and(|p| p <= 512));
    }
});
