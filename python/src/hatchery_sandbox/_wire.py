"""The wire: postcard encoding of requests and decoding of events (``docs/protocol.md``
§2), and the datagram transport (§1). Pure encoding, no policy.

The protocol version lives in one constant, :data:`PROTOCOL_VERSION`.
"""
from __future__ import annotations

import array
import ipaddress
import os
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import types as t
from .limits import LIMIT_NAMES

#: The protocol version this package speaks (``PROTOCOL_VERSION`` in
#: ``src/protocol/mod.rs``); the daemon accepts only its own.
PROTOCOL_VERSION = 6

MAX_MESSAGE_LEN = 128 * 1024
MAX_FDS_PER_MESSAGE = 16

# Variant names in declaration order: the index on the wire is the position.
LIMIT_KINDS = ["Memory", "Pids", "Cpu", "CpuTime", "WallTime", "FileSize", "OpenFiles",
               "TmpSize", "TmpInodes"]
# The same kinds by their CLI names (LIMIT_NAMES is in wire order too).
LIMIT_CLI_NAMES = list(LIMIT_NAMES)
LIMIT_FIELDS = list(LIMIT_NAMES.values())
END_REASONS = ["exited", "signaled", "oom_killed", "wall_timeout", "cpu_timeout",
               "killed_by_client", "daemon_shutdown"]
FD_ROLES = ["stdin", "stdout", "stderr", "pidfd", "result", "pty"]
LAYERS = ["seccomp", "network-namespace"]
SETUP_STEPS = ["Clone", "PlaceFds", "HoldSignals", "PrepareWorkload", "IdMaps", "UserIds",
               "DieWithZygote", "ScratchRoot", "RootDirectories", "ProcAndTmp", "Dev",
               "Binds", "PivotRoot", "DetachOldRoot", "ReadOnlyRoot", "Hostname",
               "Loopback", "BoundingSet", "DropCapabilities", "NoNewPrivs",
               "VerifyPrivileges", "Handover", "WorkingDirectory", "Session",
               "ResourceLimits", "Network", "StartWorkload", "OpenFilesLimit", "Seccomp",
               "Exec", "ForwardSignals", "Undumpable", "Devpts"]


# ---- encoding ----

def varint(n: int) -> bytes:
    """Unsigned LEB128."""
    if n < 0:
        raise ValueError(f"{n} is negative where the protocol takes an unsigned number")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def u32(n: int, what: str) -> bytes:
    if not 0 <= n < 2**32:
        raise ValueError(f"{what} {n} is out of range (0 to 2^32 - 1)")
    return varint(n)


def u64(n: int, what: str) -> bytes:
    if not 0 <= n < 2**64:
        raise ValueError(f"{what} {n} is out of range (0 to 2^64 - 1)")
    return varint(n)


def i32(n: int) -> bytes:
    """Zigzag, then varint."""
    return varint((n << 1) ^ (n >> 31))


def blob(data: bytes) -> bytes:
    return varint(len(data)) + data


def string(text: str) -> bytes:
    return blob(text.encode("utf-8"))


def os_bytes(value: Any) -> bytes:
    """Paths, arguments and environment values: ``str`` as ``os.fsencode`` has it."""
    return blob(os.fsencode(value))


def option(value: Any, encode: Callable[[Any], bytes]) -> bytes:
    return b"\x00" if value is None else b"\x01" + encode(value)


def boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def hello(client: str, version: int = PROTOCOL_VERSION) -> bytes:
    """Request::Hello."""
    return varint(0) + varint(version) + string(client)


def signal_request(request_id: int, signo: int) -> bytes:
    """Request::Signal."""
    return varint(2) + varint(request_id) + i32(signo)


def status_request(request_id: int) -> bytes:
    """Request::Status."""
    return varint(3) + varint(request_id)


def encode_limits(limits: t.Limits) -> bytes:
    out = [option(getattr(limits, name), lambda v, n=name: u64(v, n)) for name in LIMIT_FIELDS]
    kinds = sorted(limits.unlimited, key=LIMIT_CLI_NAMES.index)
    out.append(varint(len(kinds)))
    out.extend(varint(LIMIT_CLI_NAMES.index(k)) for k in kinds)
    return b"".join(out)


def encode_bind(bind: Any) -> bytes:
    return os_bytes(bind.source) + os_bytes(bind.target) + boolean(bind.writable)


def encode_mount(mount: t.Mount) -> bytes:
    if isinstance(mount, t.BindIfExists):
        return varint(0) + encode_bind(mount)
    if isinstance(mount, t.DevBind):
        return varint(1) + os_bytes(mount.source) + os_bytes(mount.target)
    if isinstance(mount, t.Tmpfs):
        return varint(2) + os_bytes(mount.target)
    if isinstance(mount, t.Dir):
        return varint(3) + os_bytes(mount.target)
    if isinstance(mount, t.Symlink):
        return varint(4) + os_bytes(mount.points_to) + os_bytes(mount.target)
    if isinstance(mount, t.File):
        return varint(5) + blob(bytes(mount.contents)) + os_bytes(mount.target)
    raise TypeError(f"not a mount: {mount!r}")


def encode_network(network: Optional[t.Veth]) -> bytes:
    if network is None:
        return varint(0)
    if not isinstance(network, t.Veth):
        raise TypeError(f"network is None or a Veth, not {network!r}")
    return varint(1) + option(network.interface, string) \
        + option(network.mtu, lambda m: u32(m, "mtu"))


def encode_sandbox(sandbox: t.SandboxConfig) -> bytes:
    unknown = [layer for layer in sandbox.opt_out if layer not in LAYERS]
    if unknown:
        raise ValueError(f"unknown layers {unknown} in opt_out (known: {', '.join(LAYERS)})")
    for bind in sandbox.binds:
        if not isinstance(bind, t.Bind):
            raise TypeError(f"binds holds Bind values, not {bind!r}")
    return b"".join([
        option(sandbox.chroot_dir, os_bytes),
        varint(len(sandbox.binds)), *(encode_bind(b) for b in sandbox.binds),
        string(sandbox.hostname),
        encode_network(sandbox.network),
        u32(sandbox.uid, "uid"), u32(sandbox.gid, "gid"),
        varint(len(sandbox.opt_out)), *(varint(LAYERS.index(x)) for x in sandbox.opt_out),
        encode_limits(sandbox.limits),
        boolean(sandbox.allow_unenforced_limits),
        boolean(sandbox.kill_on_disconnect),
        varint(len(sandbox.mounts)), *(encode_mount(m) for m in sandbox.mounts),
        option(sandbox.seccomp_policy, string),
    ])


def stdio_fd(spec: Any) -> Optional[int]:
    """The fd a stdio spec passes, or None for PIPE and DEVNULL."""
    if spec is t.PIPE or spec is t.DEVNULL:
        return None
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec
    if hasattr(spec, "fileno"):
        return int(spec.fileno())
    raise TypeError(f"a stream is PIPE, DEVNULL, an fd or a file object, not {spec!r}")


def env_pairs(env: Any) -> List[Tuple[Any, Any]]:
    return list(env.items()) if hasattr(env, "items") else list(env)


def spawn(request_id: int, request: t.SpawnRequest) -> Tuple[bytes, List[int]]:
    """Request::Spawn and the fds that go with it (stdin, stdout, stderr order)."""
    command = request.command
    if isinstance(command, t.Exec):
        encoded_command = varint(0) + os_bytes(command.program) + varint(len(command.argv)) \
            + b"".join(os_bytes(a) for a in command.argv)
    elif isinstance(command, t.Entry):
        encoded_command = varint(1) + string(command.name) + blob(bytes(command.args))
    else:
        raise TypeError(f"command is Exec or Entry, not {command!r}")
    env = env_pairs(request.env)
    fds: List[int] = []
    streams = []
    for spec in (request.stdin, request.stdout, request.stderr):
        fd = stdio_fd(spec)
        if fd is None:
            streams.append(varint(0) if spec is t.PIPE else varint(1))
        else:
            streams.append(varint(2))
            fds.append(fd)
    body = b"".join([
        encoded_command,
        varint(len(env)), *(os_bytes(k) + os_bytes(v) for k, v in env),
        os_bytes(request.cwd),
        *streams,
        encode_sandbox(request.sandbox),
    ])
    return varint(1) + varint(request_id) + body, fds


# ---- decoding ----

class Reader:
    """Reads postcard values from one message; every read checks the bounds."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("truncated message")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self, max_bytes: int = 10) -> int:
        value = shift = 0
        for _ in range(max_bytes):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise ValueError("overlong varint")

    def i32(self) -> int:
        n = self.varint(5)
        return (n >> 1) ^ -(n & 1)

    def blob(self) -> bytes:
        n = self.varint()
        if self.pos + n > len(self.data):
            raise ValueError("truncated message")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def string(self) -> str:
        return self.blob().decode("utf-8")

    def option(self, read: Callable[[], Any]) -> Any:
        tag = self.byte()
        if tag not in (0, 1):
            raise ValueError(f"bad Option tag {tag}")
        return read() if tag else None

    def seq(self, read: Callable[[], Any]) -> List[Any]:
        return [read() for _ in range(self.varint())]

    def variant(self, names: Sequence[str]) -> str:
        index = self.varint()
        if index >= len(names):
            raise ValueError(f"unknown variant {index} of {list(names)}")
        return names[index]


def _sys_error(r: Reader) -> Dict[str, Any]:
    return {"op": r.string(), "path": r.option(r.string), "errno": r.i32()}


def _setup_failure(r: Reader) -> Any:
    kind = r.variant(["Sys", "Protocol", "ZygoteGone", "Verification", "Request"])
    if kind == "Sys":
        return _sys_error(r)
    if kind == "Protocol":
        return (kind, r.string(), r.string())
    if kind == "ZygoteGone":
        return (kind,)
    return (kind, r.string())


def _limit_set(r: Reader) -> List[str]:
    return r.seq(lambda: r.variant(LIMIT_CLI_NAMES))


_ERROR_KINDS: List[Tuple[str, Callable[[Reader], tuple]]] = [
    ("Protocol", lambda r: ()),
    ("VersionMismatch", lambda r: (r.varint(5),)),
    ("PermissionDenied", lambda r: ()),
    ("InvalidRequest", lambda r: ()),
    ("Busy", lambda r: ()),
    ("NotFound", lambda r: ()),
    ("CannotExecute", lambda r: (r.i32(),)),
    ("Setup", lambda r: (r.variant(SETUP_STEPS), _setup_failure(r))),
    ("Internal", lambda r: (r.option(lambda: _sys_error(r)),)),
    ("UnknownId", lambda r: ()),
    ("ShuttingDown", lambda r: ()),
    ("UnenforceableLimits", lambda r: (_limit_set(r),)),
    ("NetworkUnavailable", lambda r: ()),
    ("AddressPoolExhausted", lambda r: ()),
    ("UnknownEntry", lambda r: (r.string(),)),
    ("BadEntryArgs", lambda r: (r.string(),)),
    ("UnknownSandbox", lambda r: (r.string(),)),
]


def _error_kind(r: Reader) -> tuple:
    index = r.varint()
    if index >= len(_ERROR_KINDS):
        raise ValueError(f"unknown error kind {index}")
    name, fields = _ERROR_KINDS[index]
    return (name, *fields(r))


def _verdict(r: Reader) -> t.Verdict:
    kind = r.variant(["exited", "signaled"])
    code = r.i32()
    reason = r.variant(END_REASONS)
    wall, user, system, rss = (r.varint() for _ in range(4))
    peak = r.option(r.varint)
    tasks = r.option(r.varint)
    limits = {name: r.option(r.varint) for name in LIMIT_FIELDS}
    unlimited = frozenset(_limit_set(r))
    return t.Verdict(kind=kind, code=code, reason=reason, wall_time_us=wall,
                     user_cpu_us=user, system_cpu_us=system, max_rss_kib=rss,
                     memory_peak_bytes=peak, tasks_started=tasks,
                     limits=t.Limits(unlimited=unlimited, **limits),
                     skipped_limits=_limit_set(r), limits_reached=_limit_set(r))


def _daemon_status(r: Reader) -> t.DaemonStatus:
    version, pid, uptime_ms, all_owners = r.string(), r.varint(5), r.varint(), r.byte() == 1
    sandboxes = r.seq(lambda: t.SandboxStatus(
        sandbox=r.varint(), id=r.varint(), pid=r.i32(), owner_uid=r.option(lambda: r.varint(5)),
        program=r.string(), age_ms=r.varint(), memory_bytes=r.option(r.varint),
        phase=r.string(), client_connected=r.byte() == 1))
    omitted, live, max_children = r.varint(5), r.varint(5), r.varint(5)
    pool = t.PoolStatus(size_per_shape=r.varint(5), shapes=r.varint(5), idle=r.varint(5),
                        hits=r.varint(), misses=r.varint())
    veth = t.VethStatus(enabled=r.byte() == 1, leased=r.varint(5), draining=r.varint(5),
                        free=r.varint(5))
    served, failed, ended = (dict(r.seq(lambda: (r.string(), r.varint()))) for _ in range(3))
    return t.DaemonStatus(version=version, pid=pid, uptime_ms=uptime_ms,
                          all_owners=all_owners, sandboxes=sandboxes,
                          sandboxes_omitted=omitted, live=live, max_children=max_children,
                          warm_pool=pool, veth=veth, served=served, failed=failed,
                          ended=ended)


def _ip_addr(r: Reader) -> str:
    """An IpAddr: 00 and 4 bytes (IPv4) or 01 and 16 bytes (IPv6), as text."""
    family = r.variant(["V4", "V6"])
    raw = bytes(r.byte() for _ in range(4 if family == "V4" else 16))
    return str(ipaddress.ip_address(raw))


def _network_facts(r: Reader) -> Dict[str, Any]:
    """A sandbox's veth network, as ``Spawned`` gives it: the ends' names and the
    sandbox end's addresses with their prefix lengths and gateways."""
    interface, host_interface = r.string(), r.string()
    addresses = r.seq(lambda: {"address": _ip_addr(r), "prefix_len": r.byte(),
                               "gateway": _ip_addr(r)})
    return {"interface": interface, "host_interface": host_interface,
            "addresses": addresses}


def decode_event(data: bytes) -> tuple:
    """One Event, exactly (trailing bytes are an error): ``("welcome", version,
    server)``, ``("spawned", id, pid, roles, network)``, ``("exited", id, verdict)``,
    ``("error", id_or_None, kind_tuple, message)`` or ``("status", id,
    daemon_status)``."""
    r = Reader(data)
    tag = r.varint()
    event: tuple
    if tag == 0:
        event = ("welcome", r.varint(5), r.string())
    elif tag == 1:
        request_id, pid = r.varint(), r.i32()
        roles = r.seq(lambda: r.variant(FD_ROLES))
        event = ("spawned", request_id, pid, roles, r.option(lambda: _network_facts(r)))
    elif tag == 2:
        event = ("exited", r.varint(), _verdict(r))
    elif tag == 3:
        event = ("error", r.option(r.varint), _error_kind(r), r.string())
    elif tag == 4:
        event = ("status", r.varint(), _daemon_status(r))
    else:
        raise ValueError(f"unknown event {tag}")
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} trailing bytes")
    return event


# ---- transport ----

def send(sock: socket.socket, message: bytes, fds: Sequence[int] = ()) -> None:
    """One datagram; MSG_NOSIGNAL so that a closed connection is EPIPE, not SIGPIPE."""
    ancillary = []
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    sock.sendmsg([message], ancillary, socket.MSG_NOSIGNAL)


def recv(sock: socket.socket, wait: bool = True) -> Optional[Tuple[bytes, List[int]]]:
    """One datagram and its fds (close-on-exec from the start), or None at end of
    stream. A truncated datagram closes its fds and raises ValueError. With ``wait``
    false, raises BlockingIOError when nothing is queued."""
    data, ancdata, flags, _ = sock.recvmsg(
        MAX_MESSAGE_LEN + 1, socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * 4),
        socket.MSG_CMSG_CLOEXEC | (0 if wait else socket.MSG_DONTWAIT))
    received = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received.frombytes(payload[:len(payload) - len(payload) % received.itemsize])
    fds = list(received)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ValueError("a truncated datagram from the daemon")
    if not data and not fds:
        return None
    return data, fds
