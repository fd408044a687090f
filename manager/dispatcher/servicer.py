"""The Dispatcher gRPC service (grpc.aio): who is calling, then the Dispatcher's answer.

The caller's node id comes from its certificate (`certificate_identity`), checked first by
the CA's AuthorizationInterceptor with DISPATCHER_POLICIES: every node runs an agent, so
workers and managers alike may call every Dispatcher method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import NoReturn

import grpc

from manager.ca.auth import Authorizer, Policy, requires, rpc_method
from manager.ca.errors import AuthorizationError, Unauthenticated
from manager.ca.roles import Role
from manager.dispatcher.dispatcher import Dispatcher
from manager.dispatcher.errors import (
    DispatcherError,
    InvalidRequest,
    InvalidSession,
    NotRunning,
    NotYourTask,
    RateLimited,
    SessionEnded,
    StoreUnavailable,
    UnknownNode,
)
from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc

# Who is calling: the node id of the RPC's caller (raises AuthorizationError if unknown).
Identify = Callable[[grpc.aio.ServicerContext], str]

METHODS = ("Session", "Heartbeat", "UpdateTaskStatus", "Assignments")
DISPATCHER_POLICIES: dict[str, Policy] = {
    rpc_method(dispatcher_pb2.DESCRIPTOR, "Dispatcher", method): requires(Role.WORKER, Role.MANAGER)
    for method in METHODS
}

STATUS_CODES: dict[type[DispatcherError], grpc.StatusCode] = {
    NotRunning: grpc.StatusCode.UNAVAILABLE,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    SessionEnded: grpc.StatusCode.UNAVAILABLE,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnknownNode: grpc.StatusCode.NOT_FOUND,
    InvalidSession: grpc.StatusCode.NOT_FOUND,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotYourTask: grpc.StatusCode.PERMISSION_DENIED,
}


def certificate_identity(authorizer: Authorizer) -> Identify:
    """The caller's node id from its verified client certificate."""

    def identify(context: grpc.aio.ServicerContext) -> str:
        caller = authorizer.identify(context)
        if caller is None:
            raise Unauthenticated("the Dispatcher needs the caller's node certificate")
        return caller.node_id

    return identify


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer string ("ipv4:10.0.0.2:4242" -> "10.0.0.2")."""
    scheme, _, rest = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return ""
    host = rest.rpartition(":")[0]
    return host.removeprefix("[").removesuffix("]")


class DispatcherServicer(dispatcher_pb2_grpc.DispatcherServicer):
    def __init__(self, dispatcher: Dispatcher, identify: Identify) -> None:
        self._dispatcher = dispatcher
        self._identify = identify

    async def Session(
        self, request: dispatcher_pb2.SessionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dispatcher_pb2.SessionMessage]:
        node_id = await self._caller(context)
        try:
            session = await self._dispatcher.open_session(
                node_id, request.description, peer_host(context.peer()), request.session_id
            )
            async for message in self._dispatcher.session_messages(session):
                yield message
        except DispatcherError as exc:
            await _abort(context, exc)

    async def Heartbeat(
        self, request: dispatcher_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> dispatcher_pb2.HeartbeatResponse:
        node_id = await self._caller(context)
        try:
            period = self._dispatcher.heartbeat(node_id, request.session_id)
        except DispatcherError as exc:
            await _abort(context, exc)
        response = dispatcher_pb2.HeartbeatResponse()
        response.period.FromNanoseconds(round(period * 1e9))
        return response

    async def UpdateTaskStatus(
        self, request: dispatcher_pb2.UpdateTaskStatusRequest, context: grpc.aio.ServicerContext
    ) -> dispatcher_pb2.UpdateTaskStatusResponse:
        node_id = await self._caller(context)
        try:
            await self._dispatcher.update_task_status(node_id, request.session_id, request.updates)
        except DispatcherError as exc:
            await _abort(context, exc)
        return dispatcher_pb2.UpdateTaskStatusResponse()

    async def Assignments(
        self, request: dispatcher_pb2.AssignmentsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dispatcher_pb2.AssignmentsMessage]:
        node_id = await self._caller(context)
        try:
            async for message in self._dispatcher.assignments(node_id, request.session_id):
                yield message
        except DispatcherError as exc:
            await _abort(context, exc)

    async def _caller(self, context: grpc.aio.ServicerContext) -> str:
        try:
            return self._identify(context)
        except AuthorizationError as exc:
            await context.abort(exc.code, str(exc))
            raise  # abort raises; this only tells the type checker


async def _abort(context: grpc.aio.ServicerContext, error: DispatcherError) -> NoReturn:
    code = next(
        (c for kind, c in STATUS_CODES.items() if isinstance(error, kind)),
        grpc.StatusCode.INTERNAL,
    )
    await context.abort(code, str(error))
    raise error  # abort raises; this only tells the type checker


def add_dispatcher_service(
    server: grpc.aio.Server, dispatcher: Dispatcher, identify: Identify
) -> None:
    """Adds the Dispatcher to `server`, which must run an AuthorizationInterceptor with
    DISPATCHER_POLICIES."""
    dispatcher_pb2_grpc.add_DispatcherServicer_to_server(
        DispatcherServicer(dispatcher, identify), server
    )
