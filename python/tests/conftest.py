"""Fixtures: a `hatchery serve` of the test's own on a socket in a temporary directory.

The daemon is `$HATCHERY_BIN`, else the repository's `target/debug/hatchery` (test.sh
builds it first). Without root or the binary the daemon tests skip, unless
HATCHERY_TESTS_MUST_RUN=1 (CI), where they fail.
"""
import os
import pathlib
import socket
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def build_binary():
    """build_binary(name): another binary of the build, beside the hatchery one."""
    return lambda name: os.path.join(os.path.dirname(_binary()), name)


def _binary():
    return os.environ.get("HATCHERY_BIN") or str(REPO / "target" / "debug" / "hatchery")


def _cannot_run(why):
    if os.environ.get("HATCHERY_TESTS_MUST_RUN") == "1":
        pytest.fail(f"{why} (HATCHERY_TESTS_MUST_RUN=1)")
    pytest.skip(why)


class Daemon:
    def __init__(self, process, socket_path):
        self.process, self.socket = process, socket_path

    def client(self):
        from hatchery_sandbox import Client

        return Client.connect(self.socket)


@pytest.fixture
def start_daemon(tmp_path):
    """start_daemon(*serve_args) → a Daemon; each is stopped with SIGTERM at the end."""
    started = []

    def start(*args, program=None, socket_dir=None):
        """`hatchery serve ARGS`, or `program ARGS` (a zygote taking serve's flags), its
        socket in `socket_dir` (default: the test's temporary directory)."""
        binary = program or _binary()
        if os.geteuid() != 0:
            _cannot_run("the daemon tests need root (user namespaces, cgroups)")
        if not os.access(binary, os.X_OK):
            _cannot_run(f"no hatchery binary at {binary} (cargo build, or set HATCHERY_BIN)")
        path = os.path.join(socket_dir or tmp_path, f"hatchery-{len(started)}.sock")
        env = dict(os.environ, RUST_LOG="warn")
        command = [binary] if program else [binary, "serve"]
        process = subprocess.Popen([*command, "--socket", path, *args], env=env,
                                   stdin=subprocess.DEVNULL)
        started.append(process)
        deadline = time.monotonic() + 10
        while True:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(path)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"the daemon exited before it listened: {process.returncode}")
                if time.monotonic() > deadline:
                    pytest.fail("the daemon did not start listening")
                time.sleep(0.01)
            finally:
                probe.close()
        return Daemon(process, path)

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
        process.wait(10)


@pytest.fixture
def daemon(start_daemon):
    return start_daemon()


@pytest.fixture
def client(daemon):
    with daemon.client() as client:
        yield client
