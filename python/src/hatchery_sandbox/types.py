"""The request and the verdict, as dataclasses: the Python face of hatchery's wire types
(``src/protocol/mod.rs``; see ``docs/protocol.md``). Field names and defaults are the Rust
ones, so a ``SpawnRequest`` here is the whole ``SpawnRequest`` of the protocol.

Paths, arguments and environment values may be ``str`` (encoded with the file system
encoding, as ``os.fsencode`` does) or ``bytes``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .limits import LIMIT_NAMES, parse_limit

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class _StdioMarker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: A new pipe: the child's end in the sandbox, the other end in ``ChildProcess``.
PIPE = _StdioMarker("PIPE")
#: ``/dev/null``.
DEVNULL = _StdioMarker("DEVNULL")

#: A stream: ``PIPE``, ``DEVNULL``, or one of the caller's fds (an ``int`` or an object
#: with ``fileno()``), passed to the daemon with the request.
StdioSpec = Union[_StdioMarker, int, "object"]


@dataclass(frozen=True)
class Bind:
    """A bind mount of a host path into the sandbox (always ``nosuid``, ``nodev``)."""

    source: PathLike
    target: PathLike
    writable: bool = False


@dataclass(frozen=True)
class BindIfExists:
    """A bind as ``Bind``, skipped when its source does not exist."""

    source: PathLike
    target: PathLike
    writable: bool = False


@dataclass(frozen=True)
class DevBind:
    """A writable bind through which device nodes work (``serve --allow-dev-bind``)."""

    source: PathLike
    target: PathLike


@dataclass(frozen=True)
class Tmpfs:
    """A new empty tmpfs, sized as ``/tmp`` is."""

    target: PathLike


@dataclass(frozen=True)
class Dir:
    """A directory (with its missing parents), if nothing is there."""

    target: PathLike


@dataclass(frozen=True)
class Symlink:
    """A symbolic link at ``target`` pointing to ``points_to``."""

    points_to: PathLike
    target: PathLike


@dataclass(frozen=True)
class File:
    """A read-only file holding ``contents``."""

    contents: bytes
    target: PathLike


Mount = Union[BindIfExists, DevBind, Tmpfs, Dir, Symlink, File]


@dataclass(frozen=True)
class Veth:
    """A veth pair of the sandbox's own (the daemon needs ``--veth-pool``)."""

    interface: Optional[str] = None
    mtu: Optional[int] = None


@dataclass(frozen=True)
class Limits:
    """Resource limits for a whole sandbox, in the wire's units. ``None`` leaves the
    daemon's default; ``unlimited`` names the limits (by their CLI names: ``"pids"``,
    ``"tmp-size"``, ...) whose default the request lifts. Build one from the CLI's units
    with :meth:`parse`."""

    memory_bytes: Optional[int] = None
    pids: Optional[int] = None
    cpu_millicores: Optional[int] = None
    cpu_time_ms: Optional[int] = None
    wall_time_ms: Optional[int] = None
    file_size_bytes: Optional[int] = None
    open_files: Optional[int] = None
    tmp_size_bytes: Optional[int] = None
    tmp_inodes: Optional[int] = None
    unlimited: FrozenSet[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.unlimited) - set(LIMIT_NAMES)
        if unknown:
            raise ValueError(f"unknown limits {sorted(unknown)} (known: {', '.join(LIMIT_NAMES)})")
        object.__setattr__(self, "unlimited", frozenset(self.unlimited))

    @classmethod
    def parse(cls, **values: Union[str, int]) -> "Limits":
        """Limits written as on ``hatchery run``'s command line, keyed by the flag's
        name with ``_`` for ``-``: ``Limits.parse(memory="256M", wall_time="10s",
        cpus="0.5", pids=64, nofile=256)``. ``"unlimited"`` lifts the default.

        >>> Limits.parse(memory="256M", wall_time="1.5s").wall_time_ms
        1500
        >>> sorted(Limits.parse(pids="unlimited").unlimited)
        ['pids']
        """
        fields: Dict[str, object] = {}
        unlimited = set()
        for key, value in values.items():
            name = key.replace("_", "-")
            if name not in LIMIT_NAMES:
                raise ValueError(f"unknown limit {key!r} (known: {', '.join(LIMIT_NAMES)})")
            if isinstance(value, str) and value.strip() == "unlimited":
                unlimited.add(name)
                continue
            fields[LIMIT_NAMES[name]] = parse_limit(name, str(value))
        return cls(unlimited=frozenset(unlimited), **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox around a workload; every layer is on unless listed in ``opt_out``
    (``"seccomp"``, ``"network-namespace"``, where the daemon allows it)."""

    chroot_dir: Optional[PathLike] = None
    binds: Sequence[Bind] = ()
    hostname: str = "hatchery"
    network: Optional[Veth] = None
    uid: int = 1000
    gid: int = 1000
    opt_out: Sequence[str] = ()
    limits: Limits = field(default_factory=Limits)
    allow_unenforced_limits: bool = False
    kill_on_disconnect: bool = True
    mounts: Sequence[Mount] = ()
    seccomp_policy: Optional[str] = None


@dataclass(frozen=True)
class Exec:
    """``execve`` a program; ``argv`` includes ``argv[0]``. Without a ``/`` in
    ``program`` it is looked up in the request's ``PATH``, inside the sandbox."""

    program: PathLike
    argv: Sequence[PathLike]


@dataclass(frozen=True)
class Entry:
    """Call a named entry of the zygote; ``args`` are its postcard-encoded arguments."""

    name: str
    args: bytes = b""


Env = Union[Mapping[PathLike, PathLike], Iterable[Tuple[PathLike, PathLike]]]


@dataclass(frozen=True)
class SpawnRequest:
    """What to run and how: the protocol's whole ``SpawnRequest``. The environment is
    complete (nothing is inherited from anyone); stdio defaults to ``PIPE``."""

    command: Union[Exec, Entry]
    env: Env = ()
    cwd: PathLike = "/"
    stdin: StdioSpec = PIPE
    stdout: StdioSpec = PIPE
    stderr: StdioSpec = PIPE
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    @classmethod
    def exec(cls, args: Union[PathLike, Sequence[PathLike]], **fields: object) -> "SpawnRequest":
        """``args[0]`` run with ``args`` as its argv (a single string is one program
        without arguments, never split on spaces).

        >>> SpawnRequest.exec(["/bin/echo", "hi"]).command.argv
        ['/bin/echo', 'hi']
        """
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        if not argv:
            raise ValueError("an empty argument list: give at least the program")
        return cls(command=Exec(program=argv[0], argv=argv), **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Verdict:
    """How a sandbox ended and what it used (the protocol's ``Verdict``).

    ``kind`` is ``"exited"`` or ``"signaled"`` and ``code`` the exit code or signal;
    ``reason`` is the end reason's name (``"exited"``, ``"signaled"``, ``"oom_killed"``,
    ``"wall_timeout"``, ``"cpu_timeout"``, ``"killed_by_client"``,
    ``"daemon_shutdown"``); limits are named as on the CLI (``"memory"``, ...).
    """

    kind: str
    code: int
    reason: str
    wall_time_us: int
    user_cpu_us: int
    system_cpu_us: int
    max_rss_kib: int
    memory_peak_bytes: Optional[int]
    tasks_started: Optional[int]
    limits: Limits
    skipped_limits: List[str]
    limits_reached: List[str]

    @property
    def returncode(self) -> int:
        """As ``subprocess``: the exit code, or minus the signal's number."""
        return self.code if self.kind == "exited" else -self.code

    @property
    def success(self) -> bool:
        """Exited with code 0."""
        return self.kind == "exited" and self.code == 0

    @property
    def wait_status(self) -> int:
        """The status as ``os.waitpid`` encodes it (``os.waitstatus_to_exitcode`` reads
        it back)."""
        return (self.code & 0xFF) << 8 if self.kind == "exited" else self.code & 0x7F


@dataclass(frozen=True)
class CompletedProcess:
    """What :func:`run` returns: the output and the verdict."""

    args: List[PathLike]
    stdout: Optional[bytes]
    stderr: Optional[bytes]
    verdict: Verdict

    @property
    def returncode(self) -> int:
        return self.verdict.returncode

    def check_returncode(self) -> None:
        """Raises :class:`ProcessFailed` unless the child exited with code 0."""
        from .errors import ProcessFailed

        if not self.verdict.success:
            raise ProcessFailed(self.args, self.verdict, self.stdout, self.stderr)


@dataclass(frozen=True)
class SandboxStatus:
    """One live sandbox, as :class:`DaemonStatus` shows it (the protocol's
    ``SandboxStatus``)."""

    #: The daemon-wide number of its spawn request (the log's ``sandbox`` field).
    sandbox: int
    #: Its request id on its client's connection.
    id: int
    #: The pid of its init, as the daemon sees it.
    pid: int
    #: The uid of the client that asked for it (None: the embedded zygote's own client).
    owner_uid: Optional[int]
    #: What it runs: the program as requested, or ``entry:NAME``, escaped and shortened.
    program: str
    #: Milliseconds since its request arrived.
    age_ms: int
    #: Resident memory of its processes in bytes, when it could be read.
    memory_bytes: Optional[int]
    #: ``"setting_up"``, ``"running"``, ``"failed"`` or ``"ending"``.
    phase: str
    #: Whether its client is still connected.
    client_connected: bool


@dataclass(frozen=True)
class PoolStatus:
    """The warm pool's state and how often it served."""

    #: Idle sandboxes kept per shape (``serve --warm-pool``).
    size_per_shape: int
    #: Pooled shapes.
    shapes: int
    #: Idle sandboxes now, all shapes together.
    idle: int
    #: Poolable spawns an idle sandbox served.
    hits: int
    #: Poolable spawns that found none idle and started fresh.
    misses: int

    @property
    def hit_rate(self) -> Optional[float]:
        """Hits over hits and misses, or None before any poolable spawn."""
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass(frozen=True)
class VethStatus:
    """The daemon's veth networks (``serve --veth-pool``)."""

    #: Whether the daemon has a veth pool at all.
    enabled: bool
    #: Subnets held by live sandboxes and idle warm ones.
    leased: int
    #: Subnets whose pairs are being torn down.
    draining: int
    #: Subnets free now.
    free: int


@dataclass(frozen=True)
class DaemonStatus:
    """A daemon's report on itself: what :meth:`Client.status` returns (the protocol's
    ``DaemonStatus``; ``hatchery status --json`` prints the same fields).

    ``sandboxes`` holds every live sandbox when ``all_owners`` (the asker is root or the
    daemon's own uid), else only the asker's own. ``served``, ``failed`` and ``ended``
    map a name (``"fresh"``/``"warm"``; an error kind such as ``"not_found"``; an end
    reason such as ``"exited"``) to a count.
    """

    version: str
    pid: int
    uptime_ms: int
    all_owners: bool
    sandboxes: List[SandboxStatus]
    sandboxes_omitted: int
    live: int
    max_children: int
    warm_pool: PoolStatus
    veth: VethStatus
    served: Dict[str, int]
    failed: Dict[str, int]
    ended: Dict[str, int]
