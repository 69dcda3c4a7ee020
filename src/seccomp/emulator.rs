//! Test only: a classic BPF interpreter that runs a compiled program the way the kernel
//! runs a seccomp filter, so that the compiler's tests can ask what verdict a syscall
//! gets without installing anything, and the verdicts they compare with.

use seccompiler::sock_filter;

use super::CompiledSeccomp;

/// Runs classic BPF the way the kernel runs a seccomp program, for the few
/// instructions seccompiler and the guard emit.
pub(super) fn run(program: &[sock_filter], nr: i32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for arg in args {
        data.extend_from_slice(&arg.to_ne_bytes());
    }
    let mut accumulator = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = &program[pc];
        pc += 1;
        match insn.code {
            0x20 => {
                let at = insn.k as usize;
                accumulator = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
            }
            0x54 => accumulator &= insn.k,
            0x05 => pc += insn.k as usize,
            0x15 | 0x25 | 0x35 => {
                let taken = match insn.code {
                    0x15 => accumulator == insn.k,
                    0x25 => accumulator > insn.k,
                    _ => accumulator >= insn.k,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            0x06 => return insn.k,
            code => panic!("instruction {code:#x} not emulated"),
        }
    }
}

/// The verdict of a stack of programs: the kernel runs them all and keeps the most
/// severe action (lowest as a signed number); on a tie, the newest filter's.
pub(super) fn verdict(compiled: &CompiledSeccomp, nr: i64, arch: u32, args: [u64; 6]) -> u32 {
    let nr = i32::try_from(nr).unwrap();
    let mut best: Option<u32> = None;
    for program in compiled.programs().iter().rev() {
        let result = run(program, nr, arch, args);
        let severity = |value: u32| (value & 0xffff_0000) as i32;
        if best.is_none_or(|best| severity(result) < severity(best)) {
            best = Some(result);
        }
    }
    best.unwrap()
}

pub(super) const ALLOW: u32 = 0x7fff_0000;
pub(super) const EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
pub(super) const ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
pub(super) const KILL_PROCESS: u32 = 0x8000_0000;
