"""Every client call against a real daemon."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

import hatchery_sandbox as h
from hatchery_sandbox import DEVNULL, PIPE, Entry, Limits, SandboxConfig, SpawnRequest, _wire


# ---- connecting ----

def test_a_missing_socket_is_unreachable_and_named(tmp_path):
    path = str(tmp_path / "nobody.sock")
    with pytest.raises(h.Unreachable, match=f"at {path}: connect: ENOENT"):
        h.Client.connect(path)


def test_a_named_default_socket_is_not_replaced(tmp_path, monkeypatch, daemon):
    """$HATCHERY_SOCKET names a socket nobody serves: no fallback to another daemon."""
    missing = str(tmp_path / "missing.sock")
    monkeypatch.setenv("HATCHERY_SOCKET", missing)
    with pytest.raises(h.Unreachable, match=missing):
        h.connect()
    monkeypatch.setenv("HATCHERY_SOCKET", daemon.socket)
    with h.connect() as client:
        assert client.server.startswith("hatchery ")


def test_default_socket_path_rules(monkeypatch):
    monkeypatch.setenv("HATCHERY_SOCKET", "/x.sock")
    assert h.default_socket_path() == "/x.sock"
    monkeypatch.setenv("HATCHERY_SOCKET", "")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert h.default_socket_path() == "/run/hatchery/hatchery.sock"
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert h.default_socket_path() == "/run/user/1234/hatchery.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert h.default_socket_path() == "/tmp/hatchery-1234.sock"


def test_another_protocol_version_is_refused(daemon, monkeypatch):
    monkeypatch.setattr(_wire, "PROTOCOL_VERSION", _wire.PROTOCOL_VERSION - 1)
    with pytest.raises(h.VersionMismatch) as error:
        daemon.client()
    assert error.value.daemon == error.value.client + 1


def test_a_refused_uid_gets_permission_denied(start_daemon):
    """As uid 65534 (a forked child of this test) against a daemon that allows only
    uid 4242 (its socket is then 0666)."""
    with tempfile.TemporaryDirectory(prefix="hatchery-test-") as socket_dir:
        os.chmod(socket_dir, 0o755)  # pytest's own temporary directories are 0700
        daemon = start_daemon("--allow-uid", "4242", socket_dir=socket_dir)
        said = connect_as_nobody(daemon.socket)
    assert said.startswith("denied: uid 65534 is not allowed"), said


def connect_as_nobody(path):
    """What a connection as uid and gid 65534 says, from a forked child of this test."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            h.Client.connect(path)
            os.write(write_end, b"connected")
        except h.PermissionDenied as error:
            os.write(write_end, f"denied: {error}".encode())
        except BaseException as error:  # reported through the pipe: a fork never returns
            os.write(write_end, repr(error).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        said = reader.read().decode()
    os.waitpid(pid, 0)
    return said


# ---- spawning and stdio ----

def test_stdio_pipes_environment_and_cwd(client):
    with client.spawn(["/bin/sh", "-c", "cat; echo err >&2; env; pwd"], env={"A": "1"},
                      cwd="/tmp") as child:
        assert child.pid > 0 and child.pidfd is not None
        child.stdin.write(b"echo\n")
        child.stdin.close()
        assert child.stdout.read() == b"echo\nA=1\nPWD=/tmp\n/tmp\n"
        assert child.stderr.read() == b"err\n"
        verdict = child.wait()
    assert verdict.success and verdict.reason == "exited" and child.returncode == 0
    assert child.pidfd is None


def test_null_and_the_callers_fds(client):
    with tempfile.TemporaryFile() as out:
        child = client.spawn(["/bin/sh", "-c", "cat; echo to-file"], stdin=DEVNULL, stdout=out,
                             stderr=out.fileno())
        assert (child.stdin, child.stdout, child.stderr) == (None, None, None)
        assert child.wait().success
        out.seek(0)
        assert out.read() == b"to-file\n"


def test_a_whole_spawn_request(client):
    request = SpawnRequest.exec(["/bin/sh", "-c", "hostname; id -u; echo $0"], env=[("X", "y")],
                                stdin=DEVNULL, sandbox=SandboxConfig(hostname="judge", uid=4321,
                                                                    gid=4321))
    result = client.run(request)
    assert result.stdout == b"judge\n4321\n/bin/sh\n" and result.stderr == b""


def test_exit_codes_and_check(client):
    result = client.run(["/bin/sh", "-c", "exit 3"])
    assert result.returncode == 3 and result.verdict.wait_status == 3 << 8
    with pytest.raises(h.ProcessFailed, match="exited with code 3"):
        client.run(["/bin/sh", "-c", "exit 3"], check=True)
    assert client.output(["/bin/echo", "out"]) == b"out\n"


def test_wait_timeout_kill_and_signals(client):
    child = client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
    with pytest.raises(h.TimeoutExpired):
        child.wait(timeout=0.2)
    assert child.poll() is None and child.returncode is None
    child.kill()
    verdict = child.wait(timeout=10)
    assert (verdict.kind, verdict.code, verdict.reason) == ("signaled", 9, "killed_by_client")
    child.kill()  # a no-op once it has ended

    child = client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10).returncode == -signal.SIGTERM
    for bad in (0, -1, signal.SIGSTOP, 1000):
        with pytest.raises(ValueError, match=f"signal {bad} cannot be sent"):
            client._signal(child.id, bad)


def test_communicate_with_input_and_timeout(client):
    child = client.spawn(["/bin/sh", "-c", "cat; sleep 0.5; echo done"])
    with pytest.raises(h.TimeoutExpired):
        child.communicate(b"x" * 300_000, timeout=0.2)
    stdout, stderr = child.communicate(timeout=10)
    assert stdout == b"x" * 300_000 + b"done\n" and stderr == b""
    assert child.returncode == 0


def test_run_kills_on_timeout(client):
    with pytest.raises(h.TimeoutExpired):
        client.run(["/bin/sleep", "30"], timeout=0.3)


def test_limits_in_cli_units(client):
    result = client.run(["/bin/sleep", "30"], limits={"wall_time": "300ms"})
    assert result.verdict.reason == "wall_timeout"
    assert result.verdict.limits.wall_time_ms == 300
    module = h.run(["/bin/true"], socket_path=client_socket(client),
                   limits=Limits(pids=8))
    assert module.verdict.limits.pids == 8


def client_socket(client):
    return client._sock.getpeername()


# ---- errors, from a real daemon ----

def test_spawn_errors(client):
    with pytest.raises(h.NotFound):
        client.spawn(["/nonexistent/program"])
    with pytest.raises(h.CannotExecute) as error:
        client.spawn(["/etc/passwd"])
    assert error.value.errno == 13
    with pytest.raises(h.SetupFailed) as error:
        client.spawn(["/bin/true"], chroot_dir="/nonexistent-root")
    assert (error.value.step, error.value.errno) == ("RootDirectories", 2)
    with pytest.raises(h.InvalidRequest):
        client.spawn(["/bin/true"], hostname="")
    with pytest.raises(h.NetworkUnavailable):
        client.spawn(["/bin/true"], network=h.Veth())
    with pytest.raises(h.UnknownEntry) as error:
        client.spawn(SpawnRequest(command=Entry("no-such-entry")))
    assert error.value.name == "no-such-entry"
    # The connection is still good.
    assert client.run(["/bin/true"]).verdict.success


def test_limit_too_high_and_busy(start_daemon):
    daemon = start_daemon("--max-wall-time", "5s", "--max-children", "1")
    with daemon.client() as client:
        with pytest.raises(h.LimitTooHigh) as error:
            client.spawn(["/bin/true"], limits={"wall_time": "10s"})
        assert error.value.limit == "wall-time"
        first = client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
        with pytest.raises(h.Busy):
            client.spawn(["/bin/true"])
        first.kill()
        first.wait()


def test_entry_errors_from_a_zygote_with_entries(start_daemon, build_binary):
    daemon = start_daemon(program=build_binary("hatchery-test-zygote"))
    with daemon.client() as client:
        with pytest.raises(h.BadEntryArgs) as error:
            client.spawn(SpawnRequest(command=Entry("echo", b"\xff")))
        assert error.value.name == "echo"
        child = client.spawn(SpawnRequest(command=Entry("echo", _wire.blob(b"hi"))))
        assert child.result is not None
        assert child.wait().success and child.result.read() == b"\x00\x03\x02hi"  # Returned(postcard("hi"))


def test_the_daemon_shutting_down_ends_the_connection(daemon):
    client = daemon.client()
    child = client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
    daemon.process.terminate()
    assert child.wait(timeout=10).reason == "daemon_shutdown"
    with pytest.raises(h.ConnectionClosed):
        client.spawn(["/bin/true"])
    client.close()


def test_a_closed_client_refuses_politely(daemon):
    client = daemon.client()
    client.close()
    assert client.closed
    with pytest.raises(h.ConnectionClosed, match="the client was closed"):
        client.spawn(["/bin/true"])


# ---- the reader ----

def test_the_reader_survives_10000_queued_events(daemon):
    """10,000 signals to an unknown id, each answered by an Error event: a connection
    that does not read them is dropped past 4,096 (the control); ours reads them all."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    control.connect(daemon.socket)
    _wire.send(control, _wire.hello("control"))
    control.settimeout(10)
    sent = 0
    try:
        for sent in range(10_000):
            _wire.send(control, _wire.signal_request(999_999, 15))
    except OSError:
        pass  # dropped while sending
    events = 0
    while _wire.recv(control) is not None:
        events += 1
    assert events < 10_001, "the control connection was not dropped: the test cannot tell"
    control.close()

    with daemon.client() as client:
        for _ in range(10_000):
            client._signal(999_999, 15)
        result = client.run(["/bin/echo", "alive"])
        assert result.stdout == b"alive\n" and not client.closed


def test_threads_share_one_client(client):
    failures = []

    def worker(n):
        try:
            for i in range(4):
                out = client.run(["/bin/echo", f"{n}-{i}"]).stdout
                assert out == f"{n}-{i}\n".encode(), out
        except BaseException as error:  # reported below, from the main thread
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


# ---- asyncio ----

def test_asyncio(daemon):
    from hatchery_sandbox import aio

    async def main():
        async with await aio.connect(daemon.socket) as client:
            child = await client.spawn(["/bin/sh", "-c", "echo hi; exit 4"], stdin=DEVNULL)
            verdict = await asyncio.wait_for(child.wait(), 10)
            sleeper = await client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sleeper.wait(), 0.2)
            sleeper.kill()
            killed = await sleeper.wait()
            result = await client.run(["/bin/echo", "ran"])
            status = await client.status()
            return child.stdout.read(), verdict, killed, result, status

    out, verdict, killed, result, status = asyncio.run(main())
    assert out == b"hi\n" and verdict.returncode == 4
    assert killed.reason == "killed_by_client" and result.stdout == b"ran\n"
    assert status.served.get("fresh") == 3 and status.ended["killed_by_client"] == 1, status


# ---- status ----

def test_status_shows_the_live_sandboxes_and_the_counters(daemon):
    with daemon.client() as client:
        before = client.status()
        assert before.version == client.server and before.pid == daemon.process.pid
        assert before.all_owners and before.sandboxes == [] and before.live == 0, before
        assert before.served == {} and before.warm_pool.hit_rate is None, before
        assert client.run(["/bin/true"]).verdict.success
        with pytest.raises(h.NotFound):
            client.spawn(["/nonexistent/program"])
        sleeper = client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
        status = client.status()
        assert status.live == 1 and status.sandboxes_omitted == 0, status
        [sandbox] = status.sandboxes
        assert isinstance(sandbox, h.SandboxStatus)
        assert (sandbox.id, sandbox.pid, sandbox.owner_uid) == (sleeper.id, sleeper.pid,
                                                                os.getuid()), sandbox
        assert sandbox.program == "/bin/sleep" and sandbox.phase == "running", sandbox
        assert sandbox.client_connected and sandbox.age_ms < 60_000, sandbox
        assert status.served == {"fresh": 2} and status.failed == {"not_found": 1}, status
        assert status.ended == {"exited": 1} and status.uptime_ms >= before.uptime_ms, status
        assert not status.veth.enabled and status.max_children > 0, status
        sleeper.kill()
        sleeper.wait()
    # The module-level call, on a connection of its own.
    after = h.status(daemon.socket)
    assert after.live == 0 and after.ended == {"exited": 1, "killed_by_client": 1}, after


def test_status_counts_the_warm_pool(start_daemon):
    daemon = start_daemon("--warm-pool", "1")
    with daemon.client() as client:
        for _ in range(3):
            assert client.run(["/bin/true"]).verdict.success
        pool = client.status().warm_pool
    assert pool.size_per_shape == 1 and pool.hits + pool.misses == 3, pool
    assert pool.hit_rate == pool.hits / 3, pool


def test_a_non_root_uid_sees_only_its_own_sandboxes(start_daemon):
    """Root's sleeper and uid 65534's own (asked from a forked child of this test): the
    child's status shows its own alone, root's shows both."""
    with tempfile.TemporaryDirectory(prefix="hatchery-test-") as socket_dir:
        os.chmod(socket_dir, 0o755)
        daemon = start_daemon("--allow-uid", "65534", socket_dir=socket_dir)
        with daemon.client() as client:
            root_sleeper = client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
            said = status_as_nobody(daemon.socket)
            assert said.startswith("ok "), said
            _, all_owners, live, owners = said.split(" ", 3)
            assert (all_owners, live, owners) == ("False", "2", "[65534]"), said
            seen = client.status()
            assert seen.all_owners and seen.live == 1, seen
            assert [s.owner_uid for s in seen.sandboxes] == [os.getuid()], seen
            root_sleeper.kill()


def status_as_nobody(path):
    """``ok ALL_OWNERS LIVE OWNERS`` of the status seen by uid 65534 while a sleeper of
    its own runs, from a forked child of this test."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with h.Client.connect(path) as client:
                child = client.spawn(["/bin/sleep", "30"], stdin=DEVNULL)
                status = client.status()
                child.kill()
                child.wait()
            owners = [s.owner_uid for s in status.sandboxes]
            os.write(write_end, f"ok {status.all_owners} {status.live} {owners}".encode())
        except BaseException as error:  # reported through the pipe: a fork never returns
            os.write(write_end, repr(error).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        said = reader.read().decode()
    os.waitpid(pid, 0)
    return said
