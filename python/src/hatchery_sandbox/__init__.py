"""hatchery-sandbox: the Python client of hatchery, a sandboxed process spawner for Linux.

>>> from hatchery_sandbox import Client
>>> with Client.connect() as client:                     # doctest: +SKIP
...     result = client.run(["/bin/echo", "hello"], limits={"wall_time": "10s"})
>>> result.stdout, result.verdict.reason                  # doctest: +SKIP
(b'hello\\n', 'exited')
"""
from ._wire import PROTOCOL_VERSION
from .client import (SOCKET_ENV, SYSTEM_SOCKET, ChildProcess, Client, connect,
                     default_socket_path, run, status)
from .errors import (AddressPoolExhausted, BadEntryArgs, Busy, CannotExecute,
                     ConnectError, ConnectionClosed, DaemonError, HatcheryError,
                     InvalidRequest, LimitTooHigh, NetworkUnavailable, NotFound,
                     PermissionDenied, ProcessFailed, ProtocolError, SetupFailed,
                     ShuttingDown, SpawnError, TimeoutExpired, UnenforceableLimits,
                     UnknownEntry, Unreachable, VersionMismatch)
from .limits import (LimitParseError, parse_count, parse_cpus, parse_duration_ms,
                     parse_limit, parse_size)
from .types import (DEVNULL, PIPE, Bind, BindIfExists, CompletedProcess, DaemonStatus,
                    DevBind, Dir, Entry, Exec, File, Limits, PoolStatus, SandboxConfig,
                    SandboxStatus, SpawnRequest, Symlink, Tmpfs, Verdict, Veth, VethStatus)
from .zygote import ChildFailed, PythonChild, ResultRefused, Zygote, ZygoteError

__all__ = [
    "PROTOCOL_VERSION", "SOCKET_ENV", "SYSTEM_SOCKET", "ChildProcess", "Client", "connect",
    "default_socket_path", "run", "status",
    "AddressPoolExhausted", "BadEntryArgs", "Busy", "CannotExecute", "ConnectError",
    "ConnectionClosed", "DaemonError", "HatcheryError", "InvalidRequest", "LimitTooHigh",
    "NetworkUnavailable", "NotFound", "PermissionDenied", "ProcessFailed", "ProtocolError",
    "SetupFailed", "ShuttingDown", "SpawnError", "TimeoutExpired", "UnenforceableLimits",
    "UnknownEntry", "Unreachable", "VersionMismatch",
    "LimitParseError", "parse_count", "parse_cpus", "parse_duration_ms", "parse_limit",
    "parse_size",
    "DEVNULL", "PIPE", "Bind", "BindIfExists", "CompletedProcess", "DevBind", "Dir", "Entry",
    "Exec", "File", "Limits", "SandboxConfig", "SpawnRequest", "Symlink", "Tmpfs", "Verdict",
    "Veth", "DaemonStatus", "PoolStatus", "SandboxStatus", "VethStatus",
    "ChildFailed", "PythonChild", "ResultRefused", "Zygote", "ZygoteError",
]
