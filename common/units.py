"""Quantities as Docker's command lines take them: durations ("1m30s"), sizes ("64m") and CPU
counts ("0.5"); and sizes and durations printed for people."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from common.errors import InvalidValue

if TYPE_CHECKING:
    from google.protobuf.duration_pb2 import Duration

INT64_MAX = (1 << 63) - 1  # protobuf's int64 fields; Go's longest duration in nanoseconds

# Patterns are compiled on first use (re caches them): `shoal` pays for none it does not use.
DURATION_PART = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)"  # a number and a unit
_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_SIZE = r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?"
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration_ns(text: str) -> int:
    """Nanoseconds in a Go-style duration: "5s", "1m30s", "2h", "250ms", "0"."""
    value = text.strip()
    if value == "0":
        return 0
    if not value:
        raise InvalidValue("invalid duration '': expected e.g. 5s, 1m30s, 2h")
    position, total = 0, 0
    while position < len(value):
        match = re.compile(DURATION_PART).match(value, position)
        if match is None:
            raise InvalidValue(
                f"invalid duration {text!r}: expected a number and a unit, e.g. 5s, 1m30s, 2h"
            )
        whole, _, fraction = match.group(1).partition(".")
        unit = _DURATION_UNITS_NS[match.group(2)]
        if len(whole) > 20:  # past INT64_MAX in any unit (and int() of it would be slow)
            total = INT64_MAX + 1
            break
        fraction = fraction[:20]
        total += int(whole or "0") * unit + int(fraction or "0") * unit // 10 ** len(fraction)
        position = match.end()
    if total > INT64_MAX:
        raise InvalidValue(f"invalid duration {text!r}: longer than 2562047h (about 292 years)")
    return total


def parse_duration(text: str) -> Duration:
    """A protobuf Duration from a Go-style duration (see parse_duration_ns)."""
    from google.protobuf.duration_pb2 import Duration  # only the cluster's programs want it

    duration = Duration()
    duration.FromNanoseconds(parse_duration_ns(text))
    return duration


def parse_size(text: str) -> int:
    """Bytes in a Docker-style size: "512", "64m", "1.5g", "2GiB" (binary units)."""
    match = re.fullmatch(_SIZE, text.strip(), re.IGNORECASE | re.ASCII)
    if match is None:
        raise InvalidValue(f"invalid size {text!r}: expected e.g. 512, 64m, 1g")
    size = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if not size <= INT64_MAX:  # inf included
        raise InvalidValue(f"invalid size {text!r}: more than 8 EiB")
    return int(size)


def parse_cpus(text: str, *, allow_zero: bool = False) -> int:
    """Nano-CPUs in a CPU count: "0.5" -> 500000000. 0 is refused unless `allow_zero` (where
    it means "no limit", as in `swarmctl service update --limit-cpu 0`)."""
    try:
        cpus = float(text)
    except ValueError:
        raise InvalidValue(f"invalid CPU count {text!r}: expected a number, e.g. 0.5") from None
    least = "0 or more" if allow_zero else "greater than 0"
    if not math.isfinite(cpus) or cpus < 0 or (cpus == 0 and not allow_zero):
        raise InvalidValue(f"invalid CPU count {text!r}: must be a number {least}")
    nanos = cpus * 1e9
    if cpus and not 1 <= round(min(nanos, 2.0**63)) <= INT64_MAX:
        raise InvalidValue(f"invalid CPU count {text!r}: must be 0.000000001 to 9223372036")
    return round(nanos)


def human_size(n: float) -> str:
    """Bytes for people: "512B", "1.5KiB", "64MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n:.4g}TiB"


def human_duration(seconds: float) -> str:
    """Seconds in Docker's coarse words: "5 minutes", "1 day", "Less than a second"."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "Less than a second"
