"""child_main functions for tests/test_pyspawner.py: each does one thing pyspawner's
documentation describes, and reports on stdout."""
import errno
import os
import socket
import subprocess
import sys


def dispatch(name, *args):
    globals()[name](*args)


def write_three_ways():
    print("print")
    sys.__stdout__.write("__stdout__\n")
    os.write(1, b"os.write\n")
    print("stderr", file=sys.stderr)


def raise_error():
    raise RuntimeError("the child failed")


def echo_stdin():
    sys.stdout.write(sys.stdin.read())


def exit_code(code):
    sys.exit(code)


def print_environment():
    for key, value in sorted(os.environ.items()):
        print(f"{key}={value}")


def open_fds():
    """Which of 3..19 are open (os.fstat, which opens nothing itself)."""
    open_ones = []
    for fd in range(3, 20):
        try:
            os.fstat(fd)
            open_ones.append(fd)
        except OSError:
            pass
    print(open_ones)


def connect_out():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(("8.8.8.8", 53))
        print("connected")
    except OSError as error:
        print(errno.errorcode[error.errno])


def try_chroot():
    try:
        os.chroot("/tmp")
        print("chrooted")
    except OSError as error:
        print(errno.errorcode[error.errno])


def write_id_maps():
    for name in ("uid_map", "setgroups", "gid_map"):
        try:
            with open(f"/proc/self/{name}", "w") as f:
                f.write("0 0 1\n" if name != "setgroups" else "deny")
            print(name, "written")
        except OSError as error:
            print(name, errno.errorcode[error.errno])


def list_root_and_exec(program):
    print(sorted(os.listdir("/")), os.getcwd(), flush=True)
    os.execv(program, [program])


def getcwd():
    print(os.getcwd())


def run_setuid(*argv):
    print(subprocess.run(argv, capture_output=True).stdout.decode().strip())
