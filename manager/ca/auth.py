"""Who may call which RPC: the caller's identity from its verified certificate, and a server
interceptor that enforces each method's stated roles.

Every method must be in the interceptor's table; a method missing from it is refused, so a new
RPC is never callable by accident. A method marked `anonymous` may also be called without a
client certificate (the bootstrap methods: a join token or nothing authenticates them); when a
certificate is presented anyway, it is checked like any other.
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FileDescriptor

from manager.ca import metrics
from manager.ca.certificates import NodeIdentity, read_node_identity, verify_node_certificate
from manager.ca.errors import (
    AuthorizationError,
    CertificateError,
    PermissionDenied,
    Unauthenticated,
)
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA, utcnow

PEER_CERTIFICATE_KEY = "x509_pem_cert"


@dataclass(frozen=True)
class Policy:
    """The roles allowed to call a method, and whether it is open to callers without a cert."""

    roles: frozenset[Role]
    anonymous: bool = False


def requires(*roles: Role, anonymous: bool = False) -> Policy:
    return Policy(frozenset(roles), anonymous)


# What a method missing from the interceptor's table gets: refused to everyone.
NOBODY = Policy(frozenset())


def rpc_method(file: FileDescriptor, service: str, method: str) -> str:
    """The full gRPC method name (`/pkg.Service/Method`), checked against the descriptor."""
    descriptor = file.services_by_name[service]
    if method not in descriptor.methods_by_name:
        raise KeyError(f"service {descriptor.full_name} has no method {method}")
    return f"/{descriptor.full_name}/{method}"


def _describe(roles: frozenset[Role]) -> str:
    return " or ".join(sorted(role.ou for role in roles))


Standing = Callable[[NodeIdentity, str, "Policy"], None]


class Authorizer:
    """Identifies callers by their client certificate (sync and grpc.aio contexts alike)."""

    def __init__(
        self,
        root: RootCA,
        cluster_id: str,
        clock: Callable[[], datetime.datetime] = utcnow,
        standing: Standing | None = None,
    ) -> None:
        """`standing(caller, method, policy)`: raises AuthorizationError when the cluster
        no longer lets the certificate's node call `method` (removed, or its role
        changed); a certificate stays valid for 90 days, so it cannot tell alone."""
        self._root = root
        self._cluster_id = cluster_id
        self._clock = clock
        self._standing = standing

    def identify(self, context: grpc.ServicerContext) -> NodeIdentity | None:
        """The caller named by its verified certificate, or None when it presented none.

        gRPC verified the chain at the handshake; it is verified again here against this
        cluster's root so that a server built with broader trust cannot let a stranger in.
        """
        certificates = context.auth_context().get(PEER_CERTIFICATE_KEY)
        if not certificates:
            return None
        try:
            leaf = verify_node_certificate(certificates[0], self._root, self._clock())
            caller = read_node_identity(leaf)
        except CertificateError as exc:
            raise Unauthenticated(f"client certificate refused: {exc}") from exc
        if caller.cluster_id != self._cluster_id:
            raise PermissionDenied(
                f"client certificate is for cluster {caller.cluster_id}, not {self._cluster_id}"
            )
        return caller

    def authorize(
        self, context: grpc.ServicerContext, method: str, policy: Policy
    ) -> NodeIdentity | None:
        """The caller, if `policy` lets it call `method`; raises AuthorizationError otherwise."""
        if not policy.roles and not policy.anonymous:
            raise PermissionDenied(f"{method} states no allowed roles, so nobody may call it")
        caller = self.identify(context)
        if caller is None:
            if policy.anonymous:
                return None
            raise Unauthenticated(
                f"{method} needs a client certificate ({_describe(policy.roles)});"
                " none was presented"
            )
        if caller.role not in policy.roles:
            raise PermissionDenied(
                f"{method} is for {_describe(policy.roles)} only;"
                f" node {caller.node_id} is a {caller.role.ou}"
            )
        if self._standing is not None:
            self._standing(caller, method, policy)
        return caller


Behavior = Callable[..., Any]


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks every call against `policies` (full method name -> Policy) before its handler."""

    def __init__(self, authorizer: Authorizer, policies: Mapping[str, Policy]) -> None:
        self._authorizer = authorizer
        self._policies = dict(policies)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        policy = self._policies.get(method, NOBODY)

        async def check(context: grpc.aio.ServicerContext) -> None:
            try:
                self._authorizer.authorize(context, method, policy)
            except AuthorizationError as exc:
                metrics.RPCS_DENIED.labels(code=exc.code.name).inc()
                await context.abort(exc.code, str(exc))

        if handler.request_streaming and handler.response_streaming:
            return handler._replace(stream_stream=_guard(handler.stream_stream, check))
        if handler.request_streaming:
            return handler._replace(stream_unary=_guard(handler.stream_unary, check))
        if handler.response_streaming:
            return handler._replace(unary_stream=_guard(handler.unary_stream, check))
        return handler._replace(unary_unary=_guard(handler.unary_unary, check))


def _guard(
    behavior: Behavior, check: Callable[[grpc.aio.ServicerContext], Awaitable[None]]
) -> Behavior:
    """`behavior` preceded by `check`, keeping its kind (async generator or coroutine)."""
    if inspect.isasyncgenfunction(behavior):

        async def guarded_stream(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            await check(context)
            async for response in behavior(request, context):
                yield response

        return guarded_stream

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await check(context)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return guarded
