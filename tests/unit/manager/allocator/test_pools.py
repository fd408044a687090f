"""The pools on their own: subnets, addresses, VNIs and ingress ports."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from manager.allocator import (
    FIRST_DYNAMIC_PORT,
    FIRST_VNI,
    LAST_DYNAMIC_PORT,
    AddressPool,
    AllocationError,
    PoolConfig,
    PortAllocator,
    SubnetAllocator,
    VNIAllocator,
)
from shoal.v1 import objects_pb2, types_pb2

TCP = types_pb2.PortConfig.TCP
UDP = types_pb2.PortConfig.UDP
DEFAULT_POOL = PoolConfig((IPv4Network("10.0.0.0/8"),), 24)


def test_subnets_are_carved_in_order_and_skip_taken_ones() -> None:
    subnets = SubnetAllocator()
    subnets.reserve("user", IPv4Network("10.0.1.0/24"))
    assert subnets.allocate("a", DEFAULT_POOL) == IPv4Network("10.0.0.0/24")
    assert subnets.allocate("b", DEFAULT_POOL) == IPv4Network("10.0.2.0/24")
    subnets.reserve("big", IPv4Network("10.0.4.0/22"))
    assert subnets.allocate("c", DEFAULT_POOL) == IPv4Network("10.0.3.0/24")
    assert subnets.allocate("d", DEFAULT_POOL) == IPv4Network("10.0.8.0/24")
    subnets.release("a")
    assert subnets.allocate("e", DEFAULT_POOL) == IPv4Network("10.0.0.0/24")


def test_overlapping_subnet_is_refused_naming_the_holder() -> None:
    subnets = SubnetAllocator()
    subnets.reserve("net1", IPv4Network("10.1.0.0/16"))
    with pytest.raises(
        AllocationError, match=r"10\.1\.2\.0/24 overlaps subnet 10\.1\.0\.0/16 of network net1"
    ):
        subnets.reserve("net2", IPv4Network("10.1.2.0/24"))
    with pytest.raises(AllocationError, match="overlaps"):
        subnets.reserve("net3", IPv4Network("10.0.0.0/8"))
    subnets.reserve("net4", IPv4Network("10.2.0.0/16"))  # adjacent is fine
    assert subnets.subnet_of("net2") is None


def test_exhausted_pool_says_so() -> None:
    subnets = SubnetAllocator()
    small = PoolConfig((IPv4Network("10.9.0.0/23"),), 24)
    subnets.allocate("a", small)
    subnets.allocate("b", small)
    with pytest.raises(AllocationError, match=r"no free /24 subnet left .*10\.9\.0\.0/23"):
        subnets.allocate("c", small)


@pytest.mark.parametrize(
    ("pool", "size", "message"),
    [
        (["10.0.0.0/33"], 24, "not a valid CIDR"),
        (["10.0.0.1/8"], 24, "host bits set"),
        (["fd00::/8"], 24, "IPv6"),
        (["10.0.0.0/24"], 16, "smaller than the subnet_size /16"),
        (["10.0.0.0/8"], 31, "too small"),
    ],
)
def test_bad_cluster_pool_is_refused(pool: list[str], size: int, message: str) -> None:
    cluster = objects_pb2.Cluster(id="c", default_address_pool=pool, subnet_size=size)
    with pytest.raises(AllocationError, match=message):
        PoolConfig.of_cluster(cluster)


def test_cluster_pool_defaults() -> None:
    assert PoolConfig.of_cluster(None) == DEFAULT_POOL
    assert PoolConfig.of_cluster(objects_pb2.Cluster(id="c")) == DEFAULT_POOL


def test_addresses_are_serial_skip_gateway_and_reserved_and_wrap() -> None:
    pool = AddressPool(
        "net",
        IPv4Network("10.0.0.0/29"),
        IPv4Address("10.0.0.1"),
        reserved=[IPv4Address("10.0.0.3")],
    )
    got = [pool.allocate(f"t{i}") for i in range(4)]
    assert got == [IPv4Address(a) for a in ("10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6")]
    with pytest.raises(
        AllocationError, match=r"no free address left in subnet 10\.0\.0\.0/29 of net"
    ):
        pool.allocate("t4")
    pool.release(IPv4Address("10.0.0.4"), "t1")
    assert pool.allocate("t5") == IPv4Address("10.0.0.4")


def test_a_released_address_is_reused_last() -> None:
    pool = AddressPool("net", IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
    first = pool.allocate("a")
    pool.release(first, "a")
    assert pool.allocate("b") != first


def test_release_by_another_owner_changes_nothing() -> None:
    pool = AddressPool("net", IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
    address = pool.allocate("a")
    pool.release(address, "b")
    assert pool.owner(address) == "a"


def test_reserving_addresses_checks_everything() -> None:
    pool = AddressPool("net", IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
    pool.reserve(pool.parse("10.0.0.7/24"), "a")
    pool.reserve(pool.parse("10.0.0.7"), "a")  # again, same owner: fine
    with pytest.raises(AllocationError, match="already used by a"):
        pool.reserve(pool.parse("10.0.0.7"), "b")
    with pytest.raises(AllocationError, match="reserved"):
        pool.reserve(pool.parse("10.0.0.1"), "b")
    with pytest.raises(AllocationError, match="not a host address"):
        pool.reserve(pool.parse("10.0.0.255"), "b")
    with pytest.raises(AllocationError, match="outside subnet"):
        pool.parse("10.0.1.7")
    with pytest.raises(AllocationError, match="does not have the prefix"):
        pool.parse("10.0.0.8/16")
    with pytest.raises(AllocationError, match="not an IP address"):
        pool.parse("ten")


def test_dynamic_range_limits_what_is_handed_out() -> None:
    pool = AddressPool(
        "net", IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"), IPv4Network("10.0.0.128/30")
    )
    assert [pool.allocate(str(i)) for i in range(4)] == [
        IPv4Address(f"10.0.0.{n}") for n in (128, 129, 130, 131)
    ]
    with pytest.raises(AllocationError, match="no free address"):
        pool.allocate("x")


def test_vnis_start_at_4096_are_unique_and_reused_after_release() -> None:
    vnis = VNIAllocator()
    assert [vnis.allocate(n) for n in ("a", "b", "c")] == [FIRST_VNI, FIRST_VNI + 1, FIRST_VNI + 2]
    vnis.reserve(5000, "d")
    with pytest.raises(AllocationError, match="VNI 5000 is already used by network d"):
        vnis.reserve(5000, "e")
    with pytest.raises(AllocationError, match="outside"):
        vnis.reserve(42, "e")
    vnis.release("a")
    assert vnis.allocate("f") == FIRST_VNI + 3
    assert vnis.vni_of("a") is None


def test_ports_dynamic_range_and_conflicts() -> None:
    ports = PortAllocator()
    assert ports.allocate(TCP, "s1") == (TCP, FIRST_DYNAMIC_PORT)
    assert ports.allocate(UDP, "s1") == (UDP, FIRST_DYNAMIC_PORT)
    ports.reserve((TCP, 8080), "s1")
    ports.reserve((UDP, 8080), "s2")  # another protocol: no conflict
    with pytest.raises(AllocationError, match="port 8080/tcp is already published by service s1"):
        ports.reserve((TCP, 8080), "s2")
    with pytest.raises(AllocationError, match="outside 1-65535"):
        ports.reserve((TCP, 70000), "s2")
    ports.reserve((TCP, FIRST_DYNAMIC_PORT + 1), "s3")  # an explicit port inside the range
    assert ports.allocate(TCP, "s4") == (TCP, FIRST_DYNAMIC_PORT + 2)


def test_dynamic_ports_run_out_with_a_clear_error() -> None:
    ports = PortAllocator()
    for _ in range(LAST_DYNAMIC_PORT - FIRST_DYNAMIC_PORT + 1):
        ports.allocate(TCP, "s")
    with pytest.raises(AllocationError, match="no free tcp port left in 30000-32767"):
        ports.allocate(TCP, "s")
    assert ports.allocate(UDP, "s") == (UDP, FIRST_DYNAMIC_PORT)
