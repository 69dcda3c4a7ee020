"""pyspawner's public API on hatchery: switch with ``from hatchery_sandbox import
pyspawner`` in place of ``import pyspawner``.

``Client`` starts a Python zygote (:class:`hatchery_sandbox.Zygote`) that preloads
``preload_imports`` once; ``spawn_child(args)`` forks a sandboxed child that calls
``child_main(*args)``, exits 0 when it returns and 1 (the traceback on stderr) when it
raises, exactly as pyspawner's children do. Where hatchery deliberately differs, the
call raises :class:`NotSupported` saying so (see python/README.md, "From pyspawner to
hatchery"):

- ``SandboxConfig.network`` (a ``NetworkConfig``): hatchery's daemon gives each sandbox
  a veth of its own from its ``--veth-pool``, with addresses it chooses; pyspawner's
  fixed names and addresses cannot be honoured. Use :class:`hatchery_sandbox.Zygote`
  with ``serve_args=["--veth-pool", CIDR]`` and ``network=Veth()``.
- ``SandboxConfig.skip_sandbox_except``: hatchery never switches its layers off from
  the client side (only ``opt_out`` of seccomp or the network namespace, where the
  daemon allows it).
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

from . import types as t
from .errors import HatcheryError
from .zygote import PythonChild, Zygote

__all__ = ["Client", "ChildProcess", "SandboxConfig", "NetworkConfig", "NotSupported"]


class NotSupported(HatcheryError):
    """A pyspawner feature that hatchery deliberately does not offer (the message says
    what to use instead)."""


@dataclass(frozen=True)
class NetworkConfig:
    """pyspawner's network: a veth pair with these names and addresses. Refused with
    :class:`NotSupported` (hatchery's daemon chooses them)."""

    kernel_veth_name: str = "veth-pyspawn"
    child_veth_name: str = "veth-pyspawn-c"
    kernel_ipv4_address: str = "192.168.123.1"
    child_ipv4_address: str = "192.168.123.2"


@dataclass(frozen=True)
class SandboxConfig:
    """pyspawner's sandbox: ``chroot_dir`` becomes the child's root (read-only, with a
    ``/proc``, ``/dev`` and ``/tmp`` of its own); without ``network`` the child has only
    ``lo``."""

    chroot_dir: Optional[Union[str, pathlib.Path]] = None
    network: Optional[NetworkConfig] = None
    skip_sandbox_except: FrozenSet[str] = field(default_factory=frozenset)

    def _hatchery(self) -> Dict[str, Any]:
        if self.network is not None:
            raise NotSupported(
                "SandboxConfig.network: hatchery gives each sandbox a veth from the "
                "daemon's --veth-pool, with names and addresses it chooses; use "
                "hatchery_sandbox.Zygote(serve_args=['--veth-pool', CIDR]) and "
                "network=hatchery_sandbox.Veth()")
        if self.skip_sandbox_except:
            raise NotSupported(
                "SandboxConfig.skip_sandbox_except: hatchery never switches sandbox layers "
                "off from the client (only opt_out=['seccomp'] or ['network-namespace'], "
                "where the daemon allows it with --allow-unsafe-disable)")
        chroot = None if self.chroot_dir is None else os.fspath(self.chroot_dir)
        return {"chroot_dir": chroot}


class ChildProcess:
    """A child, as pyspawner has it: ``pid``, ``stdin``, ``stdout``, ``stderr`` (binary
    file objects), ``kill()`` and ``wait(options)`` → ``(pid, status)``."""

    def __init__(self, child: PythonChild) -> None:
        self._child = child
        self.pid: int = child.pid
        self.stdin: BinaryIO = child.stdin  # type: ignore[assignment]
        self.stdout: BinaryIO = child.stdout  # type: ignore[assignment]
        self.stderr: BinaryIO = child.stderr  # type: ignore[assignment]

    def kill(self) -> None:
        """``SIGKILL`` (a no-op once the child has ended)."""
        self._child.kill()

    def wait(self, options: int = 0) -> Tuple[int, int]:
        """As ``os.waitpid(pid, options)``: ``(pid, status)`` once the child has ended;
        with ``os.WNOHANG``, ``(0, 0)`` while it runs. Statuses read with
        ``os.WIFEXITED``, ``os.WEXITSTATUS``, ``os.waitstatus_to_exitcode``."""
        unknown = options & ~os.WNOHANG
        if unknown:
            raise NotSupported(f"wait options {unknown:#x}: only os.WNOHANG is supported")
        process = self._child.process
        if options & os.WNOHANG:
            verdict = process.poll()
            if verdict is None:
                return (0, 0)
        else:
            verdict = process.wait()
        return (self.pid, verdict.wait_status)


class Client:
    """pyspawner's ``Client``: a zygote that preloads ``preload_imports`` and whose
    children call ``child_main`` (``"module.function"``) in ``environment`` (their exact
    environment). ``executable`` is the Python that runs the zygote. Close it (or use it
    as a context manager) to stop the zygote; its children are killed."""

    def __init__(self, *, child_main: str, environment: Optional[Dict[str, str]] = None,
                 preload_imports: Sequence[str] = (), executable: Optional[str] = None,
                 **zygote_args: Any) -> None:
        module, _, function = child_main.rpartition(".")
        if ":" in child_main:
            module, _, function = child_main.partition(":")
        if not module or not function:
            raise ValueError(f"child_main {child_main!r}: expected 'module.function'")
        self._zygote = Zygote(f"{module}:{function}", preload_imports=preload_imports,
                              environment=environment or {}, executable=executable,
                              _no_result=True, **zygote_args)

    def spawn_child(self, args: Sequence[Any] = (), *, process_name: Optional[str] = None,
                    sandbox_config: SandboxConfig = SandboxConfig()) -> ChildProcess:
        """Forks a child that calls ``child_main(*args)``, with piped stdio."""
        child = self._zygote.spawn(*args, process_name=process_name, stdin=t.PIPE,
                                   **sandbox_config._hatchery())
        return ChildProcess(child)

    def close(self) -> None:
        self._zygote.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
