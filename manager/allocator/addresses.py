"""The addresses of one overlay network: who holds which, handed out serially.

Serial allocation (the next free address after the last one handed out, wrapping around)
delays the reuse of a released address as long as the subnet allows, so a stale ARP or DNS
entry of a gone task rarely points at a new one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from manager.allocator.errors import AllocationError


class AddressPool:
    def __init__(
        self,
        name: str,
        subnet: IPv4Network,
        gateway: IPv4Address,
        dynamic: IPv4Network | None = None,
        reserved: Iterable[IPv4Address] = (),
    ) -> None:
        """`dynamic` is the range addresses are handed out from (default: the subnet);
        `reserved` (and the gateway) are never handed out."""
        self.name = name
        self.subnet = subnet
        self.gateway = gateway
        hosts = dynamic or subnet
        # Network and broadcast addresses are never usable.
        self._first = max(int(hosts.network_address), int(subnet.network_address) + 1)
        self._last = min(int(hosts.broadcast_address), int(subnet.broadcast_address) - 1)
        self._excluded = {int(gateway), *(int(a) for a in reserved)}
        self._owners: dict[int, str] = {}
        self._next = self._first

    def __len__(self) -> int:
        return len(self._owners)

    def cidr(self, address: IPv4Address) -> str:
        return f"{address}/{self.subnet.prefixlen}"

    def parse(self, text: str) -> IPv4Address:
        """An address of this subnet, given bare or in CIDR form with the subnet's prefix."""
        try:
            interface = ipaddress.ip_interface(text)
        except ValueError:
            raise AllocationError(f"{text!r} is not an IP address (network {self.name})") from None
        address = interface.ip
        if not isinstance(address, IPv4Address) or address not in self.subnet:
            raise AllocationError(f"address {text} is outside subnet {self.subnet} of {self.name}")
        if "/" in text and interface.network.prefixlen != self.subnet.prefixlen:
            raise AllocationError(
                f"address {text} does not have the prefix of subnet {self.subnet} of {self.name}"
            )
        return address

    def owner(self, address: IPv4Address) -> str | None:
        return self._owners.get(int(address))

    def allocate(self, owner: str) -> IPv4Address:
        """The next free address after the last one handed out."""
        size = self._last - self._first + 1
        for step in range(size):
            candidate = self._first + (self._next - self._first + step) % size
            if candidate not in self._owners and candidate not in self._excluded:
                self._owners[candidate] = owner
                self._next = candidate + 1 if candidate < self._last else self._first
                return IPv4Address(candidate)
        raise AllocationError(f"no free address left in subnet {self.subnet} of {self.name}")

    def reserve(self, address: IPv4Address, owner: str) -> None:
        """Hold a given address (a requested one, or one found in the store)."""
        value = int(address)
        held_by = self._owners.get(value)
        if held_by == owner:
            return
        if held_by is not None:
            raise AllocationError(f"address {address} of {self.name} is already used by {held_by}")
        if value in self._excluded:
            raise AllocationError(
                f"address {address} of {self.name} is reserved (gateway or IPAM reserved)"
            )
        if not int(self.subnet.network_address) < value < int(self.subnet.broadcast_address):
            raise AllocationError(
                f"address {address} is not a host address of subnet {self.subnet} of {self.name}"
            )
        self._owners[value] = owner

    def release(self, address: IPv4Address, owner: str) -> None:
        """Free `address` if `owner` holds it (a release by anyone else changes nothing)."""
        if self._owners.get(int(address)) == owner:
            del self._owners[int(address)]
