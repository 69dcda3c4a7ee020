"""The Python zygote: a long-lived Python process that imports modules once and serves
spawns through hatchery's zygote loop; each child is forked from it, sandboxed by every
hatchery layer, and calls ``child_main(*args)``.

Arguments go to the child pickled (the parent is trusted). Nothing the child sends back
is ever unpickled: ``child_main``'s value comes back as JSON, read up to a bound and
decoded strictly, so a hostile child can make its own call fail and nothing more.

>>> with Zygote(child_main="mypkg.jobs:transform",             # doctest: +SKIP
...             preload_imports=["numpy", "pandas"]) as zygote:
...     zygote.call({"column": "price"})
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Sequence

from . import _wire
from . import types as t
from .client import ChildProcess, Client
from .errors import HatcheryError

#: The most result bytes read from a child unless told otherwise: 16 MiB, as the Rust
#: client's ``DEFAULT_RESULT_LIMIT``.
DEFAULT_RESULT_LIMIT = 16 << 20

#: The library file of the native half (``python/native``).
NATIVE_LIBRARY = "libhatchery_python.so"


class ZygoteError(HatcheryError):
    """The zygote could not start (its stderr is in the message)."""


class ChildFailed(HatcheryError):
    """``child_main`` raised: ``traceback`` is the child's (also on its stderr)."""

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback.rstrip().splitlines()[-1] if traceback.strip() else
                         "child_main raised")
        self.traceback = traceback


class ResultRefused(HatcheryError):
    """What the child sent back is not a result: too large, malformed, not JSON. The
    child is not trusted; its bytes were not interpreted any further."""


def native_library() -> str:
    """The native half: ``$HATCHERY_PYTHON_LIBRARY``, else the one installed in the
    package."""
    named = os.environ.get("HATCHERY_PYTHON_LIBRARY")
    if named:
        return named
    shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), NATIVE_LIBRARY)
    if os.path.exists(shipped):
        return shipped
    raise ZygoteError(f"the native library {NATIVE_LIBRARY} is not installed with the "
                      "package (pip install ./python builds it with cargo) and "
                      "HATCHERY_PYTHON_LIBRARY is not set")


def decode_result(data: bytes, limit: int = DEFAULT_RESULT_LIMIT) -> Any:
    """The value in a child's result pipe bytes (a postcard ``EntryResult`` around JSON),
    read strictly: anything else raises :class:`ResultRefused`, a raised exception in the
    child :class:`ChildFailed`."""
    if len(data) > limit:
        raise ResultRefused(f"the child sent more than {limit} result bytes")
    if not data:
        raise ResultRefused("the child sent no result (it exited before child_main returned)")
    reader = _wire.Reader(data)
    try:
        tag = reader.variant(["Returned", "Failed", "Panicked"])
        if tag == "Returned":
            inner = _wire.Reader(reader.blob())
            payload = inner.blob()
            if inner.pos != len(inner.data):
                raise ValueError("trailing bytes in the value")
        elif tag == "Failed":
            message = reader.string()
            reader.blob()
        else:
            message = reader.string()
        if reader.pos != len(data):
            raise ValueError(f"{len(data) - reader.pos} trailing bytes")
    except (ValueError, UnicodeDecodeError) as error:
        raise ResultRefused(f"the child's result is malformed: {error}") from None
    if tag != "Returned":
        raise ChildFailed(message)
    try:
        text = payload.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise ResultRefused(f"the child's result is not JSON: {error}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class PythonChild:
    """A child of the Python zygote: a :class:`ChildProcess` (``child.process``: pid,
    pipes, ``wait``, ``kill``) and the result of its ``child_main``."""

    def __init__(self, process: ChildProcess, limit: int) -> None:
        self.process, self._limit = process, limit
        self.pid, self.stdin, self.stdout, self.stderr = (
            process.pid, process.stdin, process.stdout, process.stderr)

    def result(self, timeout: Optional[float] = None) -> Any:
        """``child_main``'s value, once the child has ended: raises
        :class:`ChildFailed` if it raised, :class:`ResultRefused` if what came back is no
        result."""
        pipe = self.process.result
        assert pipe is not None, "a child of the Python zygote has a result pipe"
        data = pipe.read(self._limit + 1)
        pipe.close()
        self.process.wait(timeout)
        return decode_result(data, self._limit)

    def wait(self, timeout: Optional[float] = None) -> t.Verdict:
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()


class Zygote:
    """Starts a Python zygote and connects to it.

    ``child_main`` is ``"module:function"``; ``preload_imports`` are imported once, in
    the zygote; ``environment`` is every child's exact environment (and the zygote's,
    plus the thread-count variables); ``executable`` the Python that runs the zygote
    (default: this one; it must be able to import this package). ``serve_args`` are
    more flags of ``hatchery serve`` (``--default-memory 1G``, ``--host-uid N``...);
    ``python_path`` directories the zygote imports from (its ``PYTHONPATH``, which the
    children's environment does not get).
    """

    def __init__(self, child_main: str, preload_imports: Sequence[str] = (),
                 environment: Optional[Mapping[str, str]] = None,
                 executable: Optional[str] = None, serve_args: Sequence[str] = (),
                 socket_path: Optional[str] = None, python_path: Sequence[str] = (),
                 start_timeout: float = 60.0, _no_result: bool = False) -> None:
        self.child_main = child_main
        self.environment: Dict[str, str] = dict(environment or {})
        self._dir = None
        if socket_path is None:
            self._dir = tempfile.mkdtemp(prefix="hatchery-python-zygote-")
            socket_path = os.path.join(self._dir, "zygote.sock")
        self.socket_path = socket_path
        command = [executable or sys.executable, "-m", "hatchery_sandbox._zygote_main",
                   "--child-main", child_main, "--library", native_library()]
        for module in preload_imports:
            command += ["--preload", module]
        if _no_result:
            command.append("--no-result")
        command += ["--", "--socket", socket_path, *serve_args]
        zygote_env = dict(self.environment)
        # The zygote process must find this package, wherever the caller found it.
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        zygote_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, *python_path, zygote_env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, env=zygote_env, stdin=subprocess.DEVNULL,
                                        stderr=self._stderr)
        try:
            self.client = self._connect(start_timeout)
        except BaseException:
            self.close()
            raise

    def _connect(self, timeout: float) -> Client:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self._stderr.seek(0)
                said = self._stderr.read().decode(errors="replace").strip()
                raise ZygoteError(f"the Python zygote exited with code "
                                  f"{self.process.returncode}: {said}")
            if os.path.exists(self.socket_path):
                try:
                    return Client.connect(self.socket_path)
                except HatcheryError:
                    pass
            if time.monotonic() > deadline:
                raise ZygoteError(f"the Python zygote did not listen within {timeout} s")
            time.sleep(0.005)

    def spawn(self, *args: Any, stdin: t.StdioSpec = t.DEVNULL,
              stdout: t.StdioSpec = t.PIPE, stderr: t.StdioSpec = t.PIPE,
              cwd: t.PathLike = "/", sandbox: Optional[t.SandboxConfig] = None,
              result_limit: int = DEFAULT_RESULT_LIMIT, process_name: Optional[str] = None,
              **sandbox_fields: Any) -> PythonChild:
        """Starts a child that calls ``child_main(*args)``; ``args`` are pickled (at most
        about 128 KiB of them: one request is one datagram). ``process_name`` is what
        ``ps`` shows for it."""
        if sandbox is None:
            limits = sandbox_fields.pop("limits", None)
            if isinstance(limits, dict):
                limits = t.Limits.parse(**limits)
            if limits is not None:
                sandbox_fields["limits"] = limits
            sandbox = t.SandboxConfig(**sandbox_fields)
        elif sandbox_fields:
            raise TypeError("give sandbox=SandboxConfig(...) or its fields, not both")
        payload = pickle.dumps({"args": args, "process_name": process_name},
                               protocol=pickle.HIGHEST_PROTOCOL)
        request = t.SpawnRequest(command=t.Entry("python", _wire.blob(payload)),
                                 env=self.environment, cwd=cwd, stdin=stdin, stdout=stdout,
                                 stderr=stderr, sandbox=sandbox)
        return PythonChild(self.client.spawn(request), result_limit)

    def call(self, *args: Any, timeout: Optional[float] = None, **spawn_args: Any) -> Any:
        """``child_main(*args)`` in a new sandboxed child: its value."""
        child = self.spawn(*args, **spawn_args)
        try:
            return child.result(timeout)
        finally:
            child.process.close()

    def close(self) -> None:
        """Closes the connection and stops the zygote (SIGTERM)."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "Zygote":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
