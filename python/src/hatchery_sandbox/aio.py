"""The ``asyncio`` flavour: ``client = await aio.connect(path)``, ``child = await
client.spawn(...)``, ``verdict = await child.wait()``, ``await client.run(...)``.

Built on the threaded :class:`~hatchery_sandbox.Client`: its reader thread resolves a
child's future through ``loop.call_soon_threadsafe``, so waiting for a verdict holds no
thread; connecting, spawning and ``communicate`` run in the loop's default executor.
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any, Optional, Sequence, Tuple, Union

from . import types as t
from .client import ChildProcess, Client


class AsyncChildProcess:
    """A :class:`~hatchery_sandbox.ChildProcess` whose waits are awaitable; the pipes
    (``stdin``, ``stdout``, ``stderr``) and ``pid`` are the threaded child's."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.pid, self.stdin, self.stdout, self.stderr = (
            child.pid, child.stdin, child.stdout, child.stderr)

    async def wait(self) -> t.Verdict:
        """The verdict, once the sandbox has ended (``asyncio.wait_for`` for a timeout)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        self.child._on_exit(wake)
        await done
        return self.child.wait()

    async def communicate(self, input: Optional[bytes] = None
                          ) -> Tuple[Optional[bytes], Optional[bytes]]:
        """As ``ChildProcess.communicate``, in the executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.child.communicate, input)

    def send_signal(self, signo: int) -> None:
        self.child.send_signal(signo)

    def kill(self) -> None:
        self.child.kill()

    @property
    def returncode(self) -> Optional[int]:
        return self.child.returncode


class AsyncClient:
    """A :class:`~hatchery_sandbox.Client` with awaitable calls."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def spawn(self, args: Union[t.SpawnRequest, t.PathLike, Sequence[t.PathLike]],
                    **spawn_args: Any) -> AsyncChildProcess:
        """As ``Client.spawn``."""
        loop = asyncio.get_running_loop()
        child = await loop.run_in_executor(
            None, functools.partial(self.client.spawn, args, **spawn_args))
        return AsyncChildProcess(child)

    async def run(self, args: Union[t.SpawnRequest, t.PathLike, Sequence[t.PathLike]],
                  **run_args: Any) -> t.CompletedProcess:
        """As ``Client.run``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, functools.partial(self.client.run, args, **run_args))

    async def status(self) -> t.DaemonStatus:
        """As ``Client.status``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.client.status)

    def close(self) -> None:
        self.client.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


async def connect(path: Optional[str] = None) -> AsyncClient:
    """As ``Client.connect``."""
    loop = asyncio.get_running_loop()
    return AsyncClient(await loop.run_in_executor(None, Client.connect, path))
