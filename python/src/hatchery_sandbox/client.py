"""The client: one :class:`Client` is one connection to a hatchery daemon, running many
children at once and shared between threads; a :class:`ChildProcess` is one sandbox.

A background thread reads every event as soon as the daemon sends it, so events never
pile up on the daemon's side (past 4,096 unread events the daemon drops a connection and
kills every child on it). It hands each event to whoever waits for it: a ``spawn`` call
for ``Spawned``/``Error``, a :class:`ChildProcess` for ``Exited``, a ``status`` call for
``Status``.

Reading alone is not enough under the GIL: a thread that sends requests in a loop keeps
the reader from running for milliseconds at a time, while each request may be answered
by an event. So at most :data:`MAX_IN_FLIGHT` requests are sent after the last moment
the reader had read everything; past that a sender waits until it has again.
"""
from __future__ import annotations

import errno as _errno
import io
import os
import selectors
import signal as _signal
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _wire
from . import types as t
from .errors import (ConnectionClosed, HatcheryError, PermissionDenied, ProtocolError,
                     TimeoutExpired, Unreachable, VersionMismatch, spawn_error)

#: The environment variable naming the default socket.
SOCKET_ENV = "HATCHERY_SOCKET"
#: A root daemon's socket (docs/deploy.md's systemd unit).
SYSTEM_SOCKET = "/run/hatchery/hatchery.sock"
#: Requests sent since the reader last found nothing to read, before a sender waits for
#: it (well below the daemon's 4,096 unread events; each request has at most one event
#: as its immediate answer).
MAX_IN_FLIGHT = 512


def default_socket_path() -> str:
    """The socket used when none is named, by the rules of every hatchery client:
    ``$HATCHERY_SOCKET``, else ``/run/hatchery/hatchery.sock`` for root, else
    ``$XDG_RUNTIME_DIR/hatchery.sock``, else ``/tmp/hatchery-<euid>.sock``."""
    named = os.environ.get(SOCKET_ENV)
    if named:
        return named
    if os.geteuid() == 0:
        return SYSTEM_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "hatchery.sock")
    return f"/tmp/hatchery-{os.geteuid()}.sock"


class _ChildState:
    """What the reader knows of one child: its verdict, once ``Exited`` came."""

    __slots__ = ("verdict", "error", "callbacks")

    def __init__(self) -> None:
        self.verdict: Optional[t.Verdict] = None
        self.error: Optional[HatcheryError] = None
        self.callbacks: List[Callable[[], None]] = []


class Client:
    """A connection to a hatchery daemon. Thread-safe; a context manager.

    >>> with Client.connect("/run/hatchery/hatchery.sock") as client:  # doctest: +SKIP
    ...     print(client.run(["/bin/echo", "hi"]).stdout)
    b'hi\\n'
    """

    def __init__(self, sock: socket.socket, server: str) -> None:
        """Use :meth:`connect`; ``sock`` is a connection whose handshake is done."""
        self.server = server
        self._sock = sock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._next_id = 1
        self._answers: Dict[int, Optional[Tuple[tuple, List[int]]]] = {}
        self._children: Dict[int, _ChildState] = {}
        self._closed: Optional[HatcheryError] = None
        self._reader_idle = False
        self._sent_since_idle = 0
        self._reader = threading.Thread(target=self._read_events, name="hatchery-reader",
                                        daemon=True)
        self._reader.start()

    # ---- connecting ----

    @classmethod
    def connect(cls, path: Optional[Union[str, "os.PathLike[str]"]] = None, *,
                name: str = "hatchery-sandbox (python)") -> "Client":
        """Connects to the daemon at ``path``, or at :func:`default_socket_path`. There
        is no fallback: a socket nobody accepts on raises :class:`Unreachable`."""
        path = os.fspath(path) if path is not None else default_socket_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # close-on-exec
        try:
            sock.connect(path)
        except OSError as error:
            sock.close()
            raise Unreachable(path, error) from None
        try:
            return cls(sock, cls._handshake(sock, name))
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _handshake(sock: socket.socket, name: str) -> str:
        try:
            _wire.send(sock, _wire.hello(name, _wire.PROTOCOL_VERSION))
            received = _wire.recv(sock)
        except OSError as error:
            raise ConnectionClosed(f"the handshake failed: {error}") from error
        except ValueError as error:
            raise ProtocolError(f"the handshake failed: {error}") from error
        if received is None:
            raise ConnectionClosed("the daemon closed the connection during the handshake")
        data, fds = received
        for fd in fds:
            os.close(fd)
        try:
            event = _wire.decode_event(data)
        except ValueError as error:
            raise ProtocolError(f"the daemon's answer to Hello: {error}") from error
        if event[0] == "welcome":
            return event[2]
        if event[0] == "error":
            kind, message = event[2], event[3]
            if kind[0] == "VersionMismatch":
                raise VersionMismatch(message, kind[1], _wire.PROTOCOL_VERSION)
            if kind[0] == "PermissionDenied":
                raise PermissionDenied(message)
            raise ConnectionClosed(f"the daemon refused the handshake: {message}")
        raise ProtocolError(f"unexpected answer to Hello: {event[0]}")

    # ---- the reader ----

    def _read_events(self) -> None:
        ended: HatcheryError
        while True:
            try:
                try:
                    received = _wire.recv(self._sock, wait=False)
                except BlockingIOError:
                    with self._lock:
                        self._reader_idle, self._sent_since_idle = True, 0
                        self._changed.notify_all()
                    received = _wire.recv(self._sock)
                    with self._lock:
                        self._reader_idle = False
            except OSError as error:
                ended = ConnectionClosed(f"the connection failed: {error}")
                break
            except ValueError as error:
                ended = ProtocolError(str(error))
                break
            if received is None:
                ended = ConnectionClosed("the daemon closed the connection")
                break
            data, fds = received
            try:
                event = _wire.decode_event(data)
            except ValueError as error:
                for fd in fds:
                    os.close(fd)
                ended = ProtocolError(f"an event from the daemon does not decode: {error}")
                break
            if event[0] == "error" and event[1] is None:
                ended = ConnectionClosed(f"the daemon closed the connection: {event[3]}")
                break
            self._deliver(event, fds)
        self._end(ended)

    def _deliver(self, event: tuple, fds: List[int]) -> None:
        callbacks: List[Callable[[], None]] = []
        with self._lock:
            kind, request_id = event[0], event[1]
            if kind in ("spawned", "error", "status") and request_id in self._answers:
                self._answers[request_id] = (event, fds)
                fds = []
                if kind == "error":
                    self._children.pop(request_id, None)
            elif kind == "exited" and request_id in self._children:
                state = self._children.pop(request_id)
                state.verdict = event[2]
                callbacks, state.callbacks = state.callbacks, []
            # Anything else is no one's: an error about a signal to a child that has
            # already ended (UnknownId), or the fds of an abandoned spawn.
            self._changed.notify_all()
        for fd in fds:
            os.close(fd)
        for callback in callbacks:
            callback()

    def _end(self, reason: HatcheryError) -> None:
        callbacks: List[Callable[[], None]] = []
        with self._lock:
            if self._closed is None:
                self._closed = reason
            for state in self._children.values():
                state.error = self._closed
                callbacks.extend(state.callbacks)
                state.callbacks = []
            self._children.clear()
            self._changed.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for callback in callbacks:
            callback()

    # ---- requests ----

    def _send(self, message: bytes, fds: Sequence[int] = ()) -> None:
        with self._send_lock:
            with self._lock:
                while (not self._reader_idle and self._sent_since_idle >= MAX_IN_FLIGHT
                       and self._closed is None):
                    self._changed.wait()
                self._sent_since_idle += 1
            if self._closed is not None:
                raise self._closed_error()
            try:
                _wire.send(self._sock, message, fds)
            except OSError as error:
                if error.errno == _errno.EMSGSIZE:
                    raise ProtocolError(f"the request is too large to send ({len(message)} "
                                        f"bytes; at most {_wire.MAX_MESSAGE_LEN})") from None
                raise ConnectionClosed(f"sending to the daemon failed: {error}") from None

    def _closed_error(self) -> HatcheryError:
        closed = self._closed
        assert closed is not None
        return type(closed)(*closed.args)

    def spawn(self, args: Union[t.SpawnRequest, t.PathLike, Sequence[t.PathLike]], *,
              env: Optional[t.Env] = None, cwd: t.PathLike = "/",
              stdin: t.StdioSpec = t.PIPE, stdout: t.StdioSpec = t.PIPE,
              stderr: t.StdioSpec = t.PIPE, sandbox: Optional[t.SandboxConfig] = None,
              limits: Union[t.Limits, Dict[str, Union[str, int]], None] = None,
              **sandbox_fields: Any) -> "ChildProcess":
        """Starts a sandboxed child and returns once its program runs.

        ``args`` is a whole :class:`SpawnRequest`, or an argv (the other arguments then
        build the request: ``env`` is the child's complete environment, empty by
        default; ``limits`` a :class:`Limits` or ``{"memory": "256M", ...}`` in the
        CLI's units; any other keyword is a :class:`SandboxConfig` field). Raises a
        :class:`SpawnError` subclass naming what failed."""
        if isinstance(args, t.SpawnRequest):
            if env is not None or sandbox is not None or limits is not None or sandbox_fields:
                raise TypeError("give a SpawnRequest alone, or an argv with keywords")
            request = args
        else:
            if sandbox is None:
                if isinstance(limits, dict):
                    limits = t.Limits.parse(**limits)
                if limits is not None:
                    sandbox_fields["limits"] = limits
                sandbox = t.SandboxConfig(**sandbox_fields)
            elif sandbox_fields or limits is not None:
                raise TypeError("give sandbox=SandboxConfig(...) or its fields, not both")
            request = t.SpawnRequest.exec(args, env=env or (), cwd=cwd, stdin=stdin,
                                          stdout=stdout, stderr=stderr, sandbox=sandbox)
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
        message, fds = _wire.spawn(request_id, request)
        state = _ChildState()
        with self._lock:
            if self._closed is not None:
                raise self._closed_error()
            self._answers[request_id] = None
            self._children[request_id] = state
        try:
            self._send(message, fds)
            with self._lock:
                while self._answers[request_id] is None and self._closed is None:
                    self._changed.wait()
                answer = self._answers.pop(request_id)
                if answer is None:
                    self._children.pop(request_id, None)
                    raise self._closed_error()
        except BaseException:
            with self._lock:
                self._answers.pop(request_id, None)
                self._children.pop(request_id, None)
            raise
        event, received = answer
        if event[0] == "error":
            raise spawn_error(event[2], event[3])
        command = request.command
        argv = list(command.argv) if isinstance(command, t.Exec) else [command.name]
        child = ChildProcess(self, request_id, event[2], dict(zip(event[3], received)),
                             state, argv)
        child.network = event[4]
        return child

    def status(self) -> t.DaemonStatus:
        """The daemon's report on itself (``hatchery status``): its version, uptime,
        the live sandboxes this client's uid may see (every one for root and the
        daemon's own uid, only this uid's own otherwise), its warm pool, veth leases
        and spawn counters."""
        with self._lock:
            if self._closed is not None:
                raise self._closed_error()
            request_id = self._next_id
            self._next_id += 1
            self._answers[request_id] = None
        try:
            self._send(_wire.status_request(request_id))
            with self._lock:
                while self._answers[request_id] is None and self._closed is None:
                    self._changed.wait()
                answer = self._answers.pop(request_id)
        except BaseException:
            with self._lock:
                self._answers.pop(request_id, None)
            raise
        if answer is None:
            raise self._closed_error()
        event, received = answer
        for fd in received:
            os.close(fd)
        if event[0] == "error":
            raise spawn_error(event[2], event[3])
        if event[0] != "status":
            raise ProtocolError(f"unexpected answer to Status: {event[0]}")
        return event[2]

    def run(self, args: Union[t.SpawnRequest, t.PathLike, Sequence[t.PathLike]], *,
            input: Optional[bytes] = None, timeout: Optional[float] = None,
            check: bool = False, **spawn_args: Any) -> t.CompletedProcess:
        """Like ``subprocess.run``: spawns, feeds ``input``, collects stdout and stderr
        (piped unless given) and waits. On ``timeout`` the sandbox is killed and
        :class:`TimeoutExpired` raised; with ``check``, a child that did not exit 0
        raises :class:`ProcessFailed`."""
        if not isinstance(args, t.SpawnRequest):
            spawn_args.setdefault("stdin", t.PIPE if input is not None else t.DEVNULL)
        with self.spawn(args, **spawn_args) as child:
            try:
                stdout, stderr = child.communicate(input, timeout)
            except TimeoutExpired:
                child.kill()
                child.wait()
                raise
            result = t.CompletedProcess(child.args, stdout, stderr, child.wait())
        if check:
            result.check_returncode()
        return result

    def output(self, args: Union[t.SpawnRequest, t.PathLike, Sequence[t.PathLike]],
               **run_args: Any) -> bytes:
        """The child's stdout; raises :class:`ProcessFailed` unless it exited 0."""
        return self.run(args, check=True, **run_args).stdout or b""

    def _signal(self, request_id: int, signo: int) -> None:
        signo = int(signo)
        if signo <= 0 or signo > _signal.SIGRTMAX or signo == _signal.SIGSTOP:
            raise ValueError(f"signal {signo} cannot be sent to a sandbox (SIGSTOP would stop "
                             "only its init: send SIGTSTP)")
        self._send(_wire.signal_request(request_id, signo))

    # ---- closing ----

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed is not None

    def close(self) -> None:
        """Ends the connection; its children with ``kill_on_disconnect`` are killed."""
        with self._lock:
            if self._closed is None:
                self._closed = ConnectionClosed("the client was closed")
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._reader is not threading.current_thread():
            self._reader.join()
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client server={self.server!r}{' closed' if self.closed else ''}>"


class ChildProcess:
    """A sandboxed child, much like ``subprocess.Popen``: ``pid`` (the sandbox's, in
    the daemon's pid namespace), ``stdin``/``stdout``/``stderr`` (binary file objects
    for piped streams, else None), ``wait``, ``poll``, ``communicate``, ``send_signal``,
    ``kill``, ``terminate``. A context manager that closes the pipes and waits."""

    def __init__(self, client: Client, request_id: int, pid: int, fds: Dict[str, int],
                 state: _ChildState, args: List[Any]) -> None:
        self.client, self.id, self.pid, self.args = client, request_id, pid, args
        self._state = state
        self.stdin: Optional[io.BufferedWriter] = (
            os.fdopen(fds["stdin"], "wb") if "stdin" in fds else None)
        self.stdout: Optional[io.BufferedReader] = (
            os.fdopen(fds["stdout"], "rb") if "stdout" in fds else None)
        self.stderr: Optional[io.BufferedReader] = (
            os.fdopen(fds["stderr"], "rb") if "stderr" in fds else None)
        #: A pidfd of the sandbox (readable once it has exited), closed by ``wait``.
        self.pidfd: Optional[int] = fds.get("pidfd")
        #: The result pipe of an entry call (``Entry`` commands), else None.
        self.result: Optional[io.BufferedReader] = (
            os.fdopen(fds["result"], "rb") if "result" in fds else None)
        self._output: Dict[str, List[bytes]] = {"stdout": [], "stderr": []}
        self._input_offset = 0
        #: The sandbox's veth network as ``Spawned`` gave it (``interface``,
        #: ``host_interface``, ``addresses`` with ``address``, ``prefix_len`` and
        #: ``gateway``), or None without one.
        self.network: Optional[Dict[str, Any]] = None

    @property
    def verdict(self) -> Optional[t.Verdict]:
        """The verdict once the sandbox has ended, else None."""
        return self._state.verdict

    @property
    def returncode(self) -> Optional[int]:
        """As ``Popen.returncode``: None while it runs, then the exit code or minus the
        signal."""
        verdict = self._state.verdict
        return None if verdict is None else verdict.returncode

    def poll(self) -> Optional[t.Verdict]:
        """The verdict if the sandbox has ended, without waiting."""
        return self._state.verdict

    def wait(self, timeout: Optional[float] = None) -> t.Verdict:
        """Waits for the sandbox to end; its :class:`Verdict`. Raises
        :class:`TimeoutExpired` after ``timeout`` seconds, :class:`ConnectionClosed` if
        the connection ends first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        client = self.client
        with client._lock:
            while self._state.verdict is None and self._state.error is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutExpired(self.args, timeout or 0)
                client._changed.wait(remaining)
            if self._state.verdict is None:
                error = self._state.error
                assert error is not None
                raise type(error)(*error.args)
            verdict = self._state.verdict
        self._close_pidfd()
        return verdict

    def _on_exit(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` (from the reader thread) once the verdict or the end of
        the connection is known; at once if it already is."""
        with self.client._lock:
            if self._state.verdict is None and self._state.error is None:
                self._state.callbacks.append(callback)
                return
        callback()

    def send_signal(self, signo: int) -> None:
        """Sends ``signo`` to the sandbox: its init forwards it to the program
        (``SIGKILL`` ends the whole sandbox). Nothing happens once it has ended."""
        if self._state.verdict is None:
            self.client._signal(self.id, signo)

    def terminate(self) -> None:
        """``SIGTERM``."""
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        """Kills the whole sandbox (``SIGKILL`` to its init)."""
        self.send_signal(_signal.SIGKILL)

    def communicate(self, input: Optional[bytes] = None,
                    timeout: Optional[float] = None) -> Tuple[Optional[bytes], Optional[bytes]]:
        """As ``Popen.communicate``: writes ``input`` to stdin and closes it, reads stdout
        and stderr to their end, waits; ``(stdout, stderr)`` (None where not piped). On
        :class:`TimeoutExpired` nothing is lost: call it again to go on."""
        if input and self.stdin is None:
            raise ValueError("input given, but the child's stdin is not a pipe")
        deadline = None if timeout is None else time.monotonic() + timeout
        streams = {name: getattr(self, name) for name in ("stdout", "stderr")
                   if getattr(self, name) is not None and not getattr(self, name).closed}
        with selectors.DefaultSelector() as selector:
            if self.stdin is not None and not self.stdin.closed:
                try:
                    self.stdin.flush()
                except BrokenPipeError:
                    pass
                if input:
                    selector.register(self.stdin, selectors.EVENT_WRITE)
                else:
                    self.stdin.close()
            for name, stream in streams.items():
                selector.register(stream, selectors.EVENT_READ, name)
            view = memoryview(input or b"")
            while selector.get_map():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutExpired(self.args, timeout or 0,
                                         b"".join(self._output["stdout"]),
                                         b"".join(self._output["stderr"]))
                for key, _ in selector.select(remaining):
                    if key.fileobj is self.stdin:
                        try:
                            written = os.write(self.stdin.fileno(),
                                               view[self._input_offset:self._input_offset + 65536])
                            self._input_offset += written
                        except BrokenPipeError:
                            self._input_offset = len(view)
                        if self._input_offset >= len(view):
                            selector.unregister(self.stdin)
                            self.stdin.close()
                    else:
                        chunk = os.read(key.fd, 65536)
                        if chunk:
                            self._output[key.data].append(chunk)
                        else:
                            selector.unregister(key.fileobj)
                            key.fileobj.close()  # type: ignore[union-attr]
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(remaining)
        return tuple(  # type: ignore[return-value]
            b"".join(self._output[name]) if getattr(self, name) is not None else None
            for name in ("stdout", "stderr"))

    def _close_pidfd(self) -> None:
        pidfd, self.pidfd = self.pidfd, None
        if pidfd is not None:
            os.close(pidfd)

    def close(self) -> None:
        """Closes the pipes and the pidfd (the sandbox goes on)."""
        for stream in (self.stdin, self.stdout, self.stderr, self.result):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
        self._close_pidfd()

    def __enter__(self) -> "ChildProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.stdin is not None and not self.stdin.closed:
                try:
                    self.stdin.close()
                except BrokenPipeError:
                    pass
            if self._state.error is None:
                self.wait()
        finally:
            self.close()

    def __del__(self) -> None:
        pidfd = getattr(self, "pidfd", None)
        if pidfd is not None:
            os.close(pidfd)

    def __repr__(self) -> str:
        return f"<ChildProcess id={self.id} pid={self.pid} returncode={self.returncode}>"


def connect(path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Client:
    """:meth:`Client.connect`."""
    return Client.connect(path)


def status(socket_path: Optional[str] = None) -> t.DaemonStatus:
    """:meth:`Client.status` on a connection of its own to ``socket_path`` (or the
    default socket), closed afterwards."""
    with Client.connect(socket_path) as client:
        return client.status()


def run(args: Union[t.SpawnRequest, t.PathLike, Sequence[t.PathLike]], *,
        socket_path: Optional[str] = None, **run_args: Any) -> t.CompletedProcess:
    """:meth:`Client.run` on a connection of its own to ``socket_path`` (or the
    default socket), closed afterwards."""
    with Client.connect(socket_path) as client:
        return client.run(args, **run_args)
