"""One exception class per kind of failure the daemon reports (the protocol's
``ErrorKind``, ``docs/protocol.md`` §4), under one base, :class:`HatcheryError`.

``SpawnError`` and its subclasses answer one spawn; ``ConnectError`` and its subclasses
answer the handshake; ``ConnectionClosed`` ends a connection that worked.
"""
from __future__ import annotations

import errno as _errno
import re
import subprocess
from typing import Any, List, Optional, Sequence

from .limits import LIMIT_NAMES


class HatcheryError(Exception):
    """Everything this package raises about the daemon or a child."""


# ---- the connection ----

class ConnectError(HatcheryError):
    """No connection could be made."""


class Unreachable(ConnectError):
    """Nothing accepts on the socket (named in the message, with the errno)."""

    def __init__(self, path: str, error: OSError) -> None:
        super().__init__(f"cannot reach a hatchery daemon at {path}: "
                         f"connect: {_errno.errorcode.get(error.errno or 0, error.errno)} "
                         f"({error.strerror})")
        self.path, self.errno = path, error.errno


class PermissionDenied(ConnectError):
    """The daemon refused this client: its uid or groups are not allowed."""


class VersionMismatch(ConnectError):
    """The daemon speaks another protocol version."""

    def __init__(self, message: str, daemon: int, client: int) -> None:
        super().__init__(message)
        self.daemon, self.client = daemon, client


class ProtocolError(HatcheryError):
    """A message could not be sent, received or decoded (either side)."""


class ConnectionClosed(HatcheryError):
    """The connection ended: the daemon closed it (shutting down, a protocol error) or
    the client was closed. Children on it with ``kill_on_disconnect`` are killed."""


# ---- one spawn ----

class SpawnError(HatcheryError):
    """A spawn was refused or failed before the program ran."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(SpawnError):
    """The program was not found inside the sandbox."""


class CannotExecute(SpawnError):
    """``execve`` failed (permissions, format); ``errno`` says why."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class SetupFailed(SpawnError):
    """A step of the sandbox's setup failed; the program never ran.

    ``step`` is the step's name (``"RootDirectories"``), ``errno`` the failed system
    call's errno (``None`` for a failure that is no system call), ``failure`` the
    decoded failure, and ``hint`` what to change when the daemon recognised a known
    trap of the machine."""

    def __init__(self, message: str, step: str, errno: Optional[int], failure: Any,
                 hint: Optional[str]) -> None:
        super().__init__(message)
        self.step, self.errno, self.failure, self.hint = step, errno, failure, hint


class InvalidRequest(SpawnError):
    """The daemon rejected the request as invalid."""


class LimitTooHigh(InvalidRequest):
    """A requested limit is above the daemon's ceiling (``serve --max-*``): ``limit``
    is its CLI name, ``requested`` and ``ceiling`` as the daemon wrote them."""

    def __init__(self, message: str, limit: str, requested: str, ceiling: str) -> None:
        super().__init__(message)
        self.limit, self.requested, self.ceiling = limit, requested, ceiling


class Busy(SpawnError):
    """The daemon is at its limit of live sandboxes (``serve --max-children``)."""


class ShuttingDown(Busy):
    """The daemon is shutting down."""


class UnenforceableLimits(SpawnError):
    """The host cannot enforce these limits (CLI names), and the request did not set
    ``allow_unenforced_limits``."""

    def __init__(self, message: str, limits: Sequence[str]) -> None:
        super().__init__(message)
        self.limits: List[str] = list(limits)


class NetworkUnavailable(SpawnError):
    """A veth network was asked of a daemon without ``--veth-pool``."""


class AddressPoolExhausted(NetworkUnavailable):
    """Every subnet of the daemon's pool is in use; retrying later may succeed."""


class UnknownEntry(SpawnError):
    """The zygote has no entry of this name (or runs no programs, for a program)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class BadEntryArgs(SpawnError):
    """The entry's arguments do not decode as its argument type."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class DaemonError(SpawnError):
    """The daemon failed on its side (``Internal``), or answered with a kind that does
    not fit a spawn (``Protocol``, ``UnknownId``)."""

    def __init__(self, message: str, kind: str = "Internal", detail: Any = None) -> None:
        super().__init__(message)
        self.kind, self.detail = kind, detail


# ---- a child's end ----

class TimeoutExpired(HatcheryError, subprocess.TimeoutExpired):
    """``wait``/``communicate``/``run`` timed out; the child still runs (``run`` kills
    it first). Also a ``subprocess.TimeoutExpired``."""

    def __init__(self, cmd: Any, timeout: float, output: Optional[bytes] = None,
                 stderr: Optional[bytes] = None) -> None:
        subprocess.TimeoutExpired.__init__(self, cmd, timeout, output, stderr)

    def __str__(self) -> str:
        return subprocess.TimeoutExpired.__str__(self)


class ProcessFailed(HatcheryError):
    """``run(check=True)``: the child did not exit with code 0."""

    def __init__(self, args: Any, verdict: Any, stdout: Optional[bytes],
                 stderr: Optional[bytes]) -> None:
        what = (f"exited with code {verdict.code}" if verdict.kind == "exited"
                else f"was killed by signal {verdict.code}")
        super().__init__(f"{list(args)!r} {what} ({verdict.reason})")
        self.args_, self.verdict, self.stdout, self.stderr = args, verdict, stdout, stderr


_CEILING = re.compile(r"the (?P<limit>[a-z-]+) limit (?P<requested>\S+) is above this "
                      r"daemon's ceiling of (?P<ceiling>\S+)")


def spawn_error(kind: tuple, message: str) -> HatcheryError:
    """The exception for an ``Error`` event's decoded ``kind`` (name, fields...)."""
    name, fields = kind[0], kind[1:]
    if name == "NotFound":
        return NotFound(message)
    if name == "CannotExecute":
        return CannotExecute(message, fields[0])
    if name == "Setup":
        step, failure = fields
        errno = failure.get("errno") if isinstance(failure, dict) else None
        # The daemon appends its diagnosis to the message (zygote::diagnose).
        hint = None
        if " (hint: " in message:
            hint = message.split(" (hint: ", 1)[1]
            hint = hint[:-1] if hint.endswith(")") else hint
        return SetupFailed(message, step, errno, failure, hint)
    if name == "InvalidRequest":
        ceiling = _CEILING.search(message)
        if ceiling and ceiling.group("limit") in LIMIT_NAMES:
            return LimitTooHigh(message, ceiling.group("limit"), ceiling.group("requested"),
                                ceiling.group("ceiling"))
        return InvalidRequest(message)
    if name == "Busy":
        return Busy(message)
    if name == "ShuttingDown":
        return ShuttingDown(message)
    if name == "UnenforceableLimits":
        return UnenforceableLimits(message, fields[0])
    if name == "NetworkUnavailable":
        return NetworkUnavailable(message)
    if name == "AddressPoolExhausted":
        return AddressPoolExhausted(message)
    if name == "UnknownEntry":
        return UnknownEntry(message, fields[0])
    if name == "BadEntryArgs":
        return BadEntryArgs(message, fields[0])
    if name == "PermissionDenied":
        return PermissionDenied(message)
    return DaemonError(message, name, fields[0] if fields else None)
