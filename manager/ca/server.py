"""The NodeCA and CA gRPC services (grpc.aio) of a manager.

Certificates are issued at once (auto-accept): a valid worker token admits a worker, a valid
manager token a manager. A node renewing presents its current certificate instead of a token
and keeps its id; its role is the one the registry holds now (promotion and demotion take
effect at the next renewal), and a node the registry no longer knows cannot renew.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import grpc

from manager.ca import base36, metrics
from manager.ca.auth import Authorizer, Policy, requires, rpc_method
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import (
    AuthorizationError,
    CAError,
    JoinTokenRefused,
    PermissionDenied,
    RegistryUnavailable,
    Unauthenticated,
    UnknownNode,
)
from manager.ca.pem import certificate_pem
from manager.ca.registry import NodeRegistry
from manager.ca.roles import Role
from manager.ca.root_ca import utcnow
from shoal.v1 import ca_pb2, ca_pb2_grpc, specs_pb2, types_pb2

_ANY_NODE = (Role.WORKER, Role.MANAGER)
CA_POLICIES: dict[str, Policy] = {
    # Authenticated by the join token, or by the node's certificate for a renewal.
    rpc_method(ca_pb2.DESCRIPTOR, "NodeCA", "IssueNodeCertificate"): requires(
        *_ANY_NODE, anonymous=True
    ),
    # A joining node fetches its new certificate before it has one; certificates are public.
    rpc_method(ca_pb2.DESCRIPTOR, "NodeCA", "NodeCertificateStatus"): requires(
        *_ANY_NODE, anonymous=True
    ),
    # Public; the joining node pins it against its token's digest.
    rpc_method(ca_pb2.DESCRIPTOR, "CA", "GetRootCACertificate"): requires(
        *_ANY_NODE, anonymous=True
    ),
    rpc_method(ca_pb2.DESCRIPTOR, "CA", "GetUnlockKey"): requires(Role.MANAGER),
}


def _status_of(error: CAError) -> grpc.StatusCode:
    if isinstance(error, AuthorizationError):
        return error.code
    if isinstance(error, JoinTokenRefused):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, UnknownNode):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, RegistryUnavailable):
        return grpc.StatusCode.UNAVAILABLE
    # Malformed tokens, signing requests and ids: the caller sent something unusable.
    return grpc.StatusCode.INVALID_ARGUMENT


class NodeCAServicer(ca_pb2_grpc.NodeCAServicer):
    def __init__(
        self,
        ca: ClusterCA,
        registry: NodeRegistry,
        authorizer: Authorizer,
        clock: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self._ca = ca
        self._registry = registry
        self._authorizer = authorizer
        self._clock = clock

    async def IssueNodeCertificate(
        self, request: ca_pb2.IssueNodeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.IssueNodeCertificateResponse:
        try:
            if request.token:
                node_id = await self._join(request)
            else:
                node_id = await self._renew(request, context)
        except CAError as exc:
            metrics.REQUESTS_REFUSED.labels(reason=type(exc).__name__).inc()
            await context.abort(_status_of(exc), str(exc))
        return ca_pb2.IssueNodeCertificateResponse(
            node_id=node_id, node_membership=specs_pb2.NodeSpec.ACCEPTED
        )

    async def _join(self, request: ca_pb2.IssueNodeCertificateRequest) -> str:
        role = self._ca.join_tokens.role_of(request.token)
        node_id = base36.new_id()
        record = self._issue(request.csr, node_id, role)
        await self._registry.add_node(node_id, record, request.availability)
        metrics.CERTIFICATES_ISSUED.labels(role=role.ou, reason="join").inc()
        return node_id

    async def _renew(
        self, request: ca_pb2.IssueNodeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> str:
        caller = self._authorizer.identify(context)
        if caller is None:
            raise Unauthenticated(
                "no join token and no client certificate: joining needs a join token,"
                " renewing needs the node's current certificate"
            )
        role = await self._registry.node_role(caller.node_id)
        if role is None:
            raise PermissionDenied(
                f"node {caller.node_id} is not a member of the cluster: it cannot renew"
            )
        record = self._issue(request.csr, caller.node_id, role)
        await self._registry.set_certificate(caller.node_id, record)
        metrics.CERTIFICATES_ISSUED.labels(role=role.ou, reason="renewal").inc()
        return caller.node_id

    def _issue(self, csr: bytes, node_id: str, role: Role) -> types_pb2.Certificate:
        certificate = self._ca.issue(csr, node_id, role, self._clock())
        return types_pb2.Certificate(
            role=role.to_proto(),
            csr=csr,
            status=types_pb2.IssuanceStatus(state=types_pb2.IssuanceStatus.ISSUED),
            certificate=certificate_pem(certificate),
            cn=node_id,
        )

    async def NodeCertificateStatus(
        self, request: ca_pb2.NodeCertificateStatusRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.NodeCertificateStatusResponse:
        try:
            record = await self._certificate(request.node_id)
        except CAError as exc:
            await context.abort(_status_of(exc), str(exc))
        return ca_pb2.NodeCertificateStatusResponse(status=record.status, certificate=record)

    async def _certificate(self, node_id: str) -> types_pb2.Certificate:
        if not node_id:
            raise CAError("node_id is empty")
        record = await self._registry.certificate(node_id)
        if record is None:
            raise UnknownNode(f"no node {node_id!r} is registered")
        return record


class CAServicer(ca_pb2_grpc.CAServicer):
    def __init__(self, ca: ClusterCA) -> None:
        self._ca = ca

    async def GetRootCACertificate(
        self, request: ca_pb2.GetRootCACertificateRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.GetRootCACertificateResponse:
        return ca_pb2.GetRootCACertificateResponse(certificate=self._ca.root.cert_pem)

    async def GetUnlockKey(
        self, request: ca_pb2.GetUnlockKeyRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.GetUnlockKeyResponse:
        """Shoal has no autolock: the key is empty, as the API defines for autolock off."""
        return ca_pb2.GetUnlockKeyResponse()


def add_ca_services(
    server: grpc.aio.Server, ca: ClusterCA, registry: NodeRegistry, authorizer: Authorizer
) -> None:
    """Adds NodeCA and CA to `server`, which must run an AuthorizationInterceptor with
    CA_POLICIES."""
    ca_pb2_grpc.add_NodeCAServicer_to_server(NodeCAServicer(ca, registry, authorizer), server)
    ca_pb2_grpc.add_CAServicer_to_server(CAServicer(ca), server)
