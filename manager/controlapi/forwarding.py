"""Writes on a follower reach the leader: a call whose transaction raises NotLeader is
replayed, unchanged, on the leader's Control service, and the leader's answer (response or
status) becomes the follower's. So is a read whose read barrier raises NotLeader (the
manager it went through was no longer the leader).

Replaying is safe: NotLeader means the proposal was never submitted, so nothing of it was
written. A forwarded call carries FORWARDED_KEY; a manager that gets one and is not the
leader either answers UNAVAILABLE instead of forwarding again, so a call never circles
during an election.

`LeaderChannel` is how the servicer finds the leader: given the NotLeader (which names the
leader's raft address, when known), a channel to the leader's Control endpoint, or None.
`StoreLeaderChannels` is the manager's: it maps the raft address to the gRPC address through
the nodes' manager_status in the store and keeps one channel per address, made by the
`connect` the node passes in (with its mutual-TLS credentials).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from manager.controlapi.errors import ControlError, Unavailable
from manager.store import NotLeader, ReadTx, Store
from shoal.v1 import control_pb2_grpc, objects_pb2, types_pb2

FORWARDED_KEY = "shoal-forwarded"
# Used when the caller set no deadline.
DEFAULT_FORWARD_TIMEOUT = 30.0

LeaderChannel = Callable[[NotLeader], Awaitable[grpc.aio.Channel | None]]


class LeaderAnswered(ControlError):
    """The leader refused the forwarded call: its status, relayed as it is."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


def was_forwarded(metadata: Sequence[tuple[str, Any]] | None) -> bool:
    return any(key == FORWARDED_KEY for key, _ in metadata or ())


async def forward(
    channel: grpc.aio.Channel, method: str, request: Message, timeout: float | None
) -> Any:
    """Call `method` of the leader's Control service with `request`."""
    call = getattr(control_pb2_grpc.ControlStub(channel), method)
    try:
        return await call(
            request,
            timeout=DEFAULT_FORWARD_TIMEOUT if timeout is None else timeout,
            metadata=((FORWARDED_KEY, "1"),),
        )
    except grpc.aio.AioRpcError as exc:
        raise LeaderAnswered(exc.code(), exc.details() or "") from None


def not_forwarding(error: NotLeader, reason: str) -> Unavailable:
    return Unavailable(f"{error}; {reason}: retry shortly or ask another manager")


def leader_control_address(tx: ReadTx, raft_address: str) -> str | None:
    """The Control (gRPC) address of the manager whose raft address is `raft_address`."""
    for node in tx.find(objects_pb2.Node, "role", types_pb2.MANAGER):
        status = node.manager_status
        if status.raft_addr == raft_address and status.addr:
            return status.addr
    return None


class StoreLeaderChannels:
    """A LeaderChannel that looks the leader up in the store and caches channels."""

    def __init__(self, store: Store, connect: Callable[[str], grpc.aio.Channel]) -> None:
        self._store = store
        self._connect = connect
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def __call__(self, error: NotLeader) -> grpc.aio.Channel | None:
        raft_address = error.leader
        if raft_address is None:
            return None
        address = self._store.view(lambda tx: leader_control_address(tx, raft_address))
        if address is None:
            return None
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._connect(address)
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
