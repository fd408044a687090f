from __future__ import annotations

import pytest

from swarmctl.errors import SwarmctlError
from swarmctl.units import parse_cpus, parse_duration_ns, parse_size

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("5s", 5 * S),
        ("1m30s", 90 * S),
        ("2h", 7200 * S),
        ("2160h", 2160 * 3600 * S),
        ("250ms", S // 4),
        ("1.5s", 3 * S // 2),
        ("0", 0),
        ("10us", 10_000),
    ],
)
def test_durations_parse_like_docker(text: str, nanos: int) -> None:
    assert parse_duration_ns(text) == nanos


@pytest.mark.parametrize("text", ["", "5", "5x", "s", "1m30", "-5s", "5 s", "abc"])
def test_bad_durations_are_refused_by_name(text: str) -> None:
    with pytest.raises(SwarmctlError, match="invalid duration"):
        parse_duration_ns(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("64m", 64 << 20), ("1g", 1 << 30), ("2GiB", 2 << 30), ("1.5k", 1536)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "64x", "-1m", "1.2.3g"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(SwarmctlError, match="invalid size"):
        parse_size(text)


def test_cpus() -> None:
    assert parse_cpus("0.5") == 500_000_000
    assert parse_cpus("2") == 2_000_000_000
    for bad in ("half", "-1", "inf", "nan"):
        with pytest.raises(SwarmctlError, match="invalid CPU count"):
            parse_cpus(bad)
