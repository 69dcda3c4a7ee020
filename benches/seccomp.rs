//! Cost of installing the workload's seccomp filter, per layout, in one interleaved run.
//!
//! Run with `cargo bench --bench seccomp`. Each sample is a fresh process (this binary
//! re-executed) that sets no_new_privs, then times only the installation of the
//! programs, as the sandbox does last before `execve`. Four variants, in a rotating
//! order per round: the default (denylist) and strict (allowlist) policies, each
//! compiled as hatchery does (a binary search over syscall numbers, conditional rules in
//! seccompiler programs) and in the linear layout seccompiler alone produces (one
//! comparison per listed syscall, one program per action), which is how the default
//! policy was compiled before.
//!
//! Environment: `HATCHERY_BENCH_RUNS` (default 300), `HATCHERY_BENCH_QUICK=1` (10 samples
//! each after 2 warm-up runs, for CI: the figures mean nothing).
//!
//! Runs on the host; the filters are installed in throwaway children of this benchmark,
//! never in the benchmark itself.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use hatchery::seccomp::{syscall_number, SeccompPolicy};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// Set in the re-executed child: the index of the variant it installs.
const CHILD_ENV: &str = "HATCHERY_BENCH_SECCOMP_CHILD";

/// The syscalls of the built-in policies' conditional rules, which an allowlist in the
/// linear layout must still let through to their own programs.
const CONDITIONAL: [&str; 4] = ["clone", "ioctl", "socket", "personality"];

struct Variant {
    name: &'static str,
    programs: Vec<BpfProgram>,
    samples: Vec<Duration>,
}

fn main() {
    let variants = variants();
    if let Ok(index) = std::env::var(CHILD_ENV) {
        let variant = &variants[index.parse::<usize>().expect("variant index")];
        nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
        let start = Instant::now();
        for program in &variant.programs {
            seccompiler::apply_filter(program).expect("install the filter");
        }
        let elapsed = start.elapsed();
        // Printing is allowed by every variant (write is in both policies).
        println!("{}", elapsed.as_nanos());
        return;
    }

    let quick = std::env::var("HATCHERY_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs: usize = std::env::var("HATCHERY_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 10 } else { 300 });
    let warm_up = if quick { 2 } else { 10 };
    if quick {
        println!("quick mode: a few samples; the figures mean nothing");
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut variants = variants;
    let sample = |index: usize| -> Duration {
        let output = Command::new(&exe)
            .env(CHILD_ENV, index.to_string())
            .output()
            .expect("run the child");
        assert!(output.status.success(), "{output:?}");
        let nanos: u64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("nanoseconds");
        Duration::from_nanos(nanos)
    };
    for index in 0..variants.len() {
        for _ in 0..warm_up {
            sample(index);
        }
    }
    for round in 0..runs {
        let count = variants.len();
        for i in 0..count {
            let index = (i + round) % count;
            let elapsed = sample(index);
            variants[index].samples.push(elapsed);
        }
    }

    println!("seccomp filter installation, {runs} samples each, interleaved:");
    println!(
        "{:<34} {:>8} {:>10} {:>10} {:>10}",
        "variant", "insns", "median", "p10", "p90"
    );
    for variant in &mut variants {
        variant.samples.sort();
        let at = |q: f64| variant.samples[((variant.samples.len() - 1) as f64 * q) as usize];
        let insns: usize = variant.programs.iter().map(Vec::len).sum();
        println!(
            "{:<34} {:>8} {:>8.1}µs {:>8.1}µs {:>8.1}µs",
            variant.name,
            insns,
            at(0.5).as_secs_f64() * 1e6,
            at(0.1).as_secs_f64() * 1e6,
            at(0.9).as_secs_f64() * 1e6,
        );
    }
}

fn variants() -> Vec<Variant> {
    let default = SeccompPolicy::default_policy().expect("default policy");
    let strict = SeccompPolicy::strict_policy().expect("strict policy");
    let variant = |name, programs| Variant {
        name,
        programs,
        samples: Vec::new(),
    };
    vec![
        variant("default, binary search (now)", compiled(&default)),
        variant("default, linear (before)", linear(&default, false)),
        variant("strict, binary search (now)", compiled(&strict)),
        variant("strict, linear allowlist", linear(&strict, true)),
    ]
}

fn compiled(policy: &SeccompPolicy) -> Vec<BpfProgram> {
    policy.compile().expect("compile").programs().to_vec()
}

/// The policy in seccompiler's own layout: for an allowlist, one program listing every
/// allowed syscall (default ENOSYS); then one program per errno listing the syscalls it
/// refuses; then the same conditional programs as the compiled policy. The first
/// program of the compiled policy (ABI guard and binary search) is left out, so the ABI
/// guard is missing here: this variant only stands for the cost of the layout.
fn linear(policy: &SeccompPolicy, allowlist: bool) -> Vec<BpfProgram> {
    #[cfg(target_arch = "aarch64")]
    let arch = TargetArch::aarch64;
    #[cfg(not(target_arch = "aarch64"))]
    let arch = TargetArch::x86_64;
    let numbers = |names: &mut dyn Iterator<Item = String>| -> BTreeMap<i64, Vec<SeccompRule>> {
        names
            .filter_map(|name| syscall_number(&name))
            .map(|number| (number, Vec::new()))
            .collect()
    };
    let mut programs = Vec::new();
    if allowlist {
        let mut allowed = policy
            .allowed_syscalls()
            .into_iter()
            .chain(CONDITIONAL.map(String::from));
        let filter = SeccompFilter::new(
            numbers(&mut allowed),
            SeccompAction::Errno(libc::ENOSYS as u32),
            SeccompAction::Allow,
            arch,
        )
        .expect("allowlist filter");
        programs.push(BpfProgram::try_from(filter).expect("allowlist program"));
    }
    let mut by_errno: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (name, errno) in policy.blocked_syscalls() {
        // The allowlist's default answer is already in its own program.
        if !(allowlist && errno == libc::ENOSYS && name != "clone3") {
            by_errno.entry(errno).or_default().push(name);
        }
    }
    for (errno, names) in by_errno {
        let filter = SeccompFilter::new(
            numbers(&mut names.into_iter()),
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .expect("denylist filter");
        programs.push(BpfProgram::try_from(filter).expect("denylist program"));
    }
    programs.extend(compiled(policy).into_iter().skip(1));
    programs
}
