//! The BPF compiler: turns a validated [`SeccompPolicy`] into the one classic BPF
//! program that the sandbox installs.
//!
//! Runs in the zygote, once at start-up ([`SeccompPolicy::compile`] calls [`compile`]):
//! every sandbox installs the same program, so no spawn pays for compiling it.
//!
//! Compiled shape: one program. It starts with an ABI guard ([`abi_guard`]) that refuses
//! foreign architectures and x32 syscall numbers, which per-syscall rules cannot see,
//! then finds the verdict of every syscall whose verdict does not depend on its
//! arguments by a binary search over the syscall numbers ([`search_tree`]): a few
//! comparisons per call, one return per distinct verdict ([`shared_return_tree`], where
//! its jumps reach; else a return per leaf, [`verdict_tree`]), and cheap to install,
//! however long the allowlist. The leaf of a syscall that rules with argument
//! conditions name jumps instead to the block that checks them: seccompiler's code for
//! the conditional rules of one action, appended after the tree ([`link`]). One program
//! rather than one per action: every program installed costs the kernel a validation, a
//! JIT compilation and an action-cache pass, and every filtered call runs each of them.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

use super::policy::{Action, SeccompPolicy, When};
use super::syscalls::native_number;
use super::{CompiledSeccomp, SeccompError};

impl SeccompPolicy {
    /// Compiles the policy for the running architecture into one BPF program: the ABI
    /// guard, a binary search over the syscall numbers, and a block per action for the
    /// conditional rules. Done once, in the zygote.
    ///
    /// ```
    /// let compiled = hatchery::seccomp::SeccompPolicy::default_policy()
    ///     .unwrap()
    ///     .compile()
    ///     .unwrap();
    /// assert!(!compiled.programs().is_empty());
    /// ```
    pub fn compile(&self) -> Result<CompiledSeccomp, SeccompError> {
        let program = compile(self)?;
        Ok(CompiledSeccomp::new(vec![program], self.own))
    }
}

/// The most instructions the kernel accepts in one program (`BPF_MAXINSNS`).
const BPF_MAX_INSTRUCTIONS: usize = 4096;

/// Compiles `policy` for the running architecture: the ABI guard, the search over the
/// syscall numbers, then a block per action for the conditional rules, in the order the
/// actions first appear in the file.
fn compile(policy: &SeccompPolicy) -> Result<BpfProgram, SeccompError> {
    let (target_arch, audit_arch) = native_arch()?;

    // The verdict of each syscall a rule names, where it does not depend on the
    // arguments; a conditional rule's syscalls are allowed here and refused by their
    // action's block when the conditions hold. Conditional rules are grouped by action,
    // in the order the actions first appear in the file.
    let mut fixed: BTreeMap<u32, Leaf> = BTreeMap::new();
    let mut groups: Vec<(Action, BTreeMap<i64, Vec<SeccompRule>>)> = Vec::new();
    for rule in &policy.rules {
        let numbers = rule.syscalls.iter().filter_map(|name| native_number(name));
        if matches!(rule.when, When::Always) {
            for number in numbers {
                fixed.insert(number as u32, Leaf::Verdict(rule.action.ret_value()));
            }
            continue;
        }
        let chain = rule.when.seccomp_rules()?;
        let index = match groups.iter().position(|(action, _)| *action == rule.action) {
            Some(index) => index,
            None => {
                groups.push((rule.action, BTreeMap::new()));
                groups.len() - 1
            }
        };
        for number in numbers {
            fixed.insert(number as u32, Leaf::Conditions(index));
            groups[index].1.insert(number, chain.clone());
        }
    }

    let mut program = abi_guard(audit_arch);
    program.extend(search_tree(&segments(
        &fixed,
        Leaf::Verdict(policy.default.ret_value()),
    )));
    let mut blocks = Vec::with_capacity(groups.len());
    for (action, rules) in groups {
        if rules.is_empty() {
            // Its rules name no syscall of this architecture: no leaf jumps to it.
            blocks.push(BpfProgram::new());
            continue;
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            action.seccomp_action(),
            target_arch,
        )
        .map_err(SeccompError::Backend)?;
        blocks.push(BpfProgram::try_from(filter).map_err(SeccompError::Backend)?);
    }
    let program = link(program, &blocks);
    if program.len() > BPF_MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLarge(program.len()));
    }
    Ok(program)
}

// Classic BPF, from linux/bpf_common.h and linux/filter.h.
const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;

// Offsets in `struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

// From linux/audit.h: EM_* | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE (0x40000000).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// `__X32_SYSCALL_BIT`: x86_64 syscall numbers at or above it use the x32 ABI.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn load(offset: u32) -> sock_filter {
    sock_filter {
        code: BPF_LD | BPF_W | BPF_ABS,
        jt: 0,
        jf: 0,
        k: offset,
    }
}

fn jump(op: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: BPF_JMP | op | BPF_K,
        jt,
        jf,
        k,
    }
}

fn ret(k: u32) -> sock_filter {
    sock_filter {
        code: BPF_RET | BPF_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// An unconditional jump over `k` instructions (32 bits: as far as a program goes).
fn ja(k: u32) -> sock_filter {
    sock_filter {
        code: BPF_JMP | BPF_JA | BPF_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A placeholder jump to the block of conditional rules `block`, which [`link`] aims.
fn to_block(block: usize) -> sock_filter {
    ja(TO_BLOCK - block as u32)
}

/// The ABI guard that heads the first program.
///
/// seccompiler's rules compare syscall numbers of the native ABI only, which a
/// default-allow filter cannot leave at that:
/// - a foreign architecture (on x86_64, the i386 ABI through `int 0x80`, which arrives
///   with `AUDIT_ARCH_I386`) numbers its syscalls differently, so the denylist would
///   miss them all. It gets `KILL_PROCESS`: seccompiler's own programs already return
///   that on an architecture mismatch, and the kernel applies the most severe verdict of
///   all installed filters, so anything milder here would be overridden anyway;
/// - on x86_64, numbers with the x32 bit reach the same kernel functions under other
///   numbers (`mount` is 165, x32 `mount` is 0x400000a5). They get `ERRNO(ENOSYS)`,
///   what a kernel built without x32 support answers. On aarch64 such numbers are
///   invalid anyway, and ENOSYS is what the kernel says to them too.
///
/// It uses only loads of `nr` and `arch`, JEQ, JGE and constant returns, which the
/// kernel's seccomp action cache can evaluate ahead of time: syscalls whose verdict is
/// "allow" whatever their arguments (most of them) stay cached and skip the filters.
fn abi_guard(audit_arch: u32) -> Vec<sock_filter> {
    vec![
        load(SECCOMP_DATA_ARCH),
        jump(BPF_JEQ, audit_arch, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        load(SECCOMP_DATA_NR),
        jump(BPF_JGE, X32_SYSCALL_BIT, 0, 1),
        ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

/// What the tree does for a syscall number: return a verdict, or jump to the block that
/// checks the arguments against the conditional rules of one action (by its index in
/// the blocks given to [`link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Verdict(u32),
    Conditions(usize),
}

/// The leaf of every native syscall number as runs of equal leaves: `(first number,
/// leaf)`, sorted, starting at 0, each run lasting until the next one starts. `fixed`
/// holds the numbers a rule names; every other number (including those above the
/// highest known syscall: newer ones) gets `default`.
fn segments(fixed: &BTreeMap<u32, Leaf>, default: Leaf) -> Vec<(u32, Leaf)> {
    let mut runs: Vec<(u32, Leaf)> = vec![(0, default)];
    let mut push = |start: u32, verdict: Leaf| {
        let last = runs.last_mut().expect("runs starts with one run");
        if last.1 == verdict {
            return;
        }
        if last.0 == start {
            last.1 = verdict;
        } else {
            runs.push((start, verdict));
        }
    };
    for (&number, &verdict) in fixed {
        push(number, verdict);
        if fixed.get(&(number + 1)).is_none() {
            push(number + 1, default);
        }
    }
    // Merging a run into its predecessor at the same start may leave two equal
    // neighbours (a, X), (b, X) once a run between them vanished; fold them.
    runs.dedup_by(|later, earlier| later.1 == earlier.1);
    runs
}

/// A binary search over `runs` (from [`segments`]) for the syscall number in the
/// accumulator, in as few instructions as fit: [`shared_return_tree`] where its every
/// jump reaches, else [`verdict_tree`].
fn search_tree(runs: &[(u32, Leaf)]) -> Vec<sock_filter> {
    shared_return_tree(runs).unwrap_or_else(|| verdict_tree(runs))
}

/// The search of [`verdict_tree`] without a return per leaf: a comparison whose side is
/// a verdict jumps straight to that verdict's one return, placed after the tree. Half
/// the instructions (one `jge` per run, one return per distinct verdict), and the kernel
/// validates, converts and JIT-compiles every instruction at each installation. `None`
/// when the tree and its returns are longer than an 8-bit jump reaches (256
/// instructions).
fn shared_return_tree(runs: &[(u32, Leaf)]) -> Option<Vec<sock_filter>> {
    let mut verdicts: Vec<u32> = Vec::new();
    for &(_, leaf) in runs {
        if let Leaf::Verdict(value) = leaf {
            if !verdicts.contains(&value) {
                verdicts.push(value);
            }
        }
    }
    let conditions = runs
        .iter()
        .filter(|(_, leaf)| matches!(leaf, Leaf::Conditions(_)))
        .count();
    // One comparison per run but the first, a jump per conditional run, the returns.
    if runs.len() - 1 + conditions + verdicts.len() > 256 {
        return None;
    }
    let (mut program, fixups) = match shared_return_subtree(runs) {
        Subtree::Return(value) => return Some(vec![ret(value)]),
        Subtree::Code(code, fixups) => (code, fixups),
    };
    let returns = program.len();
    program.extend(verdicts.iter().map(|&value| ret(value)));
    for (at, on_true, value) in fixups {
        let index = verdicts.iter().position(|&v| v == value)?;
        let offset = u8::try_from(returns + index - at - 1).ok()?;
        if on_true {
            program[at].jt = offset;
        } else {
            program[at].jf = offset;
        }
    }
    Some(program)
}

/// A subtree of [`shared_return_tree`]: a verdict (no code: its parent jumps to the
/// verdict's return), or code with the jumps still to aim at returns (instruction,
/// whether its true side, verdict).
enum Subtree {
    Return(u32),
    Code(Vec<sock_filter>, Vec<(usize, bool, u32)>),
}

fn shared_return_subtree(runs: &[(u32, Leaf)]) -> Subtree {
    let [(_, leaf)] = runs else {
        let middle = runs.len() / 2;
        let below = shared_return_subtree(&runs[..middle]);
        let above = shared_return_subtree(&runs[middle..]);
        // nr >= pivot: the upper half, else the lower half (which follows).
        let mut code = vec![jump(BPF_JGE, runs[middle].0, 0, 0)];
        let mut fixups = Vec::new();
        let mut place = |half: Subtree, on_true: bool, code: &mut Vec<sock_filter>| {
            match half {
                Subtree::Return(value) => fixups.push((0, on_true, value)),
                Subtree::Code(half, half_fixups) => {
                    let start = code.len();
                    if on_true {
                        // Over the lower half's code, which fits 8 bits (checked above).
                        code[0].jt = (start - 1) as u8;
                    }
                    fixups.extend(half_fixups.into_iter().map(|(at, t, v)| (at + start, t, v)));
                    code.extend(half);
                }
            }
        };
        place(below, false, &mut code);
        place(above, true, &mut code);
        return Subtree::Code(code, fixups);
    };
    match *leaf {
        Leaf::Verdict(value) => Subtree::Return(value),
        Leaf::Conditions(block) => Subtree::Code(vec![to_block(block)], Vec::new()),
    }
}

/// A binary search over `runs` (from [`segments`]) for the syscall number in the
/// accumulator: one `jge` per level and a constant return per leaf, so a call costs
/// about log2(runs) comparisons and installing it costs little, whatever the number of
/// syscalls listed. Uses only instructions the kernel's seccomp action cache evaluates
/// ahead of time (`jge`, `ja`, constant returns). A [`Leaf::Conditions`] leaf is a
/// placeholder jump that [`link`] aims at its block.
fn verdict_tree(runs: &[(u32, Leaf)]) -> Vec<sock_filter> {
    let [(_, verdict)] = runs else {
        let middle = runs.len() / 2;
        let below = verdict_tree(&runs[..middle]);
        let above = verdict_tree(&runs[middle..]);
        let pivot = runs[middle].0;
        let mut program = Vec::with_capacity(below.len() + above.len() + 2);
        match u8::try_from(below.len()) {
            // nr >= pivot: jump over the lower half.
            Ok(skip) => program.push(jump(BPF_JGE, pivot, skip, 0)),
            // Too far for a conditional jump (8 bits): an unconditional one (32 bits).
            Err(_) => {
                program.push(jump(BPF_JGE, pivot, 0, 1));
                program.push(ja(below.len() as u32));
            }
        }
        program.extend(below);
        program.extend(above);
        return program;
    };
    match *verdict {
        Leaf::Verdict(value) => vec![ret(value)],
        Leaf::Conditions(block) => vec![to_block(block)],
    }
}

/// The `k` of a placeholder jump to block 0 (block `n`: `TO_BLOCK - n`); a real jump
/// within a program of at most [`BPF_MAX_INSTRUCTIONS`] never goes this far.
const TO_BLOCK: u32 = u32::MAX;

/// Appends `blocks` (seccompiler's programs for the conditional rules, one per action)
/// to `program` and aims each placeholder jump of its tree at its block. A block's
/// jumps are relative and stay within it, so it runs as it would as a program of its
/// own: it checks the architecture and the syscall number again, then the arguments,
/// and returns its action or `allow`.
fn link(mut program: Vec<sock_filter>, blocks: &[BpfProgram]) -> Vec<sock_filter> {
    let mut starts = Vec::with_capacity(blocks.len());
    for block in blocks {
        starts.push(program.len());
        program.extend_from_slice(block);
    }
    let tree_end = starts.first().copied().unwrap_or(program.len());
    for (at, insn) in program[..tree_end].iter_mut().enumerate() {
        if insn.code == BPF_JMP | BPF_JA | BPF_K && insn.k > TO_BLOCK - blocks.len() as u32 {
            let block = (TO_BLOCK - insn.k) as usize;
            insn.k = (starts[block] - at - 1) as u32;
        }
    }
    program
}

/// seccompiler's architecture and the audit value the kernel reports for it.
pub(super) fn native_arch() -> Result<(TargetArch, u32), SeccompError> {
    #[cfg(target_arch = "x86_64")]
    return Ok((TargetArch::x86_64, AUDIT_ARCH_X86_64));
    #[cfg(target_arch = "aarch64")]
    return Ok((TargetArch::aarch64, AUDIT_ARCH_AARCH64));
    #[allow(unreachable_code)]
    Err(SeccompError::UnsupportedArchitecture(
        std::env::consts::ARCH,
    ))
}

#[cfg(test)]
mod tests {
    use nix::errno::Errno;

    use super::*;
    use crate::seccomp::emulator::{run, verdict, ALLOW, ENOSYS, EPERM, KILL_PROCESS};
    use crate::seccomp::policy::tests::one_rule;
    use crate::seccomp::syscalls::NATIVE_SYSCALLS;
    use crate::seccomp::CompiledSeccomp;

    fn default_compiled() -> CompiledSeccomp {
        SeccompPolicy::default_policy().unwrap().compile().unwrap()
    }

    #[test]
    fn default_policy_parses_and_compiles() {
        let policy = SeccompPolicy::default_policy().unwrap();
        assert!(policy.rules.len() >= 10);
        let compiled = policy.compile().unwrap();
        // The tree and the conditional rules' blocks (EPERM, ENOSYS and EAFNOSUPPORT)
        // in one program.
        assert_eq!(compiled.programs().len(), 1);
        for program in compiled.programs() {
            assert!(program.len() > abi_guard(AUDIT_ARCH_X86_64).len());
            assert!(program.len() <= BPF_MAX_INSTRUCTIONS);
            assert_eq!(
                program.last(),
                Some(&ret(ALLOW)),
                "a denylist ends in allow"
            );
        }
    }

    #[test]
    fn bpf_constants_match_the_kernel_headers() {
        assert_eq!(BPF_LD | BPF_W | BPF_ABS, 0x20);
        assert_eq!(BPF_JMP | BPF_JEQ | BPF_K, 0x15);
        assert_eq!(BPF_JMP | BPF_JGE | BPF_K, 0x35);
        assert_eq!(BPF_RET | BPF_K, 0x06);
        assert_eq!(libc::SECCOMP_RET_ERRNO, 0x0005_0000);
        assert_eq!(libc::SECCOMP_RET_KILL_PROCESS, 0x8000_0000);
        assert_eq!(libc::SECCOMP_RET_ALLOW, 0x7fff_0000);
        assert_eq!(AUDIT_ARCH_X86_64, 0xC000_003E);
        assert_eq!(AUDIT_ARCH_AARCH64, 0xC000_00B7);
    }

    #[test]
    fn abi_guard_heads_the_first_program() {
        let guard = abi_guard(0xC000_003E);
        let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
        assert_eq!(
            guard,
            vec![
                insn(0x20, 0, 0, 4),                // A = seccomp_data.arch
                insn(0x15, 1, 0, 0xC000_003E),      // native: skip the kill
                insn(0x06, 0, 0, 0x8000_0000),      // foreign ABI: KILL_PROCESS
                insn(0x20, 0, 0, 0),                // A = seccomp_data.nr
                insn(0x35, 0, 1, 0x4000_0000),      // x32 bit (or a negative nr)?
                insn(0x06, 0, 0, 0x0005_0000 | 38), // ... ERRNO(ENOSYS)
            ]
        );
        let compiled = default_compiled();
        let (_, audit_arch) = native_arch().unwrap();
        let guard = abi_guard(audit_arch);
        assert_eq!(compiled.programs()[0][..guard.len()], guard[..]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_compiled_default_gives_the_expected_verdicts() {
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        let compiled = default_compiled();
        let x86 = |nr: i64, args: [u64; 6]| verdict(&compiled, nr, AUDIT_ARCH_X86_64, args);
        let none = [0; 6];

        assert_eq!(x86(libc::SYS_read, none), ALLOW);
        assert_eq!(x86(libc::SYS_close_range, none), ALLOW);
        assert_eq!(x86(libc::SYS_faccessat2, none), ALLOW);
        assert_eq!(x86(libc::SYS_mount, none), EPERM);
        assert_eq!(x86(libc::SYS_umount2, none), EPERM);
        assert_eq!(x86(libc::SYS_chroot, none), EPERM);
        assert_eq!(x86(libc::SYS_ptrace, none), EPERM);
        assert_eq!(x86(libc::SYS_io_uring_setup, none), EPERM);
        assert_eq!(x86(libc::SYS_clone3, none), ENOSYS);

        // clone: threads and forks pass, any namespace flag does not.
        let thread = 0x003d_0f00;
        let fork = 0x0120_0011; // CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
        assert_eq!(x86(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(x86(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]), ALLOW);
        for flag in [
            0x20000,
            0x0200_0000,
            0x0400_0000,
            0x0800_0000,
            0x1000_0000,
            0x2000_0000,
            0x4000_0000,
            0x80,
        ] {
            assert_eq!(
                x86(libc::SYS_clone, [fork | flag, 0, 0, 0, 0, 0]),
                EPERM,
                "{flag:#x}"
            );
        }

        // ioctl: TIOCSTI and TIOCLINUX, also with junk in the upper half the kernel drops.
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            x86(libc::SYS_ioctl, [0, 0xffff_ffff_0000_5412, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x541C, 0, 0, 0, 0]), EPERM);
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]), ALLOW); // TCGETS

        // personality: the default persona and the query pass, ADDR_NO_RANDOMIZE does not.
        for allowed in [0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(
                x86(libc::SYS_personality, [allowed, 0, 0, 0, 0, 0]),
                ALLOW,
                "{allowed:#x}"
            );
        }
        assert_eq!(
            x86(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            x86(libc::SYS_personality, [0x0400000, 0, 0, 0, 0, 0]),
            EPERM
        );

        // Foreign ABIs: x32 numbers and the i386 ABI.
        assert_eq!(x86(libc::SYS_mount | 0x4000_0000, none), ENOSYS);
        assert_eq!(x86(libc::SYS_read | 0x4000_0000, none), ENOSYS);
        assert_eq!(x86(-1, none), ENOSYS);
        assert_eq!(verdict(&compiled, 3, AUDIT_ARCH_I386, none), KILL_PROCESS);
    }

    #[test]
    fn kill_process_rules_and_empty_policies_compile() {
        let policy = one_rule(r#"{"syscalls": ["ptrace"], "action": "kill_process"}"#).unwrap();
        assert!(policy.blocked_syscalls().is_empty());
        let compiled = policy.compile().unwrap();
        assert_eq!(compiled.programs().len(), 1);
        let (_, audit_arch) = native_arch().unwrap();
        assert_eq!(
            verdict(&compiled, libc::SYS_ptrace, audit_arch, [0; 6]),
            KILL_PROCESS
        );
        assert_eq!(
            verdict(&compiled, libc::SYS_read, audit_arch, [0; 6]),
            ALLOW
        );

        // No rules at all still guards the ABI.
        let empty = SeccompPolicy::from_json(r#"{"version": 1, "rules": []}"#)
            .unwrap()
            .compile()
            .unwrap();
        assert_eq!(empty.programs().len(), 1);
        assert_eq!(empty.programs()[0].len(), abi_guard(audit_arch).len() + 1);
        assert_eq!(verdict(&empty, libc::SYS_read, audit_arch, [0; 6]), ALLOW);
        assert_eq!(
            verdict(&empty, libc::SYS_read | 0x4000_0000, audit_arch, [0; 6]),
            ENOSYS
        );
    }

    #[test]
    fn if_all_needs_every_condition() {
        let policy = one_rule(
            r#"{"syscalls": ["socket"], "action": {"errno": "EAFNOSUPPORT"}, "if_all": [
                {"arg": 0, "width": 32, "op": "ne", "value": 1},
                {"arg": 0, "width": 32, "op": "ne", "value": 2}]}"#,
        )
        .unwrap();
        let compiled = policy.compile().unwrap();
        let (_, audit_arch) = native_arch().unwrap();
        let socket = |family| {
            verdict(
                &compiled,
                libc::SYS_socket,
                audit_arch,
                [family, 0, 0, 0, 0, 0],
            )
        };
        assert_eq!(socket(1), ALLOW);
        assert_eq!(socket(2), ALLOW);
        assert_eq!(socket(10), 0x0005_0000 | libc::EAFNOSUPPORT as u32);
    }

    /// The binary search must give every number exactly the verdict of its run, also
    /// when a subtree is too long for an 8-bit jump and an unconditional one bridges it.
    #[test]
    fn the_verdict_tree_agrees_with_its_table() {
        let (_, audit_arch) = native_arch().unwrap();
        let tables: Vec<(BTreeMap<u32, u32>, u32)> = vec![
            (BTreeMap::new(), ALLOW),
            (BTreeMap::from([(0, EPERM)]), ALLOW),
            (BTreeMap::from([(0, EPERM), (1, EPERM), (7, ENOSYS)]), ALLOW),
            (BTreeMap::from([(3, ALLOW), (4, ALLOW), (5, EPERM)]), ENOSYS),
            // Alternating verdicts: 1200 runs, a tree far deeper than 8-bit jumps reach.
            ((0..600).map(|n| (n * 2, EPERM)).collect(), ALLOW),
            // Numbers named with the default's own verdict change nothing.
            ((0..40).map(|n| (n, ALLOW)).collect(), ALLOW),
        ];
        for (fixed, default) in tables {
            let leaves = fixed.iter().map(|(&n, &v)| (n, Leaf::Verdict(v))).collect();
            let runs = segments(&leaves, Leaf::Verdict(default));
            assert_eq!(runs[0].0, 0);
            assert!(runs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 != w[1].1));
            // Both layouts; the shared returns' only where its jumps reach.
            let shared = shared_return_tree(&runs);
            assert_eq!(shared.is_some(), runs.len() < 200, "{} runs", runs.len());
            for tree in [verdict_tree(&runs), search_tree(&runs)] {
                let mut program = abi_guard(audit_arch);
                program.extend(tree);
                assert!(program.len() <= BPF_MAX_INSTRUCTIONS, "{}", program.len());
                for nr in 0..1400 {
                    let expected = fixed.get(&(nr as u32)).copied().unwrap_or(default);
                    assert_eq!(run(&program, nr, audit_arch, [0; 6]), expected, "nr {nr}");
                }
                assert_eq!(
                    run(&program, 0x3fff_ffff, audit_arch, [0; 6]),
                    default,
                    "far above every named number"
                );
            }
            if let Some(shared) = shared {
                let returns = shared.iter().filter(|insn| insn.code == BPF_RET | BPF_K);
                let distinct: std::collections::BTreeSet<u32> = runs
                    .iter()
                    .map(|(_, leaf)| match leaf {
                        Leaf::Verdict(v) => *v,
                        Leaf::Conditions(_) => unreachable!(),
                    })
                    .collect();
                assert_eq!(returns.count(), distinct.len(), "one return per verdict");
                assert!(
                    shared.len() <= runs.len() + distinct.len(),
                    "{}",
                    shared.len()
                );
            }
        }
        let long = segments(
            &(0..600).map(|n| (n * 2, Leaf::Verdict(EPERM))).collect(),
            Leaf::Verdict(ALLOW),
        );
        assert!(verdict_tree(&long)
            .iter()
            .any(|insn| insn.code == BPF_JMP | BPF_JA | BPF_K));
    }

    /// The linked program's every jump lands inside it (the kernel would refuse it
    /// otherwise, but only at install time): placeholders are all resolved, each to the
    /// first instruction of a block, seccompiler's arch check.
    #[test]
    fn every_jump_of_the_linked_programs_lands_inside_them() {
        for policy in [
            SeccompPolicy::default_policy().unwrap(),
            SeccompPolicy::strict_policy().unwrap(),
        ] {
            let compiled = policy.compile().unwrap();
            let program = &compiled.programs()[0];
            let mut block_starts = 0;
            for (at, insn) in program.iter().enumerate() {
                let next = at + 1;
                let targets = match insn.code {
                    0x05 => vec![next + insn.k as usize],
                    code if code & 0x07 == BPF_JMP => {
                        vec![next + usize::from(insn.jt), next + usize::from(insn.jf)]
                    }
                    _ => continue,
                };
                for target in targets {
                    assert!(target < program.len(), "jump at {at} to {target}");
                }
                if insn.code == 0x05 && program[next + insn.k as usize] == load(SECCOMP_DATA_ARCH) {
                    block_starts += 1;
                }
            }
            assert!(
                block_starts >= 2,
                "the conditional syscalls' leaves reach blocks"
            );
        }
    }

    #[test]
    fn strict_policy_parses_compiles_and_is_small() {
        let policy = SeccompPolicy::strict_policy().unwrap();
        assert_eq!(policy.default, Action::Errno(Errno::ENOSYS));
        let compiled = policy.compile().unwrap();
        // The tree, then the conditional rules' blocks: EPERM (clone, ioctl,
        // personality) and EAFNOSUPPORT (socket).
        assert_eq!(compiled.programs().len(), 1);
        // A binary search, not a list: well under one instruction per allowed syscall.
        // The tree ends where the first block begins, with seccompiler's arch check.
        let allowed = policy.allowed_syscalls().len();
        assert!(allowed > 250, "{allowed}");
        let program = &compiled.programs()[0];
        let guard = abi_guard(AUDIT_ARCH_X86_64).len();
        let tree = program[guard..]
            .iter()
            .position(|insn| *insn == load(SECCOMP_DATA_ARCH))
            .expect("the blocks follow the tree");
        assert!(
            tree < allowed,
            "{tree} instructions for {allowed} allowed syscalls"
        );
        assert!(program.len() < allowed + 100, "{}", program.len());
    }

    /// Every syscall of the architecture gets from the compiled filter exactly what the
    /// policy's own lists say, for both built-in policies.
    #[test]
    fn compiled_builtins_match_their_lists() {
        let (_, audit_arch) = native_arch().unwrap();
        for policy in [
            SeccompPolicy::default_policy().unwrap(),
            SeccompPolicy::strict_policy().unwrap(),
        ] {
            let compiled = policy.compile().unwrap();
            let blocked = policy.blocked_syscalls();
            let allowed = policy.allowed_syscalls();
            let mut checked = 0;
            for &(sys_name, number) in NATIVE_SYSCALLS {
                let name = &sys_name["SYS_".len()..];
                let got = verdict(&compiled, number, audit_arch, [0; 6]);
                if let Some(&(_, errno)) = blocked.iter().find(|(n, _)| n == name) {
                    assert_eq!(got, 0x0005_0000 | errno as u32, "{name}");
                    checked += 1;
                } else if allowed.iter().any(|n| n == name) {
                    assert_eq!(got, ALLOW, "{name}");
                    checked += 1;
                }
            }
            // Only the conditional rules' syscalls are in neither list.
            assert!(checked + 4 >= NATIVE_SYSCALLS.len(), "{checked}");
            // A number above every known syscall: the default action.
            let expected = policy.default.ret_value();
            assert_eq!(verdict(&compiled, 1000, audit_arch, [0; 6]), expected);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_compiled_strict_policy_gives_the_expected_verdicts() {
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        let compiled = SeccompPolicy::strict_policy().unwrap().compile().unwrap();
        let x86 = |nr: i64, args: [u64; 6]| verdict(&compiled, nr, AUDIT_ARCH_X86_64, args);
        let none = [0; 6];
        assert_eq!(x86(libc::SYS_read, none), ALLOW);
        assert_eq!(x86(libc::SYS_execve, none), ALLOW);
        assert_eq!(x86(libc::SYS_mount, none), EPERM);
        assert_eq!(x86(libc::SYS_clone3, none), ENOSYS);
        assert_eq!(x86(libc::SYS_kcmp, none), ENOSYS, "not listed");
        assert_eq!(x86(libc::SYS_sethostname, none), ENOSYS, "not listed");
        assert_eq!(x86(470, none), ENOSYS, "a syscall newer than the policy");
        let fork = 0x0120_0011;
        assert_eq!(x86(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            x86(libc::SYS_clone, [fork | 0x1000_0000, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]), ALLOW);
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0]), EPERM);
        assert_eq!(x86(libc::SYS_socket, [1, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            x86(libc::SYS_socket, [40, 1, 0, 0, 0, 0]),
            0x0005_0000 | libc::EAFNOSUPPORT as u32
        );
        assert_eq!(x86(libc::SYS_read | 0x4000_0000, none), ENOSYS);
        assert_eq!(verdict(&compiled, 3, AUDIT_ARCH_I386, none), KILL_PROCESS);
    }
}
