"""Docker-style durations ("1m30s"), sizes ("64m") and CPU counts ("0.5") from the command line."""

from __future__ import annotations

import math
import re

from google.protobuf.duration_pb2 import Duration

from swarmctl.errors import SwarmctlError

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration_ns(text: str) -> int:
    """Nanoseconds in a Go-style duration: "5s", "1m30s", "2h", "250ms", "0"."""
    value = text.strip()
    if value == "0":
        return 0
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None:
            raise SwarmctlError(
                f"invalid duration {text!r}: expected a number and a unit, e.g. 5s, 1m30s, 2h"
            )
        total += float(match.group(1)) * _DURATION_UNITS_NS[match.group(2)]
        position = match.end()
    if not value:
        raise SwarmctlError("invalid duration '': expected e.g. 5s, 1m30s, 2h")
    return int(total)


def parse_duration(text: str) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(parse_duration_ns(text))
    return duration


def parse_size(text: str) -> int:
    """Bytes in a Docker-style size: "512", "64m", "1.5g", "2GiB" (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise SwarmctlError(f"invalid size {text!r}: expected e.g. 512, 64m, 1g")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_cpus(text: str) -> int:
    """Nano-CPUs in a CPU count: "0.5" -> 500000000."""
    try:
        cpus = float(text)
    except ValueError:
        raise SwarmctlError(f"invalid CPU count {text!r}: expected a number, e.g. 0.5") from None
    if cpus < 0 or not math.isfinite(cpus):
        raise SwarmctlError(f"invalid CPU count {text!r}: must be a positive number")
    return round(cpus * 1e9)
