"""Overlay subnets: kept disjoint, carved in slices from the cluster's default address pools."""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Network

from manager.allocator.errors import AllocationError
from shoal.v1 import objects_pb2

DEFAULT_ADDRESS_POOL = ("10.0.0.0/8",)
DEFAULT_SUBNET_SIZE = 24
# A subnet needs room for a gateway and at least one task besides network and broadcast.
LONGEST_PREFIX = 30


def parse_subnet(text: str, what: str) -> IPv4Network:
    """An IPv4 CIDR with no host bits set, of prefix /30 or shorter."""
    try:
        subnet = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise AllocationError(f"{what} {text!r} is not a valid CIDR subnet: {exc}") from None
    if not isinstance(subnet, IPv4Network):
        raise AllocationError(f"{what} {text!r} is IPv6; overlay networks are IPv4 only")
    if subnet.prefixlen > LONGEST_PREFIX:
        raise AllocationError(
            f"{what} {text!r} is too small: the longest prefix is /{LONGEST_PREFIX}"
        )
    return subnet


@dataclass(frozen=True)
class PoolConfig:
    """Where subnets of networks created without one come from."""

    pools: tuple[IPv4Network, ...]
    subnet_size: int

    @classmethod
    def of_cluster(cls, cluster: objects_pb2.Cluster | None) -> PoolConfig:
        """The cluster's default_address_pool and subnet_size (defaults when unset)."""
        texts = tuple(cluster.default_address_pool) if cluster is not None else ()
        size = cluster.subnet_size if cluster is not None else 0
        pools = tuple(
            parse_subnet(text, "cluster default_address_pool entry")
            for text in texts or DEFAULT_ADDRESS_POOL
        )
        size = size or DEFAULT_SUBNET_SIZE
        if size > LONGEST_PREFIX:
            raise AllocationError(
                f"cluster subnet_size /{size} is too small: the longest prefix is /{LONGEST_PREFIX}"
            )
        for pool in pools:
            if pool.prefixlen > size:
                raise AllocationError(
                    f"cluster default_address_pool entry {pool} is smaller than the "
                    f"subnet_size /{size} carved from it"
                )
        return cls(pools, size)


class SubnetAllocator:
    """Subnets by owner (a network id); no two overlap."""

    def __init__(self) -> None:
        self._starts: list[int] = []  # sorted first addresses of the subnets held
        self._held: dict[int, tuple[IPv4Network, str]] = {}  # first address -> (subnet, owner)
        self._by_owner: dict[str, IPv4Network] = {}

    def subnet_of(self, owner: str) -> IPv4Network | None:
        return self._by_owner.get(owner)

    def reserve(self, owner: str, subnet: IPv4Network) -> None:
        """Hold `subnet` for `owner`; AllocationError if it overlaps another's."""
        if self._by_owner.get(owner) == subnet:
            return
        if owner in self._by_owner:
            raise AllocationError(f"network {owner} already has subnet {self._by_owner[owner]}")
        clash = self._overlapping(int(subnet.network_address), int(subnet.broadcast_address))
        if clash is not None:
            raise AllocationError(
                f"subnet {subnet} overlaps subnet {clash[0]} of network {clash[1]}"
            )
        self._add(owner, subnet)

    def allocate(self, owner: str, config: PoolConfig) -> IPv4Network:
        """The first free slice of `config.subnet_size` in the pools, held for `owner`."""
        if owner in self._by_owner:
            raise AllocationError(f"network {owner} already has subnet {self._by_owner[owner]}")
        size = 1 << (32 - config.subnet_size)
        for pool in config.pools:
            start, last = int(pool.network_address), int(pool.broadcast_address)
            while start + size - 1 <= last:
                clash = self._overlapping(start, start + size - 1)
                if clash is None:
                    subnet = IPv4Network((start, config.subnet_size))
                    self._add(owner, subnet)
                    return subnet
                after = int(clash[0].broadcast_address) + 1
                start = -(-after // size) * size  # the next slice boundary at or after it
        pools = ", ".join(str(pool) for pool in config.pools)
        raise AllocationError(
            f"no free /{config.subnet_size} subnet left in the default address pool ({pools})"
        )

    def release(self, owner: str) -> None:
        subnet = self._by_owner.pop(owner, None)
        if subnet is None:
            return
        start = int(subnet.network_address)
        del self._held[start]
        del self._starts[bisect.bisect_left(self._starts, start)]

    def _add(self, owner: str, subnet: IPv4Network) -> None:
        start = int(subnet.network_address)
        bisect.insort(self._starts, start)
        self._held[start] = (subnet, owner)
        self._by_owner[owner] = subnet

    def _overlapping(self, first: int, last: int) -> tuple[IPv4Network, str] | None:
        """A held subnet overlapping [first, last]: held subnets are disjoint, so only the
        one starting last at or before `last` can."""
        i = bisect.bisect_right(self._starts, last) - 1
        if i < 0:
            return None
        subnet, owner = self._held[self._starts[i]]
        return (subnet, owner) if int(subnet.broadcast_address) >= first else None
