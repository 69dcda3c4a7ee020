//! The test suite's own harness, tested: the layout of `tests/` and the probe's
//! [`Facts`](common::Facts).
//!
//! `Cargo.toml` turns cargo's discovery of integration tests off (the probe and the test
//! zygote are `tests/NAME/main.rs` programs, which cargo would take for tests), so a test
//! file that is not listed there would silently never run.
//!
//! Runs on the host, in the test process; needs no sandbox.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

/// Every `tests/*.rs` is a `[[test]]` target of `Cargo.toml`, and every target's file
/// exists.
#[test]
fn every_test_file_is_a_test_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let mut declared = BTreeSet::new();
    let mut in_test = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_test = line == "[[test]]";
        } else if let Some(name) = line.strip_prefix("name = ").filter(|_| in_test) {
            declared.insert(name.trim_matches('"').to_string());
        }
    }
    let files: BTreeSet<String> = std::fs::read_dir(root.join("tests"))
        .expect("list tests/")
        .map(|entry| entry.expect("read tests/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            path.file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        files, declared,
        "tests/*.rs and the [[test]] targets of Cargo.toml differ: list each test file there"
    );
}

/// A fact the probe reported reads back; a missing one fails with its name and the keys
/// that were reported, sorted.
#[test]
fn a_missing_fact_names_itself_and_what_was_reported() {
    let facts = common::facts("uid=1000\nCapEff=0000000000000000\nnot a fact\n");
    assert_eq!(facts["uid"], "1000");
    assert_eq!(facts[&"CapEff".to_string()], "0000000000000000");
    assert_eq!(facts.get("euid"), None);
    let missing = std::panic::catch_unwind(|| facts["euid"].clone())
        .expect_err("indexing a missing fact must panic");
    let message = missing
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert_eq!(
        message,
        "the probe did not report \"euid\"; it reported: CapEff, uid"
    );
}
