"""The Python zygote's process: ``python -m hatchery_sandbox._zygote_main --preload MOD
... --child-main MODULE:FUNCTION [--library PATH] -- SERVE_FLAGS...``, started by
:class:`hatchery_sandbox.Zygote` (or by a service manager, with the flags of
``hatchery serve`` after ``--``).

It limits native thread pools, imports the preload modules once, checks that it is
single-threaded, then hands its process to hatchery's zygote loop (the native library,
``python/native``), which never returns here. Each child, forked from this interpreter
and sandboxed, runs :func:`_child`: Python's own after-fork work, then
``child_main(*args)`` with the arguments the (trusted) parent pickled; its value goes back
as JSON, never pickled.
"""
import argparse
import ctypes
import gc
import importlib
import json
import os
import pickle
import sys
import threading
import traceback

#: Set before the preload, unless the environment sets them: numpy's BLAS (OpenBLAS,
#: MKL, BLIS), OpenMP and numexpr start a thread pool at import otherwise, and a process
#: with threads cannot be forked safely.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

#: Where the result pipe is in a child (``RESULT_FD`` of ``src/sandbox/entry.rs``).
RESULT_FD = 4

#: The exit code when the preload leaves threads behind (EX_SOFTWARE).
EXIT_THREADED = 70

PUT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
CALL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, PUT)


def thread_count():
    """The process's threads, as the kernel counts them (numpy's BLAS threads are no
    Python threads, so ``threading`` alone would miss them)."""
    return len(os.listdir("/proc/self/task"))


def resolve(child_main):
    module_name, _, function = child_main.partition(":")
    if not module_name or not function:
        raise SystemExit(f"--child-main {child_main!r}: expected MODULE:FUNCTION")
    target = importlib.import_module(module_name)
    for part in function.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise SystemExit(f"--child-main {child_main!r} is not callable")
    return target


def c_environment():
    """The C environment (which hatchery set to the request's) as pairs of bytes."""
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    pairs, i = [], 0
    while environ[i] is not None:
        key, _, value = environ[i].partition(b"=")
        pairs.append((key, value))
        i += 1
    return pairs


def adopt_environment():
    """``os.environ`` is a copy made when the interpreter started: make it the request's
    environment, exactly (nothing of the zygote's survives)."""
    pairs = c_environment()
    os.environ.clear()
    for key, value in pairs:
        os.environb[key] = value


def after_fork():
    """What ``os.fork`` does around a fork, all of it in the child: Python's internal
    locks and threading state, and the ``os.register_at_fork`` hooks (``random``
    re-seeds in its ``after_in_child``).

    ``PyOS_AfterFork_Child`` releases what ``PyOS_BeforeFork`` took (Python 3.13 checks
    that the import lock and the runtime's mutexes are held by this thread), but the
    fork was hatchery's, with no Python hook in the parent. The zygote was
    single-threaded and outside any Python code at the fork (blocked in the loop), so
    no lock was held there: taking them now, in the child, and releasing them at once
    is what a fork right after ``PyOS_BeforeFork`` would have left. The ``before``
    hooks run here too, which pairs them with their ``after_in_child`` (``logging``
    takes its handlers' locks and re-creates them)."""
    ctypes.pythonapi.PyOS_BeforeFork()
    ctypes.pythonapi.PyOS_AfterFork_Child()


def set_process_name(name):
    """The name ``ps`` and ``/proc/PID/comm`` show (``prctl(PR_SET_NAME)``, 15 bytes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, os.fsencode(name)[:15], 0, 0, 0)


def make_child(child_main, no_result):
    """The callback each child runs. With ``no_result`` (pyspawner's behaviour), the
    result pipe is closed before ``child_main``, and the child exits 0 when it returns,
    1 when it raises, never returning to hatchery."""

    def child(args_pointer, length, sink, put):
        after_fork()
        adopt_environment()
        code, data = 0, b""
        try:
            call = pickle.loads(ctypes.string_at(args_pointer, length))
            if call.get("process_name"):
                set_process_name(call["process_name"])
            if no_result:
                os.close(RESULT_FD)
                try:
                    child_main(*call["args"])
                except SystemExit:
                    raise
                except BaseException:
                    traceback.print_exc()
                    flush()
                    os._exit(1)
                flush()
                os._exit(0)
            result = child_main(*call["args"])
            data = json.dumps(result, allow_nan=False, separators=(",", ":")).encode()
        except SystemExit as exit:
            # sys.exit(n) in child_main: the child exits with n, as a process would.
            flush()
            status = exit.code
            if status is None or isinstance(status, int):
                os._exit(status or 0)
            print(status, file=sys.stderr)
            flush()
            os._exit(1)
        except BaseException:
            traceback.print_exc()
            code, data = 1, traceback.format_exc().encode("utf-8", "replace")
        flush()
        put(sink, data, len(data))
        return code

    return child


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: nothing more to say on it
            pass


def main(argv):
    parser = argparse.ArgumentParser(prog="hatchery-python-zygote")
    parser.add_argument("--preload", action="append", default=[])
    parser.add_argument("--child-main", required=True)
    parser.add_argument("--library", default=None,
                        help="the native half (default: the one installed in the package)")
    parser.add_argument("--no-result", action="store_true")
    parser.add_argument("serve", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    serve = options.serve[1:] if options.serve[:1] == ["--"] else options.serve

    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    for module in options.preload:
        importlib.import_module(module)
    child_main = resolve(options.child_main)
    if options.library is None:
        from hatchery_sandbox.zygote import native_library

        options.library = native_library()
    library = ctypes.PyDLL(options.library)

    # Whatever the preload allocated is kept out of the collector's way: a child that
    # runs a collection would otherwise write to (copy) every preloaded page.
    gc.collect()
    gc.freeze()

    threads = thread_count()
    if threads > 1:
        names = ", ".join(t.name for t in threading.enumerate()) or "none"
        print(f"hatchery python zygote: the preload left {threads} threads running "
              f"(Python threads: {names}); a process with threads cannot fork safely. "
              f"Native pools (BLAS, OpenMP) obey {', '.join(THREAD_VARIABLES)}=1, set "
              "by default; stop any thread the preload starts.", file=sys.stderr)
        return EXIT_THREADED

    library.hatchery_python_serve.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p),
                                              CALL]
    library.hatchery_python_serve.restype = ctypes.c_int
    args = [b"hatchery-python-zygote", *(os.fsencode(a) for a in serve)]
    callback = CALL(make_child(child_main, options.no_result))
    flush()
    return library.hatchery_python_serve(len(args), (ctypes.c_char_p * len(args))(*args),
                                         callback)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
