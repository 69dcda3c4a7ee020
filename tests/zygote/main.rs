//! `hatchery-test-zygote`: a zygote with preloaded state and entries that misbehave on
//! purpose, for `tests/entries.rs`. Takes the flags of `hatchery serve`.
//!
//! With `HATCHERY_TEST_ZYGOTE_THREAD=1` its preload starts a thread that never ends, so
//! that the zygote must refuse to fork.

mod shared;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hatchery::{Preloaded, Zygote};
use shared::{Inside, LookupArgs, LookupError, Tampering, HEAP_VALUE, PRELOADED_TEXT, ZYGOTE_SEED};

fn main() -> std::process::ExitCode {
    // The preload: a sealed region, and a value on the heap.
    let preloaded = Arc::new(Preloaded::from_bytes("test-table", PRELOADED_TEXT).expect("preload"));
    let heap = Arc::new(AtomicU64::new(HEAP_VALUE));
    if std::env::var_os("HATCHERY_TEST_ZYGOTE_THREAD").is_some_and(|v| v == "1") {
        std::thread::spawn(|| loop {
            std::thread::park();
        });
    }

    // Random state seeded once in the zygote, which every child would share unless
    // re-seeded after the fork.
    let seed = Arc::new(AtomicU64::new(ZYGOTE_SEED));
    let (reseed, read_seed) = (seed.clone(), seed.clone());
    let (inside_table, inside_heap) = (preloaded.clone(), heap.clone());
    let (tamper_table, tamper_heap) = (preloaded.clone(), heap.clone());
    let lookup_table = preloaded.clone();
    let store_table = preloaded.clone();
    let result = Zygote::builder()
        .after_fork(move || {
            let mut bytes = [0u8; 8];
            if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
                let _ = std::io::Read::read_exact(&mut random, &mut bytes);
            }
            reseed.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        })
        .entry("seed", move |(): ()| -> Result<u64, String> {
            Ok(read_seed.load(Ordering::Relaxed))
        })
        .entry("inside", move |(): ()| -> Result<Inside, String> {
            inside(&inside_table, &inside_heap)
        })
        .entry(
            "lookup",
            move |args: LookupArgs| -> Result<u8, LookupError> {
                lookup_table
                    .get(args.index as usize)
                    .copied()
                    .ok_or(LookupError::OutOfRange {
                        index: args.index,
                        len: lookup_table.len() as u32,
                    })
            },
        )
        .entry("tamper", move |(): ()| -> Result<Tampering, String> {
            Ok(tamper(&tamper_table, &tamper_heap))
        })
        .entry("store", move |(): ()| -> Result<(), String> {
            // A plain store into the read-only mapping: the kernel kills us (SIGSEGV).
            sys::store_byte(store_table.as_ptr(), b'X');
            Err("the store went through".into())
        })
        .entry("echo", |text: String| -> Result<String, String> {
            println!("echo says: {text}");
            Ok(text)
        })
        .entry("panic", |text: String| -> Result<(), String> {
            eprintln!("about to panic");
            panic!("{}", text)
        })
        .entry("exit", |code: i32| -> Result<(), String> {
            println!("exiting with {code}");
            std::process::exit(code)
        })
        .entry("kill-self", |(): ()| -> Result<(), String> {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            Err("still alive".into())
        })
        .entry("garbage", |trailing: bool| -> Result<(), String> {
            // Writes on the result pipe (fd 4) itself, as hostile code can.
            if trailing {
                // A well-formed result (Returned of a unit), and one byte more; the
                // entry's own result then follows too.
                sys::write_result_pipe(&[0, 0, 0xFF]).map_err(|e| e.to_string())?;
                return Ok(());
            }
            sys::write_result_pipe(&[0xFF; 64]).map_err(|e| e.to_string())?;
            std::process::exit(0)
        })
        .entry("big", |len: usize| -> Result<Vec<u8>, String> {
            Ok(vec![0xAB; len])
        })
        .entry("fail", |(): ()| -> Result<(), LookupError> {
            eprintln!("failing on purpose");
            Err(LookupError::OutOfRange { index: 7, len: 3 })
        })
        .serve_from_args();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hatchery-test-zygote: {}", hatchery::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn inside(table: &Preloaded, heap: &AtomicU64) -> Result<Inside, String> {
    let text = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let status = [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ]
    .into_iter()
    .map(|key| {
        let value = text
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name == key).then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "missing".into());
        (key.to_string(), value)
    })
    .collect();
    let namespaces = ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"]
        .into_iter()
        .map(|ns| {
            let link = std::fs::read_link(format!("/proc/self/ns/{ns}"))
                .map(|l| l.display().to_string())
                .unwrap_or_else(|e| format!("error: {e}"));
            (ns.to_string(), link)
        })
        .collect::<BTreeMap<_, _>>();
    // The directory listing's own fd (whose link is the directory) is not inherited.
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .map_or(true, |target| !target.to_string_lossy().ends_with("/fd"))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    Ok(Inside {
        preloaded: table.to_vec(),
        heap_value: heap.load(Ordering::Relaxed),
        status,
        namespaces,
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        hostname: nix::unistd::gethostname()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned(),
        fds,
        env: std::env::vars().collect(),
    })
}

/// Tries every way to change the preloaded region; each field is `Ok` if the write
/// went through, `Err` with the kernel's refusal otherwise.
fn tamper(table: &Preloaded, heap: &AtomicU64) -> Tampering {
    let address = table.as_ptr() as usize;
    let replacement = vec![b'X'; table.len()];
    let process_vm_writev = {
        let local = [std::io::IoSlice::new(&replacement)];
        let remote = [nix::sys::uio::RemoteIoVec {
            base: address,
            len: replacement.len(),
        }];
        nix::sys::uio::process_vm_writev(nix::unistd::getpid(), &local, &remote)
            .map_err(|e| format!("refused: {e}"))
            .and_then(|n| {
                if n == 0 {
                    Err("wrote nothing".into())
                } else {
                    Ok(())
                }
            })
    };
    let proc_self_mem = (|| {
        let mut mem = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/mem")
            .map_err(|e| format!("open refused: {e}"))?;
        mem.seek(SeekFrom::Start(address as u64))
            .map_err(|e| format!("seek refused: {e}"))?;
        mem.write_all(&replacement)
            .map_err(|e| format!("write refused: {e}"))
    })();
    let mprotect =
        hatchery::internals::sys::mprotect_read_write(table).map_err(|e| format!("refused: {e}"));
    let map_files = {
        let start = address & !4095;
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/map_files/{start:x}-{:x}", start + 4096))
            .map(drop)
            .map_err(|e| format!("open refused: {e}"))
    };
    // The child's own copy of the heap changes; the zygote's must not.
    heap.store(999, Ordering::Relaxed);
    Tampering {
        process_vm_writev,
        proc_self_mem,
        mprotect,
        map_files,
        heap_value_after: heap.load(Ordering::Relaxed),
        preloaded_after: table.to_vec(),
    }
}

// The only unsafe code of this program.
mod sys {
    use std::os::fd::BorrowedFd;

    /// Writes `bytes` on fd 4, where an entry's result pipe is.
    pub fn write_result_pipe(bytes: &[u8]) -> nix::Result<usize> {
        // SAFETY: fd 4 is the result pipe, open for the whole life of an entry's
        // process; the borrow ends with the call.
        let pipe = unsafe { BorrowedFd::borrow_raw(4) };
        nix::unistd::write(pipe, bytes)
    }

    /// Stores `value` at `at`, as hostile code in an entry can.
    pub fn store_byte(at: *const u8, value: u8) {
        // SAFETY: not safe at all, on purpose: `at` is in the read-only `Preloaded`
        // mapping, and the test expects the kernel to kill the process at this store.
        unsafe { std::ptr::write_volatile(at.cast_mut(), value) }
    }
}
