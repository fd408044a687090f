"""Where the CA records nodes and their certificates.

The servicers only need these four calls: the manager passes the store-backed registry
(node objects in the Raft store, store_registry.py); the CA's tests an in-memory one.
"""

from __future__ import annotations

from typing import Protocol

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
