"""The Logs and LogBroker gRPC services (grpc.aio) over a LogBroker.

Logs (SubscribeLogs) is for managers and the local control socket; a follower relays it to
the leader, whose broker the agents publish to. LogBroker (ListenSubscriptions,
PublishLogs) is for every node's agent, identified by its certificate. Serve both behind
the CA's AuthorizationInterceptor with LOGS_POLICIES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

import grpc

from manager.ca.auth import Policy, requires, rpc_method
from manager.ca.roles import Role
from manager.controlapi.forwarding import FORWARDED_KEY, was_forwarded
from manager.logbroker.broker import LogBroker
from manager.logbroker.errors import (
    IncompleteLogs,
    InvalidSelector,
    LogBrokerError,
    NotRunning,
    NotYourSubscription,
    UnknownSubscription,
)
from manager.node_rpc import Identify, abort_with, caller_node
from shoal.v1 import logs_pb2, logs_pb2_grpc

# A channel to the leader's Logs service, or None when no leader is known.
LeaderChannel = Callable[[], Awaitable[grpc.aio.Channel | None]]

LOGS_POLICIES: dict[str, Policy] = {
    rpc_method(logs_pb2.DESCRIPTOR, "Logs", "SubscribeLogs"): requires(Role.MANAGER),
    **{
        rpc_method(logs_pb2.DESCRIPTOR, "LogBroker", method): requires(Role.WORKER, Role.MANAGER)
        for method in ("ListenSubscriptions", "PublishLogs")
    },
}

STATUS_CODES: dict[type[LogBrokerError], grpc.StatusCode] = {
    NotRunning: grpc.StatusCode.UNAVAILABLE,
    InvalidSelector: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownSubscription: grpc.StatusCode.NOT_FOUND,
    NotYourSubscription: grpc.StatusCode.PERMISSION_DENIED,
    IncompleteLogs: grpc.StatusCode.UNAVAILABLE,
}


class LogsServicer(logs_pb2_grpc.LogsServicer):
    def __init__(self, broker: LogBroker, leader: LeaderChannel | None = None) -> None:
        """`leader`: how a follower reaches the leader (None: never forward)."""
        self._broker = broker
        self._leader = leader

    async def SubscribeLogs(
        self, request: logs_pb2.SubscribeLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[logs_pb2.SubscribeLogsMessage]:
        if not self._broker.running and self._may_forward(context):
            async for message in self._forwarded(request, context):
                yield message
            return
        try:
            async for batch in self._broker.subscribe(request.selector, request.options):
                yield logs_pb2.SubscribeLogsMessage(messages=batch)
        except LogBrokerError as exc:
            await _abort(context, exc)

    def _may_forward(self, context: grpc.aio.ServicerContext) -> bool:
        return self._leader is not None and not was_forwarded(context.invocation_metadata())

    async def _forwarded(
        self, request: logs_pb2.SubscribeLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[logs_pb2.SubscribeLogsMessage]:
        assert self._leader is not None
        channel = await self._leader()
        if channel is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "this manager is not the leader and no leader is known: retry shortly",
            )
        call = logs_pb2_grpc.LogsStub(channel).SubscribeLogs(
            request, metadata=((FORWARDED_KEY, "1"),)
        )
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        finally:
            call.cancel()


class LogBrokerServicer(logs_pb2_grpc.LogBrokerServicer):
    def __init__(self, broker: LogBroker, identify: Identify) -> None:
        self._broker = broker
        self._identify = identify

    async def ListenSubscriptions(
        self, request: logs_pb2.ListenSubscriptionsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[logs_pb2.SubscriptionMessage]:
        node_id = await self._caller(context)
        try:
            if not self._broker.running:
                raise NotRunning(
                    "the log broker is not running here (this manager is not the leader)"
                )
            # Headers at once: the agent knows its stream is taken even with nothing to send.
            await context.send_initial_metadata(())
            async for message in self._broker.listen(node_id):
                yield message
        except LogBrokerError as exc:
            await _abort(context, exc)

    async def PublishLogs(
        self,
        request_iterator: AsyncIterator[logs_pb2.PublishLogsMessage],
        context: grpc.aio.ServicerContext,
    ) -> logs_pb2.PublishLogsResponse:
        node_id = await self._caller(context)
        try:
            await self._broker.publish(node_id, request_iterator)
        except LogBrokerError as exc:
            await _abort(context, exc)
        return logs_pb2.PublishLogsResponse()

    async def _caller(self, context: grpc.aio.ServicerContext) -> str:
        return await caller_node(self._identify, context)


async def _abort(context: grpc.aio.ServicerContext, error: LogBrokerError) -> NoReturn:
    await abort_with(context, error, STATUS_CODES)


def add_logs_service(
    server: grpc.aio.Server, broker: LogBroker, leader: LeaderChannel | None = None
) -> None:
    """Adds Logs (users) to `server`."""
    logs_pb2_grpc.add_LogsServicer_to_server(LogsServicer(broker, leader), server)


def add_log_broker_service(server: grpc.aio.Server, broker: LogBroker, identify: Identify) -> None:
    """Adds LogBroker (agents) to `server`, which must check LOGS_POLICIES."""
    logs_pb2_grpc.add_LogBrokerServicer_to_server(LogBrokerServicer(broker, identify), server)
