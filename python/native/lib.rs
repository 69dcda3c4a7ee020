//! The Python zygote's native half: hatchery's own zygote loop (the one `hatchery serve`
//! runs), as one C function, `hatchery_python_serve`, that a Python process calls through
//! `ctypes.PyDLL` once it has preloaded its imports (`hatchery_sandbox/_zygote_main.py`).
//!
//! Runs in the zygote, which is the Python interpreter's process: the loop never
//! returns to Python there. Each spawn of the entry `python` is a child forked from that
//! process, sandboxed by every hatchery layer (namespaces, root, capabilities,
//! `no_new_privs`, seccomp), in which the entry calls the Python callback with the
//! request's argument bytes: the callback runs `child_main` and hands back its result's
//! bytes through `put`. The GIL is held by the calling thread throughout (`PyDLL`), so
//! the callback runs in the child without waiting for anyone.

use std::ffi::{c_char, c_int, c_void, CStr, OsString};
use std::os::unix::ffi::OsStringExt;

/// Appends `len` bytes at `data` to the `Vec<u8>` that `sink` points to.
type Put = extern "C" fn(sink: *mut c_void, data: *const u8, len: usize);

/// The Python callback: the argument bytes, and where to put the result's bytes. 0: the
/// result is a value; anything else: it is an error's text.
type Call = extern "C" fn(args: *const u8, len: usize, sink: *mut c_void, put: Put) -> c_int;

extern "C" fn put(sink: *mut c_void, data: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: `sink` is the `&mut Vec<u8>` that `call_python` passes to the callback,
    // alive and not otherwise borrowed while the callback runs (the only time `put` is
    // called); `data` points to `len` readable bytes of a Python bytes object that the
    // callback holds for the duration of this call.
    let (out, bytes) = unsafe {
        (
            &mut *(sink as *mut Vec<u8>),
            std::slice::from_raw_parts(data, len),
        )
    };
    out.extend_from_slice(bytes);
}

fn call_python(call: Call, args: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let code = call(
        args.as_ptr(),
        args.len(),
        &mut out as *mut Vec<u8> as *mut c_void,
        put,
    );
    match code {
        0 => Ok(out),
        _ => Err(String::from_utf8_lossy(&out).into_owned()),
    }
}

/// Serves the entry `python` with the flags of `hatchery serve` in `argv` (`argv[0]` is
/// the program's name), until SIGTERM or SIGINT. Returns 0 after a clean shutdown, 1
/// after an error (printed on stderr), 2 for a usage error.
///
/// # Safety
/// `argv` points to `argc` valid NUL-terminated strings; `call` is a function that
/// stays valid for the life of the process.
#[no_mangle]
pub unsafe extern "C" fn hatchery_python_serve(
    argc: c_int,
    argv: *const *const c_char,
    call: Call,
) -> c_int {
    let args: Vec<OsString> = (0..argc.max(0) as usize)
        // SAFETY: the caller promises `argc` valid C strings at `argv`.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) })
        .map(|arg| OsString::from_vec(arg.to_bytes().to_vec()))
        .collect();
    let result = hatchery::Zygote::builder()
        .entry("python", move |args: Vec<u8>| call_python(call, &args))
        .serve_from_args_of(args);
    match result {
        Ok(()) => 0,
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("hatchery python zygote: {text}");
            1
        }
    }
}
