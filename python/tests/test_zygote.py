"""The Python zygote: preloaded, sandboxed, strict about what children send back."""
import os

import pytest

import hatchery_sandbox as h
from hatchery_sandbox import zygote as z

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def root():
    """The zygote's sandboxes need root (user namespaces as root, cgroups)."""
    if os.geteuid() != 0:
        if os.environ.get("HATCHERY_TESTS_MUST_RUN") == "1":
            pytest.fail("the Python zygote tests need root (HATCHERY_TESTS_MUST_RUN=1)")
        pytest.skip("the Python zygote tests need root")


@pytest.fixture(scope="module")
def zygote():
    with z.Zygote("zygote_jobs:inside", preload_imports=["xml.dom.minidom", "zygote_jobs"],
                  environment={"LANG": "C.UTF-8", "JOB": "7"},
                  python_path=[TESTS]) as zygote:
        yield zygote


def test_the_child_is_preloaded_and_sandboxed(zygote):
    child = zygote.spawn(1, "two", {"three": 3})
    seen = child.result(timeout=30)
    assert seen["args"] == [1, "two", {"three": 3}]
    assert seen["preloaded"] and seen["openblas"] == "1"
    assert (seen["uid"], seen["gid"]) == (1000, 1000)
    assert seen["CapEff"] == "0000000000000000" and seen["CapBnd"] == "0000000000000000"
    assert seen["NoNewPrivs"] == "1" and seen["Seccomp"] == "2"
    # stdio, the exec pipe's slot, the result pipe; and listdir's own fd.
    assert max(seen["fds"]) <= 5, seen["fds"]
    assert seen["interfaces"] == ["lo"]
    assert seen["env"] == {"LANG": "C.UTF-8", "JOB": "7"} and seen["cwd"] == "/"
    assert seen["at_fork"] == ["before", "after_in_child"]
    assert child.stdout.read() == b"to stdout\nthrough sys.__stdout__\n"
    assert child.stderr.read() == b"through os.write\n"
    assert child.wait().success


def test_each_child_is_reseeded(zygote):
    assert zygote.call()["random"] != zygote.call()["random"]


def test_an_exception_exits_1_with_the_traceback():
    with z.Zygote("zygote_jobs:fail", preload_imports=["zygote_jobs"],
                  python_path=[TESTS]) as zygote:
        child = zygote.spawn("boom")
        with pytest.raises(z.ChildFailed, match="ValueError: boom") as error:
            child.result(timeout=30)
        assert "Traceback" in error.value.traceback
        assert child.wait().returncode == 1
        assert b"ValueError: boom" in child.stderr.read()


@pytest.mark.parametrize("main,args,error", [
    ("write_result", (b"\x00\xff\xff",), "malformed"),
    ("write_result", (b"\x00\x05\x04NaN!",), "not JSON"),
    ("write_result", (b"\x00\x02\x01[\x00",), "trailing"),
    ("write_result", (b"",), "no result"),
    ("write_huge", (2 << 20,), "more than 1048576 result bytes"),
    ("exit_with", (3,), "no result"),
])
def test_what_a_hostile_child_sends_is_refused(main, args, error):
    with z.Zygote(f"zygote_jobs:{main}", preload_imports=["zygote_jobs"],
                  python_path=[TESTS]) as zygote:
        child = zygote.spawn(*args, result_limit=1 << 20)
        with pytest.raises(z.ResultRefused, match=error):
            child.result(timeout=30)
        if main == "exit_with":
            assert child.wait().returncode == 3


def test_a_pickle_from_the_child_is_never_unpickled(tmp_path):
    planted = tmp_path / "unpickled"
    with z.Zygote("zygote_jobs:write_pickle", preload_imports=["zygote_jobs"],
                  python_path=[TESTS]) as zygote:
        with pytest.raises(z.ResultRefused, match="not JSON"):
            zygote.call(str(planted))
    assert not planted.exists()


def test_a_value_that_is_not_json_fails_in_the_child():
    with z.Zygote("zygote_jobs:not_json", preload_imports=["zygote_jobs"],
                  python_path=[TESTS]) as zygote:
        with pytest.raises(z.ChildFailed, match="not JSON compliant"):
            zygote.call()


def test_a_threaded_zygote_is_refused():
    with pytest.raises(z.ZygoteError, match=r"left 2 threads running \(Python threads: "
                                            r"MainThread, left-behind\)"):
        z.Zygote("zygote_jobs:inside", preload_imports=["zygote_threads", "zygote_jobs"],
                 python_path=[TESTS])


def test_decode_result_is_strict():
    assert z.decode_result(b"\x00\x03\x02[]") == []
    with pytest.raises(z.ChildFailed, match="why"):
        z.decode_result(b"\x01\x03why\x00")
    for bad in [b"\x03", b"\x00\x03\x02[]\x00", b"\x00\x03\x02\xff\xfe"]:
        with pytest.raises(z.ResultRefused):
            z.decode_result(bad)
