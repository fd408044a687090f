"""The Raft core's messages between managers: gRPC streams over mutual TLS, no pickle.

Receiving (`RaftTransportServicer`): the interceptor admits managers only (and asks the
store whether the node still is one); the sender is the node its certificate names, and
every message must come from it (`src`) to this node (`dst`), or the stream ends with
PERMISSION_DENIED: a peer is known by its certificate, never by the address or name it
claims. gRPC refuses a message larger than the server's limit from its length prefix,
before anything is allocated for it.

Sending (`Peers`): one stream per peer, opened on the first message and opened again after
a failure, after a growing delay. Each peer has a bounded queue: when it is full, messages
are dropped, which Raft tolerates (heartbeats and the leader's next append carry the state
again); `send` never blocks the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from manager.ca.auth import Policy, requires, rpc_method
from manager.ca.roles import Role
from manager.node_rpc import Identify, caller_node
from manager.raft.core import Message
from manager.raft.core.codec import CodecError, message_from_proto, message_to_proto
from shoal.v1 import raft_pb2, raft_pb2_grpc

log = logging.getLogger(__name__)

TRANSPORT_POLICIES: dict[str, Policy] = {
    rpc_method(raft_pb2.DESCRIPTOR, "RaftTransport", "Stream"): requires(Role.MANAGER),
}
QUEUE_SIZE = 4096
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 2.0


class RaftTransportServicer(raft_pb2_grpc.RaftTransportServicer):
    def __init__(self, node_id: str, identify: Identify, deliver: Callable[[Message], None]):
        self._node_id = node_id
        self._identify = identify
        self._deliver = deliver

    async def Stream(
        self,
        request_iterator: AsyncIterator[raft_pb2.RaftMessage],
        context: grpc.aio.ServicerContext,
    ) -> raft_pb2.RaftStreamEnd:
        sender = await caller_node(self._identify, context)
        async for wire in request_iterator:
            try:
                message = message_from_proto(wire)
            except CodecError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                raise
            if message.src != sender or message.dst != self._node_id:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"node {sender} may send only its own messages to {self._node_id}, "
                    f"not {message.src!r} -> {message.dst!r}",
                )
            self._deliver(message)
        return raft_pb2.RaftStreamEnd()


def add_transport_service(
    server: grpc.aio.Server, node_id: str, identify: Identify, deliver: Callable[[Message], None]
) -> None:
    """Adds the service to `server`, which must run an AuthorizationInterceptor with
    TRANSPORT_POLICIES."""
    raft_pb2_grpc.add_RaftTransportServicer_to_server(
        RaftTransportServicer(node_id, identify, deliver), server
    )


@dataclass
class _Peer:
    queue: asyncio.Queue[Message]
    task: asyncio.Task[None] | None = None
    dropped: int = 0
    sent: int = 0


class Peers:
    """Streams to the other managers. `address(node_id)`: where a peer listens now (None
    when unknown: its messages wait, then drop); `connect(address)`: a channel with this
    manager's credentials."""

    def __init__(
        self,
        connect: Callable[[str], grpc.aio.Channel],
        address: Callable[[str], str | None],
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._connect = connect
        self._address = address
        self._queue_size = queue_size
        self._peers: dict[str, _Peer] = {}
        self._closed = False

    def send(self, message: Message) -> bool:
        """Queue `message` for its destination; False when dropped (queue full, closed)."""
        if self._closed:
            return False
        peer = self._peers.get(message.dst)
        if peer is None:
            peer = self._peers[message.dst] = _Peer(asyncio.Queue(self._queue_size))
        if peer.task is None or peer.task.done():
            name = f"raft to {message.dst}"
            peer.task = asyncio.create_task(self._run(message.dst, peer), name=name)
        try:
            peer.queue.put_nowait(message)
        except asyncio.QueueFull:
            peer.dropped += 1
            return False
        return True

    def dropped(self, node_id: str) -> int:
        peer = self._peers.get(node_id)
        return peer.dropped if peer is not None else 0

    async def close(self) -> None:
        self._closed = True
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, node_id: str, peer: _Peer) -> None:
        delay = FIRST_RETRY_S
        while not self._closed:
            address = self._address(node_id)
            if address is not None:
                sent_before = peer.sent
                channel = self._connect(address)
                try:
                    stub = raft_pb2_grpc.RaftTransportStub(channel)
                    await stub.Stream(self._outgoing(peer))
                except grpc.aio.AioRpcError as exc:
                    log.debug("raft stream to %s (%s) ended: %s", node_id, address, exc.code().name)
                finally:
                    await channel.close()
                if peer.sent > sent_before:
                    delay = FIRST_RETRY_S  # it worked for a while: try again soon
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)

    @staticmethod
    async def _outgoing(peer: _Peer) -> AsyncIterator[raft_pb2.RaftMessage]:
        while True:
            message = await peer.queue.get()
            yield message_to_proto(message)
            peer.sent += 1
