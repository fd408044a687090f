"""Ports published in ingress mode: one service per (protocol, port) across the cluster.

A published_port of 0 gets one from 30000-32767 (Docker's dynamic range); an explicit one
is refused when another service publishes it already.
"""

from __future__ import annotations

from typing import TypeAlias

from manager.allocator.errors import AllocationError
from shoal.v1 import types_pb2

FIRST_DYNAMIC_PORT = 30000
LAST_DYNAMIC_PORT = 32767

Protocol: TypeAlias = types_pb2.PortConfig.Protocol.ValueType
PortKey: TypeAlias = tuple[Protocol, int]


def protocol_name(protocol: Protocol) -> str:
    return types_pb2.PortConfig.Protocol.Name(protocol).lower()


def describe(key: PortKey) -> str:
    protocol, port = key
    return f"{port}/{protocol_name(protocol)}"


class PortAllocator:
    def __init__(self) -> None:
        self._owners: dict[PortKey, str] = {}
        self._next: dict[Protocol, int] = {}  # per protocol: where the next search starts

    def owner(self, key: PortKey) -> str | None:
        return self._owners.get(key)

    def reserve(self, key: PortKey, owner: str) -> None:
        _, port = key
        if not 1 <= port <= 65535:
            raise AllocationError(f"published port {port} is outside 1-65535")
        held_by = self._owners.get(key)
        if held_by is not None and held_by != owner:
            raise AllocationError(f"port {describe(key)} is already published by service {held_by}")
        self._owners[key] = owner

    def allocate(self, protocol: Protocol, owner: str) -> PortKey:
        """A free port of the dynamic range, after the last one handed out."""
        size = LAST_DYNAMIC_PORT - FIRST_DYNAMIC_PORT + 1
        start = self._next.get(protocol, FIRST_DYNAMIC_PORT)
        for step in range(size):
            port = FIRST_DYNAMIC_PORT + (start - FIRST_DYNAMIC_PORT + step) % size
            key = (protocol, port)
            if key not in self._owners:
                self._owners[key] = owner
                self._next[protocol] = port + 1 if port < LAST_DYNAMIC_PORT else FIRST_DYNAMIC_PORT
                return key
        raise AllocationError(
            f"no free {protocol_name(protocol)} port left in "
            f"{FIRST_DYNAMIC_PORT}-{LAST_DYNAMIC_PORT}"
        )

    def release(self, key: PortKey, owner: str) -> None:
        if self._owners.get(key) == owner:
            del self._owners[key]
