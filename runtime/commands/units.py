"""Parsing and printing the quantities the CLI deals in: sizes, CPUs, durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from runtime.errors import RuntimeEngineError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """'64m', '1g', '512k', '1048576' -> bytes (binary units, as Docker)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise RuntimeEngineError(f"invalid size {text!r}: use a number with b, k, m or g")
    return int(float(match.group(1)) * _FACTORS[match.group(2).lower()])


def parse_cpus(text: str) -> int:
    """'1.5' CPUs -> nano CPUs."""
    try:
        cpus = float(text)
    except ValueError:
        raise RuntimeEngineError(f"invalid --cpus {text!r}: expected a number like 0.5") from None
    if cpus <= 0:
        raise RuntimeEngineError("--cpus must be greater than 0")
    return int(cpus * 1_000_000_000)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n:.4g}TiB"


def ago(rfc3339: str, now: datetime | None = None) -> str:
    """'2024-01-02T03:04:05.123Z' -> '5 minutes' (Docker's coarse style)."""
    if not rfc3339:
        return ""
    then = datetime.fromisoformat(rfc3339[:26].rstrip("Z") + "+00:00")
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "Less than a second"
