//! `docker/seccomp.json`, the seccomp profile for running the hatchery daemon in a Docker
//! container without `--privileged`, is generated from the lists below: what Docker's
//! default profile allows a container with Docker's default capabilities, and the few
//! syscalls the daemon adds, each with its reason. This test fails when the file and the
//! lists disagree; `HATCHERY_REGENERATE=1 cargo test --test docker_profile` rewrites it.
//!
//! Docker's default profile (moby's `profiles/seccomp/default.json`) allows most
//! syscalls unconditionally and some only when the container has a capability. For
//! Docker's default capabilities that comes down to `DOCKER_DEFAULT` plus the
//! conditional entries in `profile()`. Two deliberate differences from Docker's own
//! profile: only the 64-bit ABIs (x86_64, aarch64) are mapped, since hatchery's own
//! filter kills 32-bit syscalls anyway, and so the 32-bit-only names (`chown32`,
//! `*_time64`, `socketcall`, ...) are left out; and `io_pgetevents`, which the `libc`
//! crate (and so hatchery's syscall table) does not know, is left out too: it gets
//! EPERM, the stricter answer.

use serde_json::{json, Value};

/// Allowed by Docker's default profile whatever the container's capabilities, less the
/// names only 32-bit ABIs have.
const DOCKER_DEFAULT: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// What the daemon needs beyond Docker's default profile, and why. Nothing else: the
/// workloads inside run under hatchery's own, stricter filter as well.
const HATCHERY_NEEDS: &[(&[&str], &str)] = &[
    (
        &["clone", "clone3"],
        "hatchery: the zygote clones each sandbox into new user, pid, mount, net, ipc, \
         uts and cgroup namespaces. Docker allows clone only without namespace flags and \
         answers clone3 with ENOSYS, unless the container has CAP_SYS_ADMIN, which the \
         daemon does not need; seccomp cannot read clone3's flags, so it is allowed whole",
    ),
    (
        &["mount", "umount2", "pivot_root", "mount_setattr"],
        "hatchery: the sandbox's init builds its mount namespace (read-only root, fresh \
         /proc, private /tmp and /dev) with the capabilities of its own user namespace; \
         Docker allows these only with CAP_SYS_ADMIN in the container",
    ),
    (
        &["sethostname"],
        "hatchery: the sandbox's own hostname, in its own uts namespace; Docker allows it \
         only with CAP_SYS_ADMIN in the container",
    ),
];

/// Docker's personality rule: these personas only, as in hatchery's own policy.
const PERSONAS: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn allow(names: &[&str], comment: &str) -> Value {
    json!({ "names": names, "action": "SCMP_ACT_ALLOW", "comment": comment })
}

fn profile() -> Value {
    let mut syscalls = vec![
        allow(
            DOCKER_DEFAULT,
            "Docker's default profile: allowed for every container",
        ),
        allow(
            &["ptrace", "process_vm_readv", "process_vm_writev"],
            "Docker's default profile: allowed on kernels from 4.8 on",
        ),
        allow(
            &["chroot"],
            "Docker's default profile: allowed with CAP_SYS_CHROOT, a default capability",
        ),
        json!({
            "names": ["arch_prctl", "modify_ldt"],
            "action": "SCMP_ACT_ALLOW",
            "includes": { "arches": ["amd64"] },
            "comment": "Docker's default profile: x86_64 only"
        }),
        json!({
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE" }],
            "comment": "Docker's default profile: every address family but AF_VSOCK"
        }),
    ];
    for persona in PERSONAS {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": persona, "valueTwo": 0, "op": "SCMP_CMP_EQ" }],
            "comment": "Docker's default profile: harmless personas only"
        }));
    }
    for (names, why) in HATCHERY_NEEDS {
        syscalls.push(allow(names, why));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            { "architecture": "SCMP_ARCH_X86_64", "subArchitectures": [] },
            { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": [] }
        ],
        "syscalls": syscalls
    })
}

const PROFILE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/seccomp.json");

#[test]
fn docker_profile_is_generated_from_the_lists() {
    let mut expected = serde_json::to_string_pretty(&profile()).unwrap();
    expected.push('\n');
    if std::env::var_os("HATCHERY_REGENERATE").is_some() {
        std::fs::write(PROFILE_PATH, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(PROFILE_PATH).unwrap();
    assert!(
        actual == expected,
        "docker/seccomp.json differs from the lists in tests/docker_profile.rs; \
         regenerate it with HATCHERY_REGENERATE=1 cargo test --test docker_profile"
    );
}

/// Every name is a real syscall of this architecture (Docker's runtime skips names an
/// architecture lacks, so a typo would silently allow nothing), and none is listed twice.
#[cfg(target_arch = "x86_64")]
#[test]
fn docker_profile_names_real_syscalls_once() {
    let mut seen = std::collections::BTreeSet::new();
    let profile = profile();
    for entry in profile["syscalls"].as_array().unwrap() {
        for name in entry["names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert!(
                hatchery::seccomp::syscall_number(name).is_some(),
                "{name} is not an x86_64 syscall"
            );
            assert!(
                seen.insert(name) || name == "personality",
                "{name} listed twice"
            );
        }
    }
}

/// The additions are exactly what the daemon's setup uses that Docker's default refuses
/// a container without CAP_SYS_ADMIN: nothing of the workload's attack surface that
/// hatchery's own policy refuses (keyrings, bpf, unshare, setns, ...) is opened.
#[test]
fn docker_profile_adds_nothing_the_workload_policy_needs_refused() {
    let added: Vec<&str> = HATCHERY_NEEDS
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
        .collect();
    for name in [
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "init_module",
        "open_by_handle_at",
        "syslog",
        "reboot",
    ] {
        assert!(!added.contains(&name), "{name}");
        assert!(!DOCKER_DEFAULT.contains(&name), "{name}");
    }
}
