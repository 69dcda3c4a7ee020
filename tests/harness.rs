//! The test suite's own harness, tested: the layout of `tests/`, the probe's
//! [`Facts`](common::Facts), and the map of `src/` in `docs/architecture.md`.
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
    // Every test runs the daemon's side (the built binaries, tests/common): without the
    // `daemon` feature it must be left out, not fail to compile.
    let mut without_daemon = BTreeSet::new();
    let mut current: Option<(String, bool)> = None;
    let mut in_test = false;
    for line in manifest.lines().map(str::trim).chain(["[end]"]) {
        if line.starts_with('[') {
            if let Some((name, requires)) = current.take() {
                if !requires {
                    without_daemon.insert(name.clone());
                }
                declared.insert(name);
            }
            in_test = line == "[[test]]";
        } else if let Some(name) = line.strip_prefix("name = ").filter(|_| in_test) {
            current = Some((name.trim_matches('"').to_string(), false));
        } else if line == "required-features = [\"daemon\"]" {
            if let Some((_, requires)) = current.as_mut() {
                *requires = true;
            }
        }
    }
    assert!(
        without_daemon.is_empty(),
        "these [[test]] targets lack required-features = [\"daemon\"]: {without_daemon:?}"
    );
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

/// The folder map in `docs/architecture.md` names every source file of the crate and
/// nothing else: the tree and its map cannot drift apart.
#[test]
fn the_architecture_map_matches_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("read doc");
    let map = doc
        .split_once("<!-- folder map: begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- folder map: end -->"))
        .map(|(map, _)| map)
        .expect("docs/architecture.md has a folder map between its markers");
    // Each line: indentation (two spaces a level), a name (a folder ends with `/`),
    // then what it holds.
    let mut folders: Vec<String> = Vec::new();
    let mut mapped = BTreeSet::new();
    for line in map
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("```"))
    {
        let depth = (line.len() - line.trim_start().len()) / 2;
        let name = line.split_whitespace().next().expect("a name");
        folders.truncate(depth);
        let path = format!("{}{name}", folders.concat());
        match name.ends_with('/') {
            true => folders.push(name.to_string()),
            false => {
                assert!(mapped.insert(path.clone()), "{path} is mapped twice");
            }
        }
    }
    let mut files = BTreeSet::new();
    collect_rust_files(root, &root.join("src"), &mut files);
    files.insert("build.rs".to_string());
    assert_eq!(
        mapped, files,
        "the map in docs/architecture.md and the files of src/"
    );
}

fn collect_rust_files(root: &Path, dir: &Path, files: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("list a folder of src/") {
        let path = entry.expect("read a folder of src/").path();
        if path.is_dir() {
            collect_rust_files(root, &path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).expect("under the root");
            files.insert(relative.to_string_lossy().into_owned());
        }
    }
}

/// Runs `cargo ARGS` in the crate's folder, offline and on the locked versions, and
/// returns its stdout.
fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(args)
        .args(["--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo prints UTF-8")
}

/// The crates `cargo tree` lists for a build of the library, with `features` arguments.
fn library_dependencies(features: &[&str]) -> BTreeSet<String> {
    let mut args = vec![
        "tree", "--edges", "normal", "--prefix", "none", "--format", "{p}",
    ];
    args.extend_from_slice(features);
    cargo(&args)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A program that only spawns children (`default-features = false`) builds no async
/// runtime, netlink, seccomp compiler or command-line parser; with the default
/// features, the daemon's crates are there (so the check can tell).
#[test]
fn the_client_alone_builds_none_of_the_daemons_dependencies() {
    let daemon_only = [
        "tokio",
        "rtnetlink",
        "seccompiler",
        "clap",
        "futures-util",
        "tracing-subscriber",
    ];
    let client = library_dependencies(&["--no-default-features"]);
    let full = library_dependencies(&[]);
    for name in daemon_only {
        assert!(
            !client.contains(name),
            "the client alone depends on {name}: {client:?}"
        );
        assert!(full.contains(name), "the daemon no longer needs {name}");
    }
    assert!(
        client.contains("postcard") && client.contains("nix"),
        "{client:?}"
    );
}

/// `rust-version` in Cargo.toml is the newest `rust-version` any locked dependency
/// declares, of those a build or the tests compile for Linux: the real minimum
/// toolchain, neither older (it would not build) nor newer than needed.
#[test]
fn rust_version_is_the_locked_dependencies_minimum() {
    let text = cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--filter-platform",
        "x86_64-unknown-linux-gnu",
    ]);
    let metadata: serde_json::Value = serde_json::from_str(&text).expect("cargo metadata");
    let version_of = |id: &str| -> Option<(u32, u32)> {
        let package = metadata["packages"]
            .as_array()?
            .iter()
            .find(|p| p["id"] == id)?;
        let mut parts = package["rust_version"].as_str()?.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    let root = metadata["resolve"]["root"]
        .as_str()
        .expect("a root package");
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes");
    // The root's own dependencies of every kind (the tests build with its dev ones),
    // then theirs that are built: normal and build dependencies.
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).expect("node");
        for dep in node["deps"].as_array().expect("deps") {
            let built = id == root
                || dep["dep_kinds"]
                    .as_array()
                    .expect("dep kinds")
                    .iter()
                    .any(|kind| kind["kind"].is_null() || kind["kind"] == "build");
            if built {
                stack.push(dep["pkg"].as_str().expect("pkg").to_string());
            }
        }
    }
    let (needed, by) = seen
        .iter()
        .filter(|id| id.as_str() != root)
        .filter_map(|id| version_of(id).map(|v| (v, id.clone())))
        .max()
        .expect("some dependency declares a rust-version");
    let declared = version_of(root).expect("Cargo.toml declares rust-version");
    assert_eq!(
        declared,
        needed,
        "Cargo.toml's rust-version is {}.{}; the locked dependencies need {}.{} ({})",
        declared.0,
        declared.1,
        needed.0,
        needed.1,
        by.rsplit('#').next().unwrap_or(&by)
    );
}
