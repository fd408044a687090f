"""`-p` specifications: what parses, and the clear error for what does not."""

from __future__ import annotations

import pytest

from runtime.network import InvalidPortError, PortConflictError, PortMapping, parse_port
from runtime.network.ports import check_no_conflicts


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080:80", PortMapping(80, 8080)),
        ("8080:80/tcp", PortMapping(80, 8080, "tcp")),
        ("5353:53/udp", PortMapping(53, 5353, "udp")),
        ("127.0.0.1:8080:80", PortMapping(80, 8080, "tcp", "127.0.0.1")),
        ("10.0.0.5:53:53/udp", PortMapping(53, 53, "udp", "10.0.0.5")),
        ("0.0.0.0:8080:80", PortMapping(80, 8080)),
        ("65535:1", PortMapping(1, 65535)),
    ],
)
def test_valid_specs(spec: str, expected: PortMapping) -> None:
    assert parse_port(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT"),
        ("80", "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT"),
        ("1:2:3:4", "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT"),
        ("[::1]:8080:80", "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT"),
        (":8080:80", "empty host address"),
        ("8080:80/sctp", "protocol must be tcp or udp"),
        ("8080:80/", "protocol must be tcp or udp"),
        ("8080:80/TCP", "protocol must be tcp or udp"),
        ("x:80", "host port 'x' is not a number"),
        ("8080:", "container port '' is not a number"),
        ("8080:-1", "container port '-1' is not a number"),
        ("8080:8O", "container port '8O' is not a number"),
        ("8080:٨٠", "container port '٨٠' is not a number"),
        ("0:80", "host port must be a number from 1 to 65535, not 0"),
        ("8080:65536", "container port must be a number from 1 to 65535, not 65536"),
        ("localhost:8080:80", "host address 'localhost' is not an IP address"),
        ("256.0.0.1:8080:80", "host address '256.0.0.1' is not an IP address"),
        ("::1:8080:80", "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT"),
    ],
)
def test_invalid_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(InvalidPortError) as caught:
        parse_port(spec)
    assert message in str(caught.value)
    assert repr(spec) in str(caught.value)


def test_mappings_built_directly_are_checked_too() -> None:
    with pytest.raises(InvalidPortError, match="host port must be a number"):
        PortMapping(80, 70000)
    with pytest.raises(InvalidPortError, match="container port must be a number"):
        PortMapping(True, 80)
    with pytest.raises(InvalidPortError, match="IPv6"):
        PortMapping(80, 8080, host_ip="::1")
    with pytest.raises(InvalidPortError, match="protocol"):
        PortMapping(80, 8080, protocol="icmp")


def test_str_round_trips_through_parse() -> None:
    for spec in ("8080:80/tcp", "127.0.0.1:53:5353/udp"):
        assert str(parse_port(spec)) == spec


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        ("8080:80", "8080:81", True),
        ("8080:80", "127.0.0.1:8080:80", True),
        ("127.0.0.1:8080:80", "127.0.0.2:8080:80", False),
        ("127.0.0.1:8080:80", "127.0.0.1:8080:81", True),
        ("8080:80/tcp", "8080:80/udp", False),
        ("8080:80", "8081:80", False),
    ],
)
def test_conflicts(a: str, b: str, clash: bool) -> None:
    assert parse_port(a).conflicts_with(parse_port(b)) is clash
    assert parse_port(b).conflicts_with(parse_port(a)) is clash


def test_one_request_may_not_publish_a_host_port_twice() -> None:
    check_no_conflicts((parse_port("8080:80"), parse_port("8081:80")))
    with pytest.raises(PortConflictError, match="8080:80/tcp and 8080:81/tcp"):
        check_no_conflicts((parse_port("8080:80"), parse_port("8080:81")))
