"""Addressing of the bridge subnet, and the names of host-side veths."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from runtime.network import NetworkError, PoolExhaustedError
from runtime.network.bridge import veth_name
from runtime.network.ipam import gateway_of, lowest_free, mac_for, parse_subnet

SUBNET = IPv4Network("172.18.0.0/16")


def test_the_gateway_is_the_first_host_address() -> None:
    assert gateway_of(SUBNET) == IPv4Address("172.18.0.1")


def test_lowest_free_skips_the_gateway_and_used_addresses() -> None:
    assert lowest_free(SUBNET, set()) == IPv4Address("172.18.0.2")
    used = {IPv4Address("172.18.0.2"), IPv4Address("172.18.0.4")}
    assert lowest_free(SUBNET, used) == IPv4Address("172.18.0.3")


def test_a_full_subnet_says_so() -> None:
    small = IPv4Network("10.9.0.0/29")  # .1 gateway, .2-.6 containers, .7 broadcast
    used = {IPv4Address(f"10.9.0.{n}") for n in range(2, 7)}
    assert lowest_free(small, used - {IPv4Address("10.9.0.6")}) == IPv4Address("10.9.0.6")
    with pytest.raises(PoolExhaustedError, match=r"no free address left in 10\.9\.0\.0/29"):
        lowest_free(small, used)


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("172.18.0.0/31", "too small"),
        ("fd00::/64", "not IPv4"),
        ("172.18.0.1/16", "invalid bridge subnet"),
        ("bridge", "invalid bridge subnet"),
    ],
)
def test_bad_subnets(subnet: str, message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        parse_subnet(subnet)


def test_mac_is_derived_from_the_address() -> None:
    assert mac_for(IPv4Address("172.18.0.2")) == "02:42:ac:12:00:02"
    assert mac_for(IPv4Address("10.255.1.254")) == "02:42:0a:ff:01:fe"


def test_veth_names_fit_ifnamsiz_and_differ_for_ids_sharing_a_prefix() -> None:
    assert veth_name("web") == "vshweb"
    assert veth_name("a" * 12) == "vsh" + "a" * 12
    a, b = veth_name("f" * 63 + "0"), veth_name("f" * 63 + "1")
    assert len(a) == len(b) == 15
    assert a.startswith("vshffffff") and b.startswith("vshffffff")
    assert a != b
    assert veth_name("f" * 63 + "0") == a  # stable: detach finds what attach made
