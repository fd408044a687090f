"""Stand-ins for the CA's tests: gRPC servicer contexts (a peer certificate or none, and a
recorded abort), and a node registry held in memory (shared with tests/integration)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import CAError
from manager.ca.pem import certificate_pem
from manager.ca.roles import Role
from shoal.v1 import specs_pb2, types_pb2


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    """Enough of grpc.aio.ServicerContext for the CA: auth_context() and abort()."""

    def __init__(self, peer_certificate_pem: bytes | None = None) -> None:
        self._auth: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
        if peer_certificate_pem is not None:
            self._auth["x509_pem_cert"] = [peer_certificate_pem]

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def node_certificate_pem(ca: ClusterCA, node_id: str, role: Role) -> bytes:
    return certificate_pem(ca.issue(create_csr(generate_node_key()), node_id, role))


@dataclass
class _Node:
    role: Role
    availability: specs_pb2.NodeSpec.Availability.ValueType
    certificate: types_pb2.Certificate


class MemoryNodeRegistry:
    """A manager.ca.registry.NodeRegistry held in memory, with the role changes and removals
    that the store's node objects get from Control in a cluster."""

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
