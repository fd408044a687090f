"""`--since` values, RFC 3339 times with nanoseconds, and how long ago a time was."""

from __future__ import annotations

import pytest

from common.errors import InvalidValue
from common.timeparse import (
    EARLIEST_NS,
    LATEST_NS,
    age,
    format_rfc3339,
    parse_rfc3339,
    parse_since,
)

S = 1_000_000_000
NOON = parse_rfc3339("2026-01-01T12:00:00Z")


def test_rfc3339_with_nanoseconds_round_trips() -> None:
    text = "2024-01-02T15:04:05.123456789Z"
    assert format_rfc3339(parse_rfc3339(text)) == text
    assert parse_rfc3339("2024-01-02T17:04:05.5+02:00") == parse_rfc3339("2024-01-02T15:04:05.5Z")
    assert parse_rfc3339("2024-01-02T15:04:05") == parse_rfc3339("2024-01-02T15:04:05Z")  # UTC
    assert format_rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    assert format_rfc3339(EARLIEST_NS) == "0001-01-01T00:00:00.000000000Z"  # padded: sorts
    assert format_rfc3339(LATEST_NS + S) == "9999-12-31T23:59:59.999999999Z"  # clamped


@pytest.mark.parametrize("text", ["yesterday", "", "2024-01-02T15:04:05.5.5Z", "2024-13-01"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="invalid time"):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOON - 90 * S),
        ("2h", NOON - 7200 * S),
        ("1h30m", NOON - 5400 * S),
        ("2026-01-01T11:00:00Z", NOON - 3600 * S),
        ("2026-01-01T11:00:00.25Z", NOON - 3600 * S + S // 4),
        ("1700000000.5", 1_700_000_000 * S + S // 2),
        ("0", 0),
    ],
)
def test_since_as_docker_takes_it(text: str, expected: int) -> None:
    assert parse_since(text, now_ns=NOON) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "2d", "-5m", "10 m", "1e9"])
def test_bad_since_is_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidValue, match="invalid --since"):
        parse_since(text, now_ns=NOON)


@pytest.mark.parametrize("text", ["99999999999999", "9" * 5000])
def test_since_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="out of range"):
        parse_since(text)


def test_age_in_coarse_words() -> None:
    assert age("2026-01-01T11:55:00.123Z", now_ns=NOON) == "4 minutes"
    assert age("2026-01-01T13:00:00+02:00", now_ns=NOON) == "1 hour"  # an offset, not cut
    assert age("", now_ns=NOON) == ""
    assert age("not a time", now_ns=NOON) == ""  # a listing never fails on a stored time
