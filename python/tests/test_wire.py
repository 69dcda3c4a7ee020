"""The encoding against the golden bytes of docs/protocol.md §6 and the Rust constants."""
import pathlib
import re

import pytest

from hatchery_sandbox import (PIPE, Bind, BindIfExists, DevBind, Dir, Exec, File, Limits,
                              PoolStatus, SandboxConfig, SandboxStatus, SpawnRequest, Symlink,
                              Tmpfs, Veth, VethStatus, _wire)

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_protocol_version_is_the_rust_one():
    source = (REPO / "src" / "protocol" / "mod.rs").read_text()
    rust = int(re.search(r"pub const PROTOCOL_VERSION: u32 = (\d+);", source).group(1))
    assert _wire.PROTOCOL_VERSION == rust, "bump PROTOCOL_VERSION in python/src/hatchery_sandbox/_wire.py"


def test_the_enums_match_the_rust_declarations():
    steps = (REPO / "src" / "protocol" / "setup.rs").read_text()
    body = steps[steps.index("pub enum SetupStep"):]
    body = body[:body.index("\n}")]
    declared = re.findall(r"^    ([A-Z][A-Za-z]*),$", body, re.M)
    assert declared == _wire.SETUP_STEPS
    errors = (REPO / "docs" / "client.py").read_text()
    kinds = re.findall(r'^    \("([A-Za-z]+)", lambda r', errors, re.M)
    assert kinds == [name for name, _ in _wire._ERROR_KINDS]


def test_hello_and_signal_golden_bytes():
    assert _wire.hello("t", version=1) == bytes.fromhex("00 01 01 74")
    assert _wire.signal_request(300, 15) == bytes.fromhex("02 AC 02 1E")


def test_spawn_golden_bytes():
    message, fds = _wire.spawn(1, SpawnRequest.exec("/bin/true"))
    assert fds == []
    assert message == bytes.fromhex(
        "01 01 00 09 2F 62 69 6E 2F 74 72 75 65 01 09 2F 62 69 6E 2F 74 72 75 65 00 01 2F"
        " 00 00 00 00 00 08 68 61 74 63 68 65 72 79 00 E8 07 E8 07 00 00 00 00 00 00 00 00"
        " 00 00 00 00 01 00 00")
    # The tour of docs/client.py: Null stdio and a 10 s wall-time limit.
    tour = bytearray(message)
    tour[27:30] = b"\x01\x01\x01"
    tour[51:52] = bytes.fromhex("01 90 4E")
    request = SpawnRequest.exec("/bin/true", stdin=_wire.t.DEVNULL, stdout=_wire.t.DEVNULL,
                                stderr=_wire.t.DEVNULL,
                                sandbox=SandboxConfig(limits=Limits.parse(wall_time="10s")))
    assert _wire.spawn(1, request)[0] == bytes(tour)


def test_every_field_of_the_sandbox_is_encoded_in_order():
    sandbox = SandboxConfig(
        chroot_dir="/r", binds=[Bind("/a", "/b", writable=True)], hostname="h",
        network=Veth(interface="e", mtu=1400), uid=7, gid=8,
        opt_out=["network-namespace"],
        limits=Limits(pids=3, unlimited={"memory"}), allow_unenforced_limits=True,
        kill_on_disconnect=False,
        mounts=[BindIfExists("/c", "/d"), DevBind("/e", "/f"), Tmpfs("/g"), Dir("/h"),
                Symlink("/i", "/j"), File(b"k", "/l")],
        seccomp_policy="strict")
    encoded = _wire.encode_sandbox(sandbox)
    assert encoded == b"".join([
        b"\x01\x02/r", b"\x01\x02/a\x02/b\x01", b"\x01h", b"\x01\x01\x01e\x01\xf8\x0a",
        b"\x07\x08", b"\x01\x01",
        b"\x00\x01\x03" + b"\x00" * 7 + b"\x01\x00", b"\x01", b"\x00",
        b"\x06", b"\x00\x02/c\x02/d\x00", b"\x01\x02/e\x02/f", b"\x02\x02/g", b"\x03\x02/h",
        b"\x04\x02/i\x02/j", b"\x05\x01k\x02/l", b"\x01\x06strict"])


def test_stdio_fds_travel_in_stream_order():
    request = SpawnRequest(command=Exec("/bin/cat", ["cat"]), stdin=5, stdout=PIPE, stderr=7,
                           env={"A": "1", b"B": b"\xff"})
    message, fds = _wire.spawn(2, request)
    assert fds == [5, 7]
    assert b"\x02\x01A\x011\x01B\x01\xff\x01/\x02\x00\x02" in message


@pytest.mark.parametrize("bad", [
    dict(opt_out=["everything"]), dict(uid=-1), dict(uid=2**32), dict(binds=["/a"])])
def test_bad_sandbox_values_are_refused_before_sending(bad):
    with pytest.raises((ValueError, TypeError)):
        _wire.encode_sandbox(SandboxConfig(**bad))


def test_events_decode():
    assert _wire.decode_event(bytes.fromhex("01 02 9A 01 02 01 03 00")) == \
        ("spawned", 2, 77, ["stdout", "pidfd"], None)
    # With a veth network (src/protocol/tests.rs's golden): names, then 2 addresses.
    v6 = lambda last: "01 FD" + " 00" * 14 + f" {last:02X}"  # noqa: E731
    facts = _wire.decode_event(bytes.fromhex(
        "01 01 04 01 03 01 01 65 02 68 30 02 00 0A 00 00 02 1E 00 0A 00 00 01 "
        + v6(2) + " 7E " + v6(1)))
    assert facts == ("spawned", 1, 2, ["pidfd"], {
        "interface": "e", "host_interface": "h0", "addresses": [
            {"address": "10.0.0.2", "prefix_len": 30, "gateway": "10.0.0.1"},
            {"address": "fd00::2", "prefix_len": 126, "gateway": "fd00::1"}]})
    assert _wire.decode_event(bytes.fromhex("03 01 05 07 08 00 01 6D 00 04 00")) == \
        ("error", 5, ("Setup", "RootDirectories", {"op": "m", "path": None, "errno": 2}), "")
    event = _wire.decode_event(bytes.fromhex(
        "02 07 01 12 06 DC 0B 00 00 80 10 01 80 20 01 03 00 00 00 00 01 E8 07 00 00 00 00"
        " 01 01 01 00 01 07"))
    verdict = event[2]
    assert (verdict.kind, verdict.code, verdict.reason) == ("signaled", 9, "daemon_shutdown")
    assert verdict.returncode == -9 and not verdict.success and verdict.wait_status == 9
    assert (verdict.wall_time_us, verdict.max_rss_kib, verdict.memory_peak_bytes) == (1500, 2048, 4096)
    assert verdict.limits.wall_time_ms == 1000 and verdict.limits.unlimited == {"pids"}
    assert verdict.skipped_limits == ["memory"] and verdict.limits_reached == ["tmp-size"]


@pytest.mark.parametrize("bad", ["03 01 05 63 00", "00 03 01 74 00", "03 01 05 08 02", "09", ""])
def test_malformed_events_are_refused(bad):
    with pytest.raises(ValueError):
        _wire.decode_event(bytes.fromhex(bad))


def test_status_golden_bytes():
    """Request::Status and the Event::Status of docs/client.py's self-test."""
    assert _wire.status_request(3) == bytes.fromhex("03 03")
    event = _wire.decode_event(bytes.fromhex(
        "04 03 01 76 09 E8 07 01 01 01 02 9A 01 01 E8 07 01 70 05 00 01 72 01 00 01 04 01"
        " 01 00 02 01 00 00 00 00 01 01 77 02 00 00"))
    assert event[:2] == ("status", 3)
    status = event[2]
    assert (status.version, status.pid, status.uptime_ms, status.all_owners) == ("v", 9, 1000,
                                                                                 True)
    assert status.sandboxes == [SandboxStatus(sandbox=1, id=2, pid=77, owner_uid=1000,
                                              program="p", age_ms=5, memory_bytes=None,
                                              phase="r", client_connected=True)]
    assert (status.live, status.max_children) == (1, 4)
    assert status.warm_pool == PoolStatus(size_per_shape=1, shapes=1, idle=0, hits=2, misses=1)
    assert status.warm_pool.hit_rate == 2 / 3
    assert status.veth == VethStatus(enabled=False, leased=0, draining=0, free=0)
    assert (status.served, status.failed, status.ended) == ({"w": 2}, {}, {})
    with pytest.raises(ValueError, match="trailing"):
        _wire.decode_event(bytes.fromhex("04 03 01 76 09 E8 07 01 01 01 02 9A 01 01 E8 07 01 70"
                                          " 05 00 01 72 01 00 01 04 01 01 00 02 01 00 00 00 00"
                                          " 01 01 77 02 00 00 00"))
