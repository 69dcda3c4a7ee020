"""Each error kind of the protocol maps to its own exception class."""
import subprocess

import pytest

import hatchery_sandbox as h
from hatchery_sandbox.errors import spawn_error

SYS = {"op": "opendir", "path": "/x", "errno": 2}


@pytest.mark.parametrize("kind,cls", [
    (("NotFound",), h.NotFound),
    (("CannotExecute", 13), h.CannotExecute),
    (("Setup", "RootDirectories", SYS), h.SetupFailed),
    (("InvalidRequest",), h.InvalidRequest),
    (("Busy",), h.Busy),
    (("ShuttingDown",), h.ShuttingDown),
    (("UnenforceableLimits", ["memory"]), h.UnenforceableLimits),
    (("NetworkUnavailable",), h.NetworkUnavailable),
    (("AddressPoolExhausted",), h.AddressPoolExhausted),
    (("UnknownEntry", "e"), h.UnknownEntry),
    (("BadEntryArgs", "e"), h.BadEntryArgs),
    (("PermissionDenied",), h.PermissionDenied),
    (("Internal", None), h.DaemonError),
    (("Protocol",), h.DaemonError),
    (("UnknownId",), h.DaemonError),
])
def test_each_kind_has_its_class(kind, cls):
    error = spawn_error(kind, "why")
    assert type(error) is cls and isinstance(error, h.HatcheryError) and str(error) == "why"


def test_fields_are_kept():
    setup = spawn_error(("Setup", "Dev", SYS), "failed (hint: run with --privileged)")
    assert (setup.step, setup.errno, setup.hint) == ("Dev", 2, "run with --privileged")
    assert spawn_error(("Setup", "Handover", ("ZygoteGone",)), "x").errno is None
    assert spawn_error(("CannotExecute", 13), "x").errno == 13
    assert spawn_error(("UnenforceableLimits", ["memory"]), "x").limits == ["memory"]
    assert spawn_error(("UnknownEntry", "nope"), "x").name == "nope"
    too_high = spawn_error(("InvalidRequest",),
                           "the wall-time limit 10s is above this daemon's ceiling of 5s")
    assert type(too_high) is h.LimitTooHigh and isinstance(too_high, h.InvalidRequest)
    assert (too_high.limit, too_high.requested, too_high.ceiling) == ("wall-time", "10s", "5s")


def test_timeout_expired_is_also_subprocess_s():
    error = h.TimeoutExpired(["sleep"], 0.5)
    assert isinstance(error, subprocess.TimeoutExpired) and isinstance(error, h.HatcheryError)
    assert "timed out after 0.5 seconds" in str(error)
