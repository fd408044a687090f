"""Addressing of the bridge subnet: the gateway, container addresses and their MACs."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network

from runtime.network.errors import NetworkError, PoolExhaustedError


def parse_subnet(subnet: str) -> IPv4Network:
    """An IPv4 subnet with room for a gateway and at least one container."""
    try:
        network = ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise NetworkError(f"invalid bridge subnet {subnet!r}: {exc}") from None
    if not isinstance(network, IPv4Network):
        raise NetworkError(f"bridge subnet {subnet} is not IPv4")
    if network.prefixlen > 30:
        raise NetworkError(f"bridge subnet {subnet} is too small (at most /30)")
    return network


def gateway_of(network: IPv4Network) -> IPv4Address:
    """The subnet's first host address, held by the bridge."""
    return network.network_address + 1


def lowest_free(network: IPv4Network, used: Collection[IPv4Address]) -> IPv4Address:
    """The lowest container address of `network` not in `used` (nor the gateway)."""
    first = int(gateway_of(network)) + 1
    for number in range(first, int(network.broadcast_address)):
        address = IPv4Address(number)
        if address not in used:
            return address
    raise PoolExhaustedError(f"no free address left in {network}")


def mac_for(address: IPv4Address) -> str:
    """Docker's convention: 02:42 then the four bytes of the address."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in address.packed)
