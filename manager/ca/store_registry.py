"""The CA's node registry backed by the replicated store: a joined node is a Node object."""

from __future__ import annotations

from collections.abc import Callable

from manager.ca.errors import RegistryUnavailable
from manager.ca.roles import Role
from manager.store import NotLeader, Store, StoreError, WriteTx
from shoal.v1 import objects_pb2, specs_pb2, types_pb2


class StoreNodeRegistry:
    """`manager.ca.registry.NodeRegistry` over the store (writes need the leader)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add_node(
        self,
        node_id: str,
        certificate: types_pb2.Certificate,
        availability: specs_pb2.NodeSpec.Availability.ValueType = specs_pb2.NodeSpec.ACTIVE,
    ) -> None:
        def create(tx: WriteTx) -> None:
            node = objects_pb2.Node(id=node_id, role=certificate.role)
            node.spec.desired_role = certificate.role
            node.spec.membership = specs_pb2.NodeSpec.ACCEPTED
            node.spec.availability = availability
            node.status.state = types_pb2.NodeStatus.UNKNOWN
            node.certificate.CopyFrom(certificate)
            tx.create(node)

        await self._write(create)

    async def _write(self, fn: Callable[[WriteTx], None]) -> None:
        try:
            await self.store.update(fn)
        except NotLeader as exc:
            where = f" (the leader is at raft address {exc.leader})" if exc.leader else ""
            raise RegistryUnavailable(f"this manager is not the raft leader{where}") from None
        except StoreError as exc:
            raise RegistryUnavailable(f"the node registry refused the change: {exc}") from None

    async def node_role(self, node_id: str) -> Role | None:
        """The role the cluster has carried out (`role`, not `spec.desired_role`): a demoted
        manager gets a worker certificate only once it has left raft (manager/role_manager)."""
        node = self.store.view(lambda tx: tx.get(objects_pb2.Node, node_id))
        if node is None:
            return None
        return Role.from_proto(node.role)

    async def set_certificate(self, node_id: str, certificate: types_pb2.Certificate) -> None:
        def update(tx: WriteTx) -> None:
            node = tx.get(objects_pb2.Node, node_id)
            if node is None:
                return
            node.certificate.CopyFrom(certificate)
            node.role = certificate.role
            tx.update(node)

        await self._write(update)

    async def certificate(self, node_id: str) -> types_pb2.Certificate | None:
        node = self.store.view(lambda tx: tx.get(objects_pb2.Node, node_id))
        return node.certificate if node is not None and node.HasField("certificate") else None
