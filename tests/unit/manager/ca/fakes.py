"""Stand-ins for gRPC servicer contexts: a peer certificate (or none) and a recorded abort."""

from __future__ import annotations

import grpc

from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem
from manager.ca.roles import Role


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
