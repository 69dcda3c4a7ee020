"""Drives pyspawner for benches/spawn.rs: one sandboxed child per "go" line on stdin.

Usage: pyspawner_driver.py true|echo. Prints "ready" once its pyspawner runs, then for
each "go" spawns one child with the default sandbox (no network), reads its stdout and
stderr to end of file, waits for it and prints "ok". The child runs `child_true` (returns
at once) or `child_echo` (writes one line), both in this file's module.
"""

import os
import sys

import pyspawner


def child_true():
    pass


def child_echo():
    sys.stdout.write("hello\n")
    sys.stdout.flush()


def main():
    workload = sys.argv[1]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    with pyspawner.Client(
        child_main="pyspawner_driver.child_" + workload,
        environment={
            "PYTHONPATH": os.path.dirname(os.path.abspath(__file__)),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
    ) as client:
        print("ready", flush=True)
        for _line in sys.stdin:
            child = client.spawn_child(sandbox_config=pyspawner.SandboxConfig())
            child.stdin.close()
            out = child.stdout.read()
            child.stderr.read()
            _pid, status = child.wait(0)
            expected = b"hello\n" if workload == "echo" else b""
            if status != 0 or out != expected:
                print("failed: status %d, stdout %r" % (status, out), flush=True)
                return
            print("ok", flush=True)


if __name__ == "__main__":
    main()
