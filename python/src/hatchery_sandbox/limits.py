"""Resource limits as people write them, read into the wire's units exactly as the CLI
does (``src/limits/parse.rs``): sizes (``256M``), durations (``10s``), CPU shares
(``0.5``) and counts.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

#: A bare size below this many bytes (but 0) is refused: ``64`` is almost always a
#: forgotten ``M``.
SMALLEST_BARE_SIZE = 4096

#: The CLI's name of each limit → the field of :class:`~hatchery_sandbox.Limits`, in
#: wire order.
LIMIT_NAMES: Dict[str, str] = {
    "memory": "memory_bytes",
    "pids": "pids",
    "cpus": "cpu_millicores",
    "cpu-time": "cpu_time_ms",
    "wall-time": "wall_time_ms",
    "file-size": "file_size_bytes",
    "nofile": "open_files",
    "tmp-size": "tmp_size_bytes",
    "tmp-inodes": "tmp_inodes",
}

_SIZE_SHIFTS = {"": 0, "B": 0, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20,
                "G": 30, "GB": 30, "GIB": 30, "T": 40, "TB": 40, "TIB": 40}
_DURATION_MS = {"ms": 1.0, "": 1000.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0,
                "h": 3_600_000.0}


class LimitParseError(ValueError):
    """A value that could not be read as a size, duration, count or CPU share; the
    message is the CLI's."""

    def __init__(self, what: str, text: str, expected: str) -> None:
        super().__init__(f"invalid {what} {text!r}: {expected}")
        self.what, self.text, self.expected = what, text, expected


def _negative(what: str, text: str) -> Optional[LimitParseError]:
    if text.strip().startswith("-"):
        return LimitParseError(what, text, f"a {what} cannot be negative")
    return None


def _split(text: str):
    trimmed = text.strip()
    end = 0
    while end < len(trimmed) and (trimmed[end].isdigit() and trimmed[end].isascii()
                                  or trimmed[end] == "."):
        end += 1
    return trimmed[:end], trimmed[end:]


def _scaled(number: str, unit: float) -> Optional[int]:
    if not number or number.count(".") > 1:
        return None
    try:
        value = float(number)
    except ValueError:
        return None
    product = round(value * unit)
    if not math.isfinite(value * unit) or product < 0 or product >= 2**64:
        return None
    return int(product)


def parse_size(text: str) -> int:
    """Bytes: a number with an optional binary suffix ``K``, ``M``, ``G``, ``T`` (or
    ``KiB``, ``MB`` ...: all binary). A bare number is bytes, refused below 4 KiB.

    >>> parse_size("256M"), parse_size("1.5G"), parse_size("64B")
    (268435456, 1610612736, 64)
    """
    expected = "expected a number of bytes with an optional K, M, G or T suffix"
    error = _negative("size", text)
    if error:
        raise error
    number, suffix = _split(text)
    shift = _SIZE_SHIFTS.get(suffix.strip().upper())
    if shift is None:
        raise LimitParseError("size", text, expected)
    value = _scaled(number, float(1 << shift))
    if value is None:
        raise LimitParseError("size", text, expected)
    if not suffix and value != 0 and value < SMALLEST_BARE_SIZE:
        raise LimitParseError(
            "size", text,
            f"a size without a unit is in bytes, and {value} bytes is too small; "
            f"did you mean {number}M? (write {number}B for bytes)")
    return value


def parse_duration_ms(text: str) -> int:
    """Milliseconds: a number with a suffix ``ms``, ``s``, ``m`` or ``h`` (bare: seconds).

    >>> parse_duration_ms("10s"), parse_duration_ms("250ms"), parse_duration_ms("1.5")
    (10000, 250, 1500)
    """
    expected = "expected a number with an optional ms, s, m or h suffix"
    error = _negative("duration", text)
    if error:
        raise error
    number, suffix = _split(text)
    unit = _DURATION_MS.get(suffix.strip())
    value = None if unit is None else _scaled(number, unit)
    if value is None:
        raise LimitParseError("duration", text, expected)
    return value


def parse_cpus(text: str) -> int:
    """Millicores: ``0.5`` is half a CPU, ``2`` two.

    >>> parse_cpus("0.5")
    500
    """
    error = _negative("CPU share", text)
    if error:
        raise error
    value = _scaled(text.strip(), 1000.0)
    if not value:
        raise LimitParseError("CPU share", text, "expected a number of CPUs such as 0.5 or 2")
    return value


def parse_count(text: str) -> int:
    """A whole number (processes, open files, inodes)."""
    error = _negative("count", text)
    if error:
        raise error
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit() or int(stripped) >= 2**64:
        raise LimitParseError("count", text, "expected a whole number")
    return int(stripped)


def parse_limit(name: str, text: str) -> int:
    """The value of the limit ``name`` (its CLI name, e.g. ``"wall-time"``) in its unit."""
    if name in ("memory", "file-size", "tmp-size"):
        return parse_size(text)
    if name in ("cpu-time", "wall-time"):
        return parse_duration_ms(text)
    if name == "cpus":
        return parse_cpus(text)
    if name in ("pids", "nofile", "tmp-inodes"):
        return parse_count(text)
    raise ValueError(f"unknown limit {name!r} (known: {', '.join(LIMIT_NAMES)})")
