"""The Raft core's messages between managers: gRPC streams over mutual TLS, no pickle.

Receiving (`RaftTransportServicer`): the interceptor admits managers only (and asks the
store whether the node still is one); the sender is the node its certificate names, and
every message must come from it (`src`) to this node (`dst`), or the stream ends with
PERMISSION_DENIED: a peer is known by its certificate, never by the address or name it
claims. gRPC refuses a message larger than the server's limit from its length prefix,
before anything is allocated for it; a snapshot, which may be larger, travels in chunks
(`SNAPSHOT_CHUNK_BYTES`) reassembled here up to `max_snapshot_bytes`.

Sending (`Peers`): one stream per peer, opened on the first message and opened again after
a failure, after a growing delay. Each peer has a bounded queue: when it is full, messages
are dropped, which Raft tolerates (heartbeats and the leader's next append carry the state
again); `send` never blocks the caller. While a peer has no stream (it broke, and the next
is not up yet), its messages are dropped, and those queued when it broke go too: a peer
back from a crash or a partition gets what is current, not seconds of stale backlog ahead
of it (as etcd's rafthttp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
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
SNAPSHOT_CHUNK_BYTES = 1 << 20
MAX_SNAPSHOT_BYTES = 2 << 30
CONNECT_TIMEOUT_S = 2.0
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 0.25  # a member back from a restart is reached within this


class _SnapshotAssembly:
    """The pieces of one snapshot arriving on a stream, checked as they come."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data: bytearray | None = None
        self._size = 0

    def add(self, wire: raft_pb2.RaftMessage) -> raft_pb2.RaftMessage | None:
        """The whole message once its last piece is in; None while pieces are missing."""
        if wire.snapshot_offset == 0:
            if wire.snapshot_size > self._limit:
                raise CodecError(
                    f"a snapshot of {wire.snapshot_size} bytes is larger than the limit of "
                    f"{self._limit}"
                )
            self._data, self._size = bytearray(), wire.snapshot_size
        elif self._data is None or wire.snapshot_offset != len(self._data):
            raise CodecError(
                f"a snapshot piece at byte {wire.snapshot_offset} does not follow the last one"
            )
        self._data += wire.snapshot_data
        if len(self._data) > self._size:
            raise CodecError(f"snapshot pieces run past its size of {self._size} bytes")
        if wire.snapshot_more:
            return None
        data, self._data = bytes(self._data), None
        if len(data) != self._size:
            raise CodecError(f"a snapshot of {len(data)} bytes, not the {self._size} announced")
        whole = raft_pb2.RaftMessage()
        whole.CopyFrom(wire)
        whole.snapshot_data = data
        return whole


def snapshot_pieces(
    wire: raft_pb2.RaftMessage, chunk: int = SNAPSHOT_CHUNK_BYTES
) -> list[raft_pb2.RaftMessage]:
    """A SNAPSHOT message as pieces of at most `chunk` bytes of data each (the header is
    copied without the data: copying the whole snapshot per piece took seconds)."""
    data = wire.snapshot_data
    header = raft_pb2.RaftMessage()
    header.CopyFrom(wire)
    header.ClearField("snapshot_data")
    pieces = []
    for offset in range(0, max(len(data), 1), chunk):
        piece = raft_pb2.RaftMessage()
        piece.CopyFrom(header)
        piece.snapshot_data = data[offset : offset + chunk]
        piece.snapshot_offset = offset
        piece.snapshot_size = len(data)
        piece.snapshot_more = offset + chunk < len(data)
        pieces.append(piece)
    return pieces


class RaftTransportServicer(raft_pb2_grpc.RaftTransportServicer):
    def __init__(
        self,
        node_id: str,
        identify: Identify,
        deliver: Callable[[Message], None],
        max_snapshot_bytes: int = MAX_SNAPSHOT_BYTES,
    ):
        self._node_id = node_id
        self._identify = identify
        self._deliver = deliver
        self._max_snapshot_bytes = max_snapshot_bytes

    async def Stream(
        self,
        request_iterator: AsyncIterator[raft_pb2.RaftMessage],
        context: grpc.aio.ServicerContext,
    ) -> raft_pb2.RaftStreamEnd:
        sender = await caller_node(self._identify, context)
        snapshot = _SnapshotAssembly(self._max_snapshot_bytes)
        async for piece in request_iterator:
            try:
                wire = piece
                if piece.type == raft_pb2.RaftMessage.SNAPSHOT:
                    whole = snapshot.add(piece)
                    if whole is None:
                        continue
                    wire = whole
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
    server: grpc.aio.Server,
    node_id: str,
    identify: Identify,
    deliver: Callable[[Message], None],
    max_snapshot_bytes: int = MAX_SNAPSHOT_BYTES,
) -> None:
    """Adds the service to `server`, which must run an AuthorizationInterceptor with
    TRANSPORT_POLICIES."""
    raft_pb2_grpc.add_RaftTransportServicer_to_server(
        RaftTransportServicer(node_id, identify, deliver, max_snapshot_bytes), server
    )


@dataclass
class _Peer:
    queue: asyncio.Queue[Message]
    task: asyncio.Task[None] | None = None
    dropped: int = 0
    sent: int = 0
    failed_at: float | None = None  # time.monotonic() when its stream last broke
    down: bool = False  # no stream since the last one broke: messages are dropped
    channel: grpc.aio.Channel | None = None  # while a stream is open


class Peers:
    """Streams to the other managers. `address(node_id)`: where a peer listens now (None
    when unknown: its messages wait, then drop); `connect(address)`: a channel with this
    manager's credentials."""

    def __init__(
        self,
        connect: Callable[[str], grpc.aio.Channel],
        address: Callable[[str], str | None],
        queue_size: int = QUEUE_SIZE,
        on_reset: Callable[[str], None] | None = None,
    ) -> None:
        """`on_reset(node_id)`: the peer refused or reset a connection (it is down, not
        just silent), said once per outage."""
        self._connect = connect
        self._address = address
        self._on_reset = on_reset
        self._queue_size = queue_size
        self._peers: dict[str, _Peer] = {}
        self._closed = False

    def send(self, message: Message) -> bool:
        """Queue `message` for its destination; False when dropped (queue full, closed)."""
        if self._closed:
            return False
        peer = self._peer(message.dst)
        if peer.down:
            peer.dropped += 1
            return False
        try:
            peer.queue.put_nowait(message)
        except asyncio.QueueFull:
            peer.dropped += 1
            return False
        return True

    def keep(self, node_ids: Iterable[str]) -> None:
        """Hold a stream open to each of `node_ids` (the members), with nothing to send
        yet: whether a peer is connected is known before there is anything to tell it."""
        if not self._closed:
            for node_id in node_ids:
                self._peer(node_id)

    def _peer(self, node_id: str) -> _Peer:
        peer = self._peers.get(node_id)
        if peer is None:
            peer = self._peers[node_id] = _Peer(asyncio.Queue(self._queue_size))
        if peer.task is None or peer.task.done():
            name = f"raft to {node_id}"
            peer.task = asyncio.create_task(self._run(node_id, peer), name=name)
        return peer

    def connected(self, node_id: str) -> bool:
        """A stream to `node_id` is open over a live connection."""
        peer = self._peers.get(node_id)
        channel = peer.channel if peer is not None else None
        return channel is not None and (channel.get_state() is grpc.ChannelConnectivity.READY)

    def dropped(self, node_id: str) -> int:
        peer = self._peers.get(node_id)
        return peer.dropped if peer is not None else 0

    def failed_at(self, node_id: str) -> float | None:
        """When the stream to `node_id` last broke (time.monotonic()), None if never: a
        peer killed or cut off is known at once, not only once its answers stop."""
        peer = self._peers.get(node_id)
        return peer.failed_at if peer is not None else None

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
            if address is None:
                self._down(peer)  # nowhere to send to yet
            else:
                sent_before = peer.sent
                channel = peer.channel = self._connect(address)
                try:
                    await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
                    peer.down = False
                    stub = raft_pb2_grpc.RaftTransportStub(channel)
                    await stub.Stream(self._outgoing(peer))
                except (grpc.aio.AioRpcError, TimeoutError) as exc:
                    why = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "timeout"
                    log.debug("raft stream to %s (%s) ended: %s", node_id, address, why)
                    if (
                        isinstance(exc, grpc.aio.AioRpcError)
                        and exc.code() is grpc.StatusCode.UNAVAILABLE
                        and not peer.down
                        and self._on_reset is not None
                    ):
                        self._on_reset(node_id)
                finally:
                    peer.channel = None
                    await channel.close()
                self._down(peer)
                if peer.sent > sent_before:
                    delay = FIRST_RETRY_S  # it worked for a while: try again soon
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)

    @staticmethod
    def _down(peer: _Peer) -> None:
        """No stream: what waits for one is stale by the time there is one again (Raft
        sends what is still needed anew), and new messages are dropped until then."""
        peer.down = True
        peer.failed_at = time.monotonic()
        while not peer.queue.empty():
            peer.queue.get_nowait()
            peer.dropped += 1

    @staticmethod
    async def _outgoing(peer: _Peer) -> AsyncIterator[raft_pb2.RaftMessage]:
        while True:
            message = await peer.queue.get()
            wire = message_to_proto(message)
            if message.snapshot is None:
                yield wire
            else:
                for piece in snapshot_pieces(wire):
                    yield piece
            peer.sent += 1
