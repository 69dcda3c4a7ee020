"""child_main functions for tests/test_zygote.py, imported by the Python zygote."""
import os
import pickle
import random
import socket
import sys

#: The thread-count variable as the preload saw it.
OPENBLAS_AT_IMPORT = os.environ.get("OPENBLAS_NUM_THREADS")
RESULT_FD = 4
#: Set in the child by an os.register_at_fork hook, as after os.fork.
AT_FORK = []
os.register_at_fork(before=lambda: AT_FORK.append("before"),
                    after_in_child=lambda: AT_FORK.append("after_in_child"))


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()


def inside(*args):
    """What the child sees."""
    print("to stdout", flush=False)
    sys.__stdout__.write("through sys.__stdout__\n")
    os.write(2, b"through os.write\n")
    return {
        "args": list(args),
        "preloaded": "xml.dom.minidom" in sys.modules,
        "openblas": OPENBLAS_AT_IMPORT,
        "uid": os.getuid(), "gid": os.getgid(),
        "CapEff": status("CapEff"), "CapBnd": status("CapBnd"),
        "NoNewPrivs": status("NoNewPrivs"), "Seccomp": status("Seccomp"),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "env": dict(os.environ), "cwd": os.getcwd(),
        "random": random.random(),
        "at_fork": AT_FORK,
    }


def fail(message):
    raise ValueError(message)


def exit_with(code):
    sys.exit(code)


def not_json():
    return float("nan")


def write_result(data):
    """A hostile child: writes `data` as its result itself, and exits 0."""
    os.write(RESULT_FD, data)
    os._exit(0)


def write_huge(size):
    chunk = b"\x00" * 65536
    for _ in range(size // len(chunk)):
        os.write(RESULT_FD, chunk)
    os._exit(0)


class Evil:
    """Unpickling it would create a file: the parent must never do so."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_pickle(path):
    payload = pickle.dumps(Evil(path))
    inner = bytes([len(payload)]) if len(payload) < 128 else None
    assert inner is not None
    write_result(b"\x00" + bytes([len(payload) + 1]) + inner + payload)
