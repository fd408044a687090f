"""The Raft core's messages between managers over real mutual TLS on 127.0.0.1: a peer is
the node its certificate names, and a message that says otherwise ends its stream; a
snapshot larger than a message travels in pieces, checked as they arrive."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import grpc
import pytest

from manager.ca.auth import AuthorizationInterceptor, Authorizer
from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS, channel_credentials
from manager.node_rpc import certificate_identity
from manager.raft.core import Entry, Membership, Message, MsgType, Snapshot
from manager.raft.core.codec import message_to_proto
from manager.raft.peer_transport import (
    MAX_SNAPSHOT_BYTES,
    SNAPSHOT_CHUNK_BYTES,
    TRANSPORT_POLICIES,
    Peers,
    add_transport_service,
    snapshot_pieces,
)
from manager.reloadable_tls import ReloadableServerCredentials
from shoal.v1 import raft_pb2, raft_pb2_grpc
from tests.polling import until_async


def credentials(ca: ClusterCA, node_id: str, role: Role) -> tuple[bytes, bytes]:
    key = generate_node_key()
    return certificate_pem(ca.issue(create_csr(key), node_id, role)), private_key_pem(key)


@dataclass
class Receiver:
    address: str
    delivered: list[Message] = field(default_factory=list)


@pytest.fixture
async def ca() -> ClusterCA:
    return ClusterCA.initialize()


@contextlib.asynccontextmanager
async def receiver(
    ca: ClusterCA,
    node_id: str,
    max_bytes: int = 1 << 20,
    max_snapshot_bytes: int = MAX_SNAPSHOT_BYTES,
) -> AsyncIterator[Receiver]:
    authorizer = Authorizer(ca.root, ca.cluster_id)
    server = grpc.aio.server(
        interceptors=[AuthorizationInterceptor(authorizer, TRANSPORT_POLICIES)],
        options=[("grpc.max_receive_message_length", max_bytes)],
    )
    found = Receiver("")
    add_transport_service(
        server,
        node_id,
        certificate_identity(authorizer),
        found.delivered.append,
        max_snapshot_bytes,
    )
    cert, key = credentials(ca, node_id, Role.MANAGER)
    port = server.add_secure_port(
        "127.0.0.1:0", ReloadableServerCredentials(cert, key, ca.root.cert_pem).credentials
    )
    await server.start()
    found.address = f"127.0.0.1:{port}"
    try:
        yield found
    finally:
        await server.stop(None)


def peers_as(ca: ClusterCA, node_id: str, role: Role, where: dict[str, str]) -> Peers:
    cert, key = credentials(ca, node_id, role)

    def connect(address: str) -> grpc.aio.Channel:
        creds = channel_credentials(ca.root.cert_pem, cert, key)
        return grpc.aio.secure_channel(address, creds, MANAGER_CHANNEL_OPTIONS)

    return Peers(connect, where.get)


async def delivered_eventually(peers: Peers, message: Message, to: Receiver) -> None:
    """Send `message` again until it arrives, as Raft does (a stream that ends loses what
    was in flight on it)."""

    def attempt() -> list[Message]:
        if not to.delivered:
            peers.send(message)
        return to.delivered

    await until_async(attempt, f"{message.src}'s message delivered")


def append(src: str, dst: str, index: int, data: bytes = b"x") -> Message:
    return Message(
        MsgType.APPEND, src, dst, 3, log_term=3, index=index - 1,
        entries=(Entry(3, index, data=data),), commit=index - 1,
    )  # fmt: skip


async def test_messages_go_through_in_order(ca: ClusterCA) -> None:
    async with receiver(ca, "m2") as m2:
        peers = peers_as(ca, "m1", Role.MANAGER, {"m2": m2.address})
        try:
            sent = [append("m1", "m2", index) for index in range(1, 51)]
            assert all(peers.send(message) for message in sent)
            await until_async(lambda: len(m2.delivered) == 50, "50 messages delivered")
            assert m2.delivered == sent
        finally:
            await peers.close()


async def test_a_peer_cannot_speak_for_another_node(ca: ClusterCA) -> None:
    """m3's certificate, a message claiming to come from m1: refused, nothing delivered;
    m3's own message on a new stream still goes through."""
    async with receiver(ca, "m2") as m2:
        peers = peers_as(ca, "m3", Role.MANAGER, {"m2": m2.address})
        try:
            peers.send(append("m1", "m2", 1))
            await delivered_eventually(peers, append("m3", "m2", 1, b"own"), m2)
            assert {(m.src, m.entries[0].data) for m in m2.delivered} == {("m3", b"own")}
        finally:
            await peers.close()


async def test_a_worker_certificate_delivers_nothing(ca: ClusterCA) -> None:
    async with receiver(ca, "m2") as m2:
        worker = peers_as(ca, "w1", Role.WORKER, {"m2": m2.address})
        manager = peers_as(ca, "m1", Role.MANAGER, {"m2": m2.address})
        try:
            worker.send(append("w1", "m2", 1))
            await delivered_eventually(manager, append("m1", "m2", 1), m2)
            assert {m.src for m in m2.delivered} == {"m1"}
        finally:
            await worker.close()
            await manager.close()


async def test_an_oversized_message_is_refused_before_delivery(ca: ClusterCA) -> None:
    async with receiver(ca, "m2", max_bytes=64 << 10) as m2:
        peers = peers_as(ca, "m1", Role.MANAGER, {"m2": m2.address})
        try:
            peers.send(append("m1", "m2", 1, b"y" * (1 << 20)))
            await delivered_eventually(peers, append("m1", "m2", 1, b"small"), m2)
            assert {m.entries[0].data for m in m2.delivered} == {b"small"}
        finally:
            await peers.close()


async def test_an_unreachable_peer_fills_its_queue_then_drops(ca: ClusterCA) -> None:
    nowhere: dict[str, str] = {}
    peers = Peers(grpc.aio.insecure_channel, nowhere.get, queue_size=2)
    try:
        results = [peers.send(append("m1", "m9", index)) for index in range(1, 5)]
        assert results == [True, True, False, False]
        assert peers.dropped("m9") == 2
    finally:
        await peers.close()
    assert not peers.send(append("m1", "m9", 5))  # closed


# -- snapshots in pieces ------------------------------------------------------------------


def snapshot(src: str, dst: str, size: int) -> Message:
    members = Membership(frozenset({"m1", "m2"}), frozenset({"m3"}))
    return Message(
        MsgType.SNAPSHOT, src, dst, 4, snapshot=Snapshot(900, 3, members, os.urandom(size))
    )


def test_snapshot_pieces_carry_the_data_in_order() -> None:
    wire = message_to_proto(snapshot("m1", "m2", 2500))
    pieces = snapshot_pieces(wire, chunk=1000)
    assert [p.snapshot_offset for p in pieces] == [0, 1000, 2000]
    assert [p.snapshot_more for p in pieces] == [True, True, False]
    assert {p.snapshot_size for p in pieces} == {2500}
    assert b"".join(p.snapshot_data for p in pieces) == wire.snapshot_data
    for piece in pieces:  # each one a whole message but for its data
        assert (piece.src, piece.dst, piece.term, piece.snapshot) == (
            wire.src, wire.dst, wire.term, wire.snapshot,
        )  # fmt: skip
    exact = snapshot_pieces(message_to_proto(snapshot("m1", "m2", 2000)), chunk=1000)
    assert [(p.snapshot_offset, p.snapshot_more) for p in exact] == [(0, True), (1000, False)]
    (empty,) = snapshot_pieces(message_to_proto(snapshot("m1", "m2", 0)), chunk=1000)
    assert (empty.snapshot_offset, empty.snapshot_size, empty.snapshot_more) == (0, 0, False)
    # The default piece leaves room for the rest of the message under a 1 MiB + 64 KiB limit.
    assert SNAPSHOT_CHUNK_BYTES <= 1 << 20


async def test_a_snapshot_larger_than_a_message_arrives_whole(ca: ClusterCA) -> None:
    async with receiver(ca, "m2", max_bytes=(1 << 20) + (64 << 10)) as m2:
        peers = peers_as(ca, "m1", Role.MANAGER, {"m2": m2.address})
        try:
            big = snapshot("m1", "m2", (7 << 20) // 2)  # 3.5 MiB: four pieces
            after = append("m1", "m2", 901)
            peers.send(big)
            peers.send(after)
            await until_async(lambda: len(m2.delivered) == 2, "the snapshot and an append")
            assert m2.delivered == [big, after]
        finally:
            await peers.close()


async def stream(ca: ClusterCA, address: str, pieces: Iterable[raft_pb2.RaftMessage]) -> str:
    """Send `pieces` as they are on one stream as m1; the error the receiver ends it with."""
    cert, key = credentials(ca, "m1", Role.MANAGER)
    creds = channel_credentials(ca.root.cert_pem, cert, key)
    async with grpc.aio.secure_channel(address, creds, MANAGER_CHANNEL_OPTIONS) as channel:

        async def requests() -> AsyncIterator[raft_pb2.RaftMessage]:
            for piece in pieces:
                yield piece

        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await raft_pb2_grpc.RaftTransportStub(channel).Stream(requests())
    assert ended.value.code() is grpc.StatusCode.INVALID_ARGUMENT, ended.value
    return str(ended.value.details())


def pieces_of(size: int, chunk: int = 64 << 10) -> list[raft_pb2.RaftMessage]:
    return snapshot_pieces(message_to_proto(snapshot("m1", "m2", size)), chunk=chunk)


async def test_snapshot_pieces_out_of_order_end_the_stream(ca: ClusterCA) -> None:
    async with receiver(ca, "m2") as m2:
        first, second, third = pieces_of(150 << 10)
        details = await stream(ca, m2.address, [first, third, second])
        assert f"piece at byte {third.snapshot_offset} does not follow" in details
        details = await stream(ca, m2.address, [second, third])  # no start
        assert f"piece at byte {second.snapshot_offset} does not follow" in details
        assert m2.delivered == []


async def test_snapshot_pieces_past_or_short_of_the_announced_size_end_the_stream(
    ca: ClusterCA,
) -> None:
    async with receiver(ca, "m2") as m2:
        pieces = pieces_of(150 << 10)
        for piece in pieces:
            piece.snapshot_size = 100 << 10  # less than they carry
        details = await stream(ca, m2.address, pieces)
        assert f"run past its size of {100 << 10} bytes" in details

        pieces = pieces_of(150 << 10)
        for piece in pieces:
            piece.snapshot_size = 200 << 10  # more than they carry
        details = await stream(ca, m2.address, pieces)
        assert f"a snapshot of {150 << 10} bytes, not the {200 << 10} announced" in details
        assert m2.delivered == []


async def test_a_snapshot_over_the_limit_is_refused(ca: ClusterCA) -> None:
    async with receiver(ca, "m2", max_snapshot_bytes=100 << 10) as m2:
        details = await stream(ca, m2.address, pieces_of((100 << 10) + 1))
        assert f"larger than the limit of {100 << 10}" in details
        # Through the transport: refused too; what follows, on a new stream, arrives.
        peers = peers_as(ca, "m1", Role.MANAGER, {"m2": m2.address})
        try:
            peers.send(snapshot("m1", "m2", 200 << 10))
            await delivered_eventually(peers, append("m1", "m2", 1), m2)
            assert {m.type for m in m2.delivered} == {MsgType.APPEND}
        finally:
            await peers.close()
        peers = peers_as(ca, "m1", Role.MANAGER, {"m2": m2.address})
        try:
            at_limit = snapshot("m1", "m2", 100 << 10)
            peers.send(at_limit)
            await until_async(lambda: at_limit in m2.delivered, "a snapshot at the limit")
            assert m2.delivered[-1] == at_limit
        finally:
            await peers.close()
