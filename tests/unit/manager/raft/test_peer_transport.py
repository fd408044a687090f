"""The Raft core's messages between managers over real mutual TLS on 127.0.0.1: a peer is
the node its certificate names, and a message that says otherwise ends its stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
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
from manager.raft.core import Entry, Message, MsgType
from manager.raft.peer_transport import TRANSPORT_POLICIES, Peers, add_transport_service
from manager.reloadable_tls import ReloadableServerCredentials
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
    ca: ClusterCA, node_id: str, max_bytes: int = 1 << 20
) -> AsyncIterator[Receiver]:
    authorizer = Authorizer(ca.root, ca.cluster_id)
    server = grpc.aio.server(
        interceptors=[AuthorizationInterceptor(authorizer, TRANSPORT_POLICIES)],
        options=[("grpc.max_receive_message_length", max_bytes)],
    )
    found = Receiver("")
    add_transport_service(server, node_id, certificate_identity(authorizer), found.delivered.append)
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
