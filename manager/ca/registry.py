"""Where the CA records nodes and their certificates.

The servicers only need these four calls, so the store-backed registry (node objects in the
Raft store) can replace the in-memory one without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from manager.ca.errors import CAError
from manager.ca.roles import Role
from shoal.v1 import specs_pb2, types_pb2


class NodeRegistry(Protocol):
    async def add_node(
        self,
        node_id: str,
        certificate: types_pb2.Certificate,
        availability: specs_pb2.NodeSpec.Availability.ValueType,
    ) -> None:
        """Records a node that just joined, with its first certificate."""

    async def node_role(self, node_id: str) -> Role | None:
        """The node's current role, or None when it is not (or no longer) a member."""

    async def set_certificate(self, node_id: str, certificate: types_pb2.Certificate) -> None:
        """Replaces a member's certificate (renewal)."""

    async def certificate(self, node_id: str) -> types_pb2.Certificate | None:
        """The node's certificate record, or None for an unknown node."""


@dataclass
class _Node:
    role: Role
    availability: specs_pb2.NodeSpec.Availability.ValueType
    certificate: types_pb2.Certificate


class MemoryNodeRegistry:
    """A NodeRegistry held in memory (one manager, nothing persisted)."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}

    async def add_node(
        self,
        node_id: str,
        certificate: types_pb2.Certificate,
        availability: specs_pb2.NodeSpec.Availability.ValueType,
    ) -> None:
        if node_id in self._nodes:
            raise CAError(f"node {node_id} is already registered")
        role = Role.from_proto(certificate.role)
        self._nodes[node_id] = _Node(role, availability, certificate)

    async def node_role(self, node_id: str) -> Role | None:
        node = self._nodes.get(node_id)
        return node.role if node is not None else None

    async def set_certificate(self, node_id: str, certificate: types_pb2.Certificate) -> None:
        node = self._nodes.get(node_id)
        if node is None:
            raise CAError(f"node {node_id} is not registered")
        node.certificate = certificate

    async def certificate(self, node_id: str) -> types_pb2.Certificate | None:
        node = self._nodes.get(node_id)
        return node.certificate if node is not None else None

    def __len__(self) -> int:
        return len(self._nodes)

    def availability(self, node_id: str) -> specs_pb2.NodeSpec.Availability.ValueType:
        return self._nodes[node_id].availability

    def set_role(self, node_id: str, role: Role) -> None:
        """Promotes or demotes a node: its next renewal is issued for `role`."""
        self._nodes[node_id].role = role

    def remove(self, node_id: str) -> None:
        """Removes a node: it can no longer renew its certificate."""
        del self._nodes[node_id]
