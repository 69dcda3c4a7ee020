"""Builds the package with the Python zygote's native half (native/, a Rust cdylib)
compiled by cargo and placed in the package as libhatchery_python.so.

Everything else is in pyproject.toml. Environment:
  HATCHERY_NATIVE_PROFILE   cargo profile, "release" (default) or "debug"
  CARGO_TARGET_DIR          cargo's target directory (default: native/target)
  HATCHERY_SANDBOX_NO_NATIVE=1   the client alone: no cargo, no Python zygote
"""
import os
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = "libhatchery_python.so"


def cargo():
    found = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.access(found, os.X_OK):
        raise SystemExit("hatchery-sandbox: cargo is needed to build the Python zygote's "
                         "native half (https://rustup.rs); HATCHERY_SANDBOX_NO_NATIVE=1 "
                         "installs the client alone")
    return found


class BuildWithNative(build_py):
    def run(self):
        super().run()
        if os.environ.get("HATCHERY_SANDBOX_NO_NATIVE") == "1":
            return
        profile = os.environ.get("HATCHERY_NATIVE_PROFILE", "release")
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(HERE, "native", "target")
        command = [cargo(), "build", "--quiet", "--lib", "--manifest-path",
                   os.path.join(HERE, "native", "Cargo.toml"), "--target-dir", target]
        if profile == "release":
            command.append("--release")
        elif profile != "debug":
            raise SystemExit(f"HATCHERY_NATIVE_PROFILE={profile}: release or debug")
        subprocess.run(command, check=True)
        destination = os.path.join(self.build_lib, "hatchery_sandbox", LIBRARY)
        shutil.copyfile(os.path.join(target, profile, LIBRARY), destination)


class BinaryDistribution(Distribution):
    """The wheel holds a native library: it is for this platform only."""

    def has_ext_modules(self):
        return os.environ.get("HATCHERY_SANDBOX_NO_NATIVE") != "1"


setup(cmdclass={"build_py": BuildWithNative}, distclass=BinaryDistribution)
