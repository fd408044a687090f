"""A running Dispatcher on a real store and fake clock, served by a real grpc.aio server on
127.0.0.1; agents are gRPC clients that name their node in metadata (test-only identity)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from manager.dispatcher import Dispatcher, DispatcherConfig, add_dispatcher_service
from manager.store import Store
from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc, types_pb2
from tests.polling import until_async
from tests.unit.manager.fake_clock import FakeClock

from .fakes import (
    NODE_ID_METADATA,
    description,
    local_store,
    metadata_identity,
)

READ_TIMEOUT = 5.0


class Agent:
    """A node's side of the Dispatcher API, over a real channel."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str) -> None:
        self.node_id = node_id
        self.stub = dispatcher_pb2_grpc.DispatcherStub(channel)
        self.metadata = ((NODE_ID_METADATA, node_id),)

    def session(self, hostname: str = "", resume: str = "") -> Any:
        request = dispatcher_pb2.SessionRequest(
            description=description(hostname or f"{self.node_id}-host"), session_id=resume
        )
        return self.stub.Session(request, metadata=self.metadata)

    async def open(self) -> tuple[Any, dispatcher_pb2.SessionMessage]:
        """A session stream and its first message."""
        call = self.session()
        return call, await read(call)

    async def heartbeat(self, session_id: str) -> dispatcher_pb2.HeartbeatResponse:
        request = dispatcher_pb2.HeartbeatRequest(session_id=session_id)
        response: dispatcher_pb2.HeartbeatResponse = await self.stub.Heartbeat(
            request, metadata=self.metadata
        )
        return response

    async def report(
        self, session_id: str, *updates: tuple[str, types_pb2.TaskState.ValueType]
    ) -> dispatcher_pb2.UpdateTaskStatusResponse:
        request = dispatcher_pb2.UpdateTaskStatusRequest(session_id=session_id)
        for task_id, state in updates:
            request.updates.add(task_id=task_id, status=types_pb2.TaskStatus(state=state))
        response: dispatcher_pb2.UpdateTaskStatusResponse = await self.stub.UpdateTaskStatus(
            request, metadata=self.metadata
        )
        return response

    def assignments(self, session_id: str) -> Any:
        request = dispatcher_pb2.AssignmentsRequest(session_id=session_id)
        return self.stub.Assignments(request, metadata=self.metadata)


async def read(call: Any) -> Any:
    """The next message of a response stream (AssertionError if it does not come)."""
    message = await asyncio.wait_for(call.read(), READ_TIMEOUT)
    assert message is not grpc.aio.EOF, "the stream ended"
    return message


async def failure(call: Any) -> grpc.aio.AioRpcError:
    """The error a response stream ends with (AssertionError if it sends a message)."""
    try:
        message = await asyncio.wait_for(call.read(), READ_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError(f"expected the stream to fail, got {message!r}")


@dataclass
class Harness:
    store: Store
    clock: FakeClock
    dispatcher: Dispatcher
    channel: grpc.aio.Channel
    runner: asyncio.Task[None]

    def agent(self, node_id: str) -> Agent:
        return Agent(self.channel, node_id)

    async def round_trip(self) -> None:
        """An RPC that changes nothing: by the time its answer is back, the dispatcher has
        run everything a clock advance before it woke up."""
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.agent("nobody").heartbeat("none")

    async def stop(self) -> None:
        """Stop the dispatcher, as when this manager loses the leadership."""
        self.runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.runner

    async def restart(self) -> None:
        """Start the dispatcher again, as when this manager becomes the leader again."""
        self.runner = start(self.dispatcher)
        await until_async(lambda: self.dispatcher.running, "the dispatcher to run")


def start(dispatcher: Dispatcher) -> asyncio.Task[None]:
    return asyncio.create_task(dispatcher.run())


@contextlib.asynccontextmanager
async def serving(
    store: Store | None = None, config: DispatcherConfig | None = None
) -> AsyncIterator[Harness]:
    store = store or local_store()
    clock = FakeClock()
    dispatcher = Dispatcher(store, clock=clock.clock, config=config, rng=random.Random(7))
    server = grpc.aio.server()
    add_dispatcher_service(server, dispatcher, metadata_identity)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    harness = Harness(store, clock, dispatcher, channel, start(dispatcher))
    try:
        await until_async(lambda: dispatcher.running, "the dispatcher to run")
        yield harness
    finally:
        await channel.close()
        await server.stop(None)
        await harness.stop()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with serving() as running:
        yield running
