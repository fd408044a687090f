"""Durations, sizes and CPU counts as the CLIs take them; sizes and durations for people."""

from __future__ import annotations

import pytest

from common.errors import InvalidValue
from common.units import (
    INT64_MAX,
    human_duration,
    human_size,
    parse_cpus,
    parse_duration,
    parse_duration_ns,
    parse_size,
)

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
        (".5s", S // 2),
        ("0", 0),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("2562047h", 2562047 * 3600 * S),
    ],
)
def test_durations_parse_like_docker(text: str, nanos: int) -> None:
    assert parse_duration_ns(text) == nanos


@pytest.mark.parametrize("text", ["", "5", "5x", "s", "1m30", "-5s", "5 s", "abc", "nan", "1e3s"])
def test_bad_durations_are_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidValue, match="invalid duration"):
        parse_duration_ns(text)


@pytest.mark.parametrize("text", ["2562048h", "9" * 400 + "h", "9" * 30 + "ns"])
def test_durations_past_int64_nanoseconds_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="longer than 2562047h"):
        parse_duration_ns(text)


def test_duration_as_protobuf() -> None:
    assert parse_duration("1m30s").ToSeconds() == 90


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("512b", 512),
        ("64m", 64 << 20),
        ("64M", 64 << 20),
        ("1g", 1 << 30),
        ("2GiB", 2 << 30),
        ("1.5k", 1536),
        (" 1t ", 1 << 40),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "64x", "-1m", "1.2.3g", "1bib", "nan", "inf", "1e3"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidValue, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["9" * 400, "99999999t"])
def test_sizes_past_int64_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="more than 8 EiB"):
        parse_size(text)


def test_cpus() -> None:
    assert parse_cpus("0.5") == 500_000_000
    assert parse_cpus("2") == 2_000_000_000
    assert parse_cpus("0.57") == 570_000_000  # rounded, not cut to 569999999
    assert parse_cpus("0.000000001") == 1


@pytest.mark.parametrize("text", ["half", "", "-1", "inf", "-inf", "nan", "NaN", "0", "0.0"])
def test_bad_cpus_are_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidValue, match="invalid CPU count"):
        parse_cpus(text)


@pytest.mark.parametrize("text", ["1e-12", "1e300", str(INT64_MAX)])
def test_cpus_out_of_range(text: str) -> None:
    with pytest.raises(InvalidValue, match=r"must be 0\.000000001 to"):
        parse_cpus(text)


def test_zero_cpus_where_zero_means_no_limit() -> None:
    assert parse_cpus("0", allow_zero=True) == 0
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(InvalidValue, match="0 or more"):
            parse_cpus(bad, allow_zero=True)


def test_sizes_and_durations_for_people() -> None:
    assert human_size(512) == "512B"
    assert human_size(1536) == "1.5KiB"
    assert human_size(64 << 20) == "64MiB"
    assert human_size(3 << 40) == "3TiB"
    assert human_duration(5.5) == "5 seconds"
    assert human_duration(1) == "1 second"
    assert human_duration(3 * 3600) == "3 hours"
    assert human_duration(86400 * 2 + 5) == "2 days"
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(-30) == "Less than a second"  # a clock a little behind
