"""Times as the CLIs take and the logs write them: `--since` values, RFC 3339 times with
nanoseconds, and how long ago a time was."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from common.errors import InvalidValue
from common.units import DURATION_PART, human_duration, parse_duration_ns

NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The times a protobuf Timestamp (and a datetime) can hold: years 1 to 9999.
EARLIEST_NS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(seconds=1) * NS
LATEST_NS = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH) // timedelta(
    seconds=1
) * NS + (NS - 1)

# Patterns are compiled on first use (re caches them): `shoal` pays for none it does not use.
_UNIX_TIME = r"([0-9]+)(?:\.([0-9]+))?"
_DURATION = rf"(?:{DURATION_PART})+"
_FRACTION = r"(:[0-9]{2})[.,]([0-9]+)"


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time ("2024-01-02T15:04:05Z",
    "2024-01-02T15:04:05.123456789+02:00"); a time without an offset is UTC."""
    value = text.strip()
    nanos = 0
    fraction = re.search(_FRACTION, value)
    if fraction is not None:  # nanoseconds: datetime keeps only microseconds
        nanos = int(fraction.group(2)[:9].ljust(9, "0"))
        value = value[: fraction.start()] + fraction.group(1) + value[fraction.end() :]
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.microsecond:  # a second fraction: not a time
        raise InvalidValue(f"invalid time {text!r}: expected RFC 3339, e.g. 2024-01-02T15:04:05Z")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(seconds=1) * NS + nanos


def format_rfc3339(ns: int) -> str:
    """RFC 3339 in UTC with nine fractional digits, as the logs write times (such strings
    sort as the times do); times outside years 1 to 9999 are clamped to them."""
    seconds, nanos = divmod(min(max(ns, EARLIEST_NS), LATEST_NS), NS)
    moment = datetime(1970, 1, 1) + timedelta(seconds=seconds)
    return f"{moment.isoformat(timespec='seconds')}.{nanos:09d}Z"


def parse_since(text: str, now_ns: int | None = None) -> int:
    """Nanoseconds since the epoch of a `--since` value, as Docker takes it: a duration ago
    ("10m", "1h30m"), an RFC 3339 time or a Unix time ("1700000000.5")."""
    value = text.strip()
    unix = re.fullmatch(_UNIX_TIME, value)
    if unix is not None:
        whole, fraction = unix.group(1), unix.group(2) or ""
        if len(whole) > 12:
            raise InvalidValue(f"invalid --since {text!r}: out of range (years 1 to 9999)")
        ns = int(whole) * NS + int(fraction[:9].ljust(9, "0"))
    elif re.fullmatch(_DURATION, value):
        ns = (time.time_ns() if now_ns is None else now_ns) - parse_duration_ns(value)
    else:
        try:
            ns = parse_rfc3339(value)
        except InvalidValue:
            raise InvalidValue(
                f"invalid --since {text!r}: expected a duration (10m), an RFC 3339 time "
                "(2024-01-02T15:04:05Z) or a Unix time"
            ) from None
    if not EARLIEST_NS <= ns <= LATEST_NS:
        raise InvalidValue(f"invalid --since {text!r}: out of range (years 1 to 9999)")
    return ns


def age(rfc3339: str, now_ns: int | None = None) -> str:
    """How long ago an RFC 3339 time was, in Docker's coarse words ("5 minutes"); "" for no
    time or one that does not parse (a display never fails on a stored time)."""
    if not rfc3339:
        return ""
    try:
        then = parse_rfc3339(rfc3339)
    except InvalidValue:
        return ""
    return human_duration(((time.time_ns() if now_ns is None else now_ns) - then) / NS)
