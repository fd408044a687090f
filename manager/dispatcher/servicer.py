"""The Dispatcher gRPC service (grpc.aio): who is calling, then the Dispatcher's answer.

The caller's node id comes from its certificate (`certificate_identity`), checked first by
the CA's AuthorizationInterceptor with DISPATCHER_POLICIES: every node runs an agent, so
workers and managers alike may call every Dispatcher method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

import grpc

from manager.ca.auth import Policy, requires, rpc_method
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
from manager.node_rpc import Identify, abort_with, caller_node, peer_host
from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc

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
        return await caller_node(self._identify, context)


async def _abort(context: grpc.aio.ServicerContext, error: DispatcherError) -> NoReturn:
    await abort_with(context, error, STATUS_CODES)


def add_dispatcher_service(
    server: grpc.aio.Server, dispatcher: Dispatcher, identify: Identify
) -> None:
    """Adds the Dispatcher to `server`, which must run an AuthorizationInterceptor with
    DISPATCHER_POLICIES."""
    dispatcher_pb2_grpc.add_DispatcherServicer_to_server(
        DispatcherServicer(dispatcher, identify), server
    )
