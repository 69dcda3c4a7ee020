"""The children of benches/python_zygote.py: `noop` returns at once (spawn → child_main
returns → exit is what is timed). Importing this module with
HATCHERY_BENCH_PRELOAD_MIB set allocates that much Python data (a list of distinct
bytes objects of 1 KiB), held by the zygote and so by every child, copy-on-write."""
import os

_MIB = int(os.environ.get("HATCHERY_BENCH_PRELOAD_MIB", "0"))
DATA = [bytes([i % 256]) * 1024 for i in range(_MIB * 1024)]


def noop(*_args):
    return None
