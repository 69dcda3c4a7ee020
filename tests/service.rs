//! Running hatchery as a service: every `serve` and `run` flag from a `HATCHERY_*`
//! variable (the flag wins), listed in `--help` and in the README's table; the daemon's
//! live status (`Status`, `hatchery status`, `hatchery ps`) and who sees what of it.

mod common;

use std::collections::BTreeSet;

use common::{hatchery, Daemon};

/// The `(flag, variable)` pairs that `hatchery COMMAND --help` shows.
fn flags_and_variables(command: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let (code, help, stderr) = hatchery(&[command, "--help"], b"", &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut flags = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed
            .strip_prefix("--")
            .filter(|_| line.starts_with("  "))
        {
            let flag = format!("--{}", rest.split([' ', ',', '=']).next().unwrap());
            flags.insert(flag.clone());
            current = Some(flag);
        } else if trimmed.starts_with('-') && trimmed.contains(", --") {
            let flag = trimmed
                .split(", ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            flags.insert(flag.to_string());
            current = Some(flag.to_string());
        }
        if let Some(at) = line.find("[env: ") {
            let variable = line[at + 6..].split('=').next().unwrap().to_string();
            let flag = current.clone().expect("a variable after its flag");
            pairs.insert((flag, variable));
        }
    }
    (flags, pairs)
}

/// Flags that have no variable, each for a reason the README's table states.
const NO_VARIABLE: [&str; 6] = [
    "--help",
    "--version",
    // Named by HATCHERY_SOCKET, which `run` and clients read as they always did.
    "--socket",
    // Two values each: a profile file holds them (`symlink = [[SRC, DST]]`).
    "--symlink",
    "--file",
    "--file-from",
];

#[test]
fn every_serve_and_run_flag_has_a_variable_and_the_readme_lists_them() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: BTreeSet<(String, String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let variable = cells.get(1)?.strip_prefix("`HATCHERY_")?;
            let variable = format!("HATCHERY_{}", variable.strip_suffix('`')?);
            let command = cells.get(2)?.trim_matches('`').to_string();
            let flag = cells.get(3)?.trim_matches('`').to_string();
            Some((command, flag, variable))
        })
        .collect();
    let mut shown = BTreeSet::new();
    for command in ["serve", "run"] {
        let (flags, pairs) = flags_and_variables(command);
        let with_variable: BTreeSet<&String> = pairs.iter().map(|(flag, _)| flag).collect();
        for flag in &flags {
            assert!(
                with_variable.contains(flag) || NO_VARIABLE.contains(&flag.as_str()),
                "`hatchery {command} {flag}` has no HATCHERY_* variable in --help"
            );
        }
        for (flag, variable) in pairs {
            let expected = match command {
                "run" => format!("HATCHERY_RUN_{}", &flag[2..]),
                _ => format!("HATCHERY_{}", &flag[2..]),
            }
            .to_uppercase()
            .replace('-', "_");
            assert_eq!(variable, expected, "{command} {flag}");
            shown.insert((command.to_string(), flag, variable));
        }
    }
    assert!(shown.len() > 60, "only {} variables shown", shown.len());
    let missing: Vec<_> = shown.difference(&table).collect();
    let stale: Vec<_> = table.difference(&shown).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README's variable table: missing {missing:?}, not in --help {stale:?}"
    );
}

/// A variable's bad value is refused in the words of its flag, which shows the variable is
/// read (these need no daemon).
#[test]
fn a_variables_bad_value_is_named_with_its_flag() {
    for (args, variable, value, flag) in [
        (
            &["run", "--embedded", "--", "true"][..],
            "HATCHERY_RUN_MEMORY",
            "12x",
            "--memory",
        ),
        (
            &["run", "--embedded", "--", "true"],
            "HATCHERY_RUN_UID",
            "abc",
            "--uid",
        ),
        (
            &["run", "--embedded", "--", "true"],
            "HATCHERY_RUN_QUIET",
            "maybe",
            "--quiet",
        ),
        (
            &["serve", "--socket", "/nonexistent/s"],
            "HATCHERY_MAX_CHILDREN",
            "many",
            "--max-children",
        ),
        (
            &["serve", "--socket", "/nonexistent/s"],
            "HATCHERY_DEFAULT_WALL_TIME",
            "-1",
            "--default-wall-time",
        ),
        (
            &["serve", "--socket", "/nonexistent/s"],
            "HATCHERY_LOG_FORMAT",
            "xml",
            "--log-format",
        ),
    ] {
        let (code, _, stderr) = hatchery(args, b"", &[(variable, value)]);
        assert_eq!(code, 125, "{variable}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}")),
            "{variable}={value}: {stderr}"
        );
    }
    // The same value typed as the flag wins over the variable's bad one.
    let (code, _, stderr) = hatchery(
        &[
            "serve",
            "--socket",
            "/nonexistent/s",
            "--log-format",
            "text",
            "--max-children",
            "0",
        ],
        b"",
        &[
            ("HATCHERY_LOG_FORMAT", "xml"),
            ("HATCHERY_MAX_CHILDREN", "many"),
        ],
    );
    assert!(
        !stderr.contains("invalid value"),
        "flags did not win ({code}): {stderr}"
    );
}

/// `run`'s variables reach the sandbox, and a flag wins over its variable.
#[test]
fn run_honours_its_variables_and_flags_win() {
    require_sandbox!();
    let env = [
        ("HATCHERY_RUN_HOSTNAME", "from-variable"),
        ("HATCHERY_RUN_QUIET", "1"),
    ];
    let (code, stdout, stderr) = hatchery(&["run", "--embedded", "--", "/bin/hostname"], b"", &env);
    assert_eq!((code, stdout.as_str()), (0, "from-variable\n"), "{stderr}");
    let (code, stdout, stderr) = hatchery(
        &[
            "run",
            "--embedded",
            "--hostname",
            "from-flag",
            "--",
            "/bin/hostname",
        ],
        b"",
        &env,
    );
    assert_eq!((code, stdout.as_str()), (0, "from-flag\n"), "{stderr}");
    // HATCHERY_RUN_EMBEDDED gives way to a typed --socket (which then must be used).
    let (code, _, stderr) = hatchery(
        &[
            "run",
            "--socket",
            "/nonexistent/hatchery.sock",
            "--",
            "/bin/true",
        ],
        b"",
        &[("HATCHERY_RUN_EMBEDDED", "1")],
    );
    assert_eq!(code, 69, "{stderr}");
    // Both typed are still a usage error.
    let (code, _, stderr) = hatchery(
        &[
            "run",
            "--embedded",
            "--socket",
            "/nonexistent/hatchery.sock",
            "--",
            "/bin/true",
        ],
        b"",
        &[],
    );
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("'--embedded' cannot be used with '--socket"),
        "{stderr}"
    );
}

/// The pids limit a job of this daemon gets, from `run --verdict-json -`.
fn default_pids_of(daemon: &Daemon) -> u64 {
    let socket = daemon.socket.to_str().unwrap();
    let (code, stdout, stderr) = hatchery(
        &[
            "run",
            "--socket",
            socket,
            "--verdict-json",
            "-",
            "--",
            "/bin/true",
        ],
        b"",
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let verdict: serde_json::Value = serde_json::from_str(&stdout).expect("the verdict");
    verdict["limits"]["pids"].as_u64().expect("a pids limit")
}

/// `serve`'s variables set the daemon's policy, and a flag wins over its variable.
#[test]
fn serve_honours_its_variables_and_flags_win() {
    require_sandbox!();
    let daemon = Daemon::start_with_env(&[("HATCHERY_DEFAULT_PIDS", "77")]);
    assert_eq!(default_pids_of(&daemon), 77);
    drop(daemon);
    let daemon = Daemon::start_with_args_and_env(
        &["--default-pids", "88"],
        &[("HATCHERY_DEFAULT_PIDS", "77")],
    );
    assert_eq!(default_pids_of(&daemon), 88);
}
