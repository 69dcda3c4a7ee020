//! `hatchery run` with any directory as its root, the mount options (`--tmpfs`, `--dir`,
//! `--symlink`, `--file`, `--file-from`, `--dev-bind`, `--ro-bind-try`, `--bind-try`),
//! and the policy a daemon keeps: layers switched off and device binds only where its
//! operator allows them, a seccomp policy per job among those it loaded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{hatchery, open_tempdir, Daemon};

fn run_embedded(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut full = vec!["run", "--embedded"];
    full.extend_from_slice(args);
    hatchery(&full, stdin, &[])
}

fn run_through(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["run", "--socket", daemon.socket.to_str().unwrap()];
    full.extend_from_slice(args);
    hatchery(&full, b"", &[])
}

/// A static program that prints its working directory, then for each argument what
/// is there (`missing`, `dir`, `other`, or `file` and its first bytes), then whether
/// it can write in `/tmp`.
const LOOK_C: &str = r#"
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return 3;
    printf("cwd %s\n", cwd);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (lstat(argv[i], &st) != 0) { printf("%s missing\n", argv[i]); continue; }
        if (S_ISDIR(st.st_mode)) { printf("%s dir\n", argv[i]); continue; }
        if (!S_ISREG(st.st_mode)) { printf("%s other\n", argv[i]); continue; }
        char buf[64] = {0};
        FILE *f = fopen(argv[i], "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        printf("%s file %.*s\n", argv[i], (int)n, buf);
        if (f) fclose(f);
    }
    printf("tmp %s\n", fopen("/tmp/x", "w") ? "writable" : "not writable");
    return 0;
}
"#;

/// A directory holding only the static program `look` (built with the C compiler),
/// that the sandbox's host uid can read; `None` (the test skips) without a compiler
/// that links statically, unless the tests must run.
fn chroot_with_one_static_binary() -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = open_tempdir();
    let source = dir.path().join("look.c");
    std::fs::write(&source, LOOK_C).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let built = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(root.join("look"))
        .arg(&source)
        .status();
    if !built.is_ok_and(|status| status.success()) {
        assert!(
            !common::must_run(),
            "HATCHERY_TESTS_MUST_RUN=1 but `cc -static` cannot build the chroot's program"
        );
        eprintln!("skipped: `cc -static` cannot build the chroot's program");
        return None;
    }
    Some((dir, root))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_chroot_holding_one_static_binary_runs_it() {
    require_sandbox!();
    let Some((_dir, root)) = chroot_with_one_static_binary() else {
        return;
    };
    let chroot = root.to_str().unwrap();
    let (code, stdout, stderr) = run_embedded(
        &[
            "--chroot",
            chroot,
            "--",
            "/look",
            "/etc",
            "/proc/1",
            "/dev/null",
            "/look",
        ],
        b"",
    );
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "cwd /",
            "/etc missing",
            "/proc/1 dir",
            "/dev/null other",
            // The binary itself, bound read-only (an ELF starts with 0x7f).
            lines[4],
            "tmp writable",
        ],
        "{stderr}"
    );
    assert!(lines[4].starts_with("/look file \u{7f}ELF"), "{stdout}");
    // Nothing was made in the user's directory: no proc, dev or tmp.
    assert_eq!(names_in(&root), ["look"]);
}

#[test]
fn a_bind_into_a_missing_target_of_a_chroot_is_made_in_a_tmpfs() {
    require_sandbox!();
    let Some((dir, root)) = chroot_with_one_static_binary() else {
        return;
    };
    // The chroot also has a directory, bound read-only, in which the second bind's
    // mount point is missing.
    std::fs::create_dir(root.join("srv")).unwrap();
    std::fs::write(root.join("srv/kept"), "kept\n").unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "data\n").unwrap();
    let data = data.to_str().unwrap();
    let (code, stdout, stderr) = run_embedded(
        &[
            "--chroot",
            root.to_str().unwrap(),
            "--ro-bind",
            &format!("{data}:/data/in"),
            "--ro-bind",
            &format!("{data}:/srv/deep/in"),
            "--",
            "/look",
            "/data/in/in.txt",
            "/srv/deep/in/in.txt",
            "/srv/kept",
        ],
        b"",
    );
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "/data/in/in.txt file data",
        "/srv/deep/in/in.txt file data",
        "/srv/kept file kept",
    ] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
    assert_eq!(names_in(&root), ["look", "srv"]);
    assert_eq!(names_in(&root.join("srv")), ["kept"]);
}

/// A chroot's symlink names a path as the chroot sees it: while the root is built, the
/// host's tree is under `/oldroot` of the setup's scratch root, so a link there followed
/// as it is would aim a mount point, and the directories made for it, at the host.
#[test]
fn a_chroots_symlinks_cannot_aim_mount_points_at_the_host() {
    require_sandbox!();
    let Some((dir, root)) = chroot_with_one_static_binary() else {
        return;
    };
    // Where an escape would land: a directory of the test's, writable by the sandbox's
    // host uid, so that only the resolution stands in the way.
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let aimed = format!("/oldroot{}", host.display());
    std::os::unix::fs::symlink(&aimed, root.join("absolute")).unwrap();
    std::os::unix::fs::symlink(format!("../../..{aimed}"), root.join("relative")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "data\n").unwrap();
    let data = data.to_str().unwrap();
    let (code, stdout, stderr) = run_embedded(
        &[
            "--chroot",
            root.to_str().unwrap(),
            "--ro-bind",
            &format!("{data}:/absolute/a/in"),
            "--dir",
            "/relative/b",
            "--",
            "/look",
            "/absolute/a/in/in.txt",
        ],
        b"",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("/absolute/a/in/in.txt file data"),
        "{stdout}"
    );
    assert!(
        names_in(&host).is_empty(),
        "the setup made {:?} in a host directory",
        names_in(&host)
    );
}

#[test]
fn tmpfs_dir_and_symlink_make_their_parts_of_the_tree() {
    require_sandbox!();
    let (code, stdout, stderr) = run_embedded(
        &[
            "--tmpfs",
            "/scratch",
            "--dir",
            "/made/here",
            "--symlink",
            "/scratch",
            "/link",
            "--",
            "/bin/sh",
            "-c",
            "echo hi > /link/x && cat /scratch/x && test -d /made/here && echo dir \
             && readlink /link && (touch /made/here/no 2>/dev/null || echo read-only)",
        ],
        b"",
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, "hi\ndir\n/scratch\nread-only\n"),
        "{stderr}"
    );
}

#[test]
fn file_and_file_from_place_read_only_files() {
    require_sandbox!();
    let dir = open_tempdir();
    let host = dir.path().join("conf");
    std::fs::write(&host, "from a path\n").unwrap();
    let (code, stdout, stderr) = run_embedded(
        &[
            "--file-from",
            host.to_str().unwrap(),
            "/etc/injected.conf",
            "--file",
            "0",
            "/in/stdin.txt",
            "--",
            "/bin/sh",
            "-c",
            "cat /etc/injected.conf /in/stdin.txt; test -e /etc/passwd && echo etc-kept; \
             (echo x >> /etc/injected.conf) 2>/dev/null || echo read-only",
        ],
        b"from fd 0\n",
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, "from a path\nfrom fd 0\netc-kept\nread-only\n"),
        "{stderr}"
    );
}

#[test]
fn a_try_bind_of_a_missing_source_is_skipped() {
    require_sandbox!();
    let dir = open_tempdir();
    // Writable by the sandbox's host uid.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let present = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = run_embedded(
        &[
            "--ro-bind-try",
            "/nonexistent-source:/absent",
            "--bind-try",
            &format!("{present}:/present"),
            "--",
            "/bin/sh",
            "-c",
            "test -e /absent || echo skipped; touch /present/w && echo written",
        ],
        b"",
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, "skipped\nwritten\n"),
        "{stderr}"
    );
    assert!(dir.path().join("w").exists());
    // Without -try, the missing source fails the spawn.
    let (code, _, _) = run_embedded(
        &[
            "--ro-bind",
            "/nonexistent-source:/absent",
            "--",
            "/bin/true",
        ],
        b"",
    );
    assert_eq!(code, 125);
}

/// Reads 3 bytes of `/dev/z` in a sandbox given `bind` (`--dev-bind` or `--ro-bind`).
const READ_DEV: [&str; 4] = ["--", "/bin/sh", "-c", "head -c 3 /dev/z | wc -c"];

#[test]
fn a_dev_bind_makes_device_nodes_usable_where_a_bind_does_not() {
    require_sandbox!();
    let with = |flag: &str| {
        let mut args = vec![flag, "/dev/zero:/dev/z"];
        args.extend_from_slice(&READ_DEV);
        run_embedded(&args, b"")
    };
    let (code, stdout, stderr) = with("--dev-bind");
    assert_eq!((code, stdout.trim()), (0, "3"), "{stderr}");
    // A plain bind is nodev: the same node cannot be opened.
    let (_, stdout, _) = with("--ro-bind");
    assert_eq!(stdout.trim(), "0");
}

#[test]
fn a_daemon_refuses_a_dev_bind_unless_its_operator_allows_it() {
    require_sandbox!();
    let daemon = Daemon::start();
    let mut args = vec!["--dev-bind", "/dev/zero:/dev/z"];
    args.extend_from_slice(&READ_DEV);
    let (code, stdout, stderr) = run_through(&daemon, &args);
    assert_eq!((code, stdout.as_str()), (125, ""), "{stderr}");
    assert!(stderr.contains("--allow-dev-bind"), "{stderr}");
    let allowing = Daemon::start_with(&["--allow-dev-bind"]);
    let (code, stdout, stderr) = run_through(&allowing, &args);
    assert_eq!((code, stdout.trim()), (0, "3"), "{stderr}");
}

/// The network interfaces a sandbox sees, by `/proc/net/dev`'s line count.
const COUNT_INTERFACES: [&str; 4] = ["--", "/bin/sh", "-c", "wc -l < /proc/net/dev"];

#[test]
fn a_layer_is_switched_off_only_where_the_daemon_allows_it() {
    require_sandbox!();
    let mut args = vec!["--unsafe-disable", "network-namespace"];
    args.extend_from_slice(&COUNT_INTERFACES);
    let daemon = Daemon::start();
    let (code, stdout, stderr) = run_through(&daemon, &args);
    assert_eq!((code, stdout.as_str()), (125, ""), "{stderr}");
    assert!(
        stderr.contains("--allow-unsafe-disable network-namespace"),
        "{stderr}"
    );
    // Allowed by the daemon: the host's interfaces (more than lo's one line and the
    // two header lines) are seen.
    let allowing = Daemon::start_with(&["--allow-unsafe-disable", "seccomp,network-namespace"]);
    let (code, stdout, stderr) = run_through(&allowing, &args);
    assert_eq!(code, 0, "{stderr}");
    let shared: u32 = stdout.trim().parse().unwrap();
    let (_, own, _) = run_through(&allowing, &COUNT_INTERFACES);
    assert!(shared > own.trim().parse().unwrap(), "{shared} vs {own}");
    // Its own user is the embedded zygote's operator.
    let (code, _, stderr) = run_embedded(&args, b"");
    assert_eq!(code, 0, "{stderr}");
}

/// `try-syscall kcmp=NR` for the probe: the default policy lets `kcmp` reach the kernel
/// (which refuses its bad arguments), the strict one does not list it (`ENOSYS`).
fn kcmp_args() -> Vec<String> {
    let probe_dir = common::probe_path().parent().unwrap().to_str().unwrap();
    let nr = hatchery::seccomp::syscall_number("kcmp").expect("kcmp has a number");
    vec![
        "--ro-bind".into(),
        format!("{probe_dir}:{}", common::PROBE_DIR_INSIDE),
        "--".into(),
        common::PROBE_INSIDE.into(),
        "try-syscall".into(),
        format!("kcmp={nr}"),
    ]
}

fn kcmp_through(daemon: &Daemon, policy: Option<&str>) -> String {
    let mut args: Vec<String> = Vec::new();
    if let Some(policy) = policy {
        args.extend(["--seccomp-policy".to_string(), policy.to_string()]);
    }
    args.extend(kcmp_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run_through(daemon, &args);
    assert_eq!(code, 0, "{stderr}");
    stdout.trim().to_string()
}

#[test]
fn a_job_picks_a_seccomp_policy_among_those_the_daemon_loaded() {
    require_sandbox!();
    let daemon = Daemon::start();
    assert_eq!(kcmp_through(&daemon, Some("strict")), "kcmp=ENOSYS");
    let default = kcmp_through(&daemon, None);
    assert_ne!(default, "kcmp=ENOSYS");
    assert_eq!(kcmp_through(&daemon, Some("default")), default);
    // An unknown name is refused, naming those there are.
    let (code, _, stderr) = run_through(&daemon, &["--seccomp-policy", "lax", "--", "/bin/true"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("\"lax\"") && stderr.contains("default, strict"),
        "{stderr}"
    );
    // The first policy a daemon loads is its default.
    let strict_first = Daemon::start_with(&["--seccomp-policy", "strict"]);
    assert_eq!(kcmp_through(&strict_first, None), "kcmp=ENOSYS");
    let (code, _, stderr) = run_through(
        &strict_first,
        &["--seccomp-policy", "default", "--", "/bin/true"],
    );
    assert_eq!(code, 125, "only strict was loaded: {stderr}");
}

#[test]
fn a_warm_sandbox_of_another_policy_is_not_used() {
    require_sandbox!();
    // The pool holds sandboxes of the default policy (whose init may have installed
    // it already): a strict job must get a fresh sandbox, and strict.
    let daemon = Daemon::start_with(&["--warm-pool", "2"]);
    for _ in 0..3 {
        assert_eq!(kcmp_through(&daemon, Some("strict")), "kcmp=ENOSYS");
    }
    assert_ne!(kcmp_through(&daemon, None), "kcmp=ENOSYS");
}
