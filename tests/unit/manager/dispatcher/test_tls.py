"""The production identity: the caller's node id from its certificate, over real mutual TLS
on 127.0.0.1, behind the CA's AuthorizationInterceptor with DISPATCHER_POLICIES."""

from __future__ import annotations

import asyncio
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
from manager.ca.tls import (
    MANAGER_CHANNEL_OPTIONS,
    channel_credentials,
)
from manager.dispatcher import (
    DISPATCHER_POLICIES,
    Dispatcher,
    add_dispatcher_service,
)
from manager.node_rpc import certificate_identity
from manager.reloadable_tls import ReloadableServerCredentials
from manager.store import Store
from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc, types_pb2
from tests.polling import until_async
from tests.unit.manager.fake_clock import FakeClock

from .fakes import description, get_node, local_store, node, put


def credentials(ca: ClusterCA, node_id: str, role: Role) -> tuple[bytes, bytes]:
    key = generate_node_key()
    certificate = ca.issue(create_csr(key), node_id, role)
    return certificate_pem(certificate), private_key_pem(key)


@dataclass
class TLSManager:
    ca: ClusterCA
    address: str
    store: Store
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def stub(self, node_id: str, role: Role) -> dispatcher_pb2_grpc.DispatcherStub:
        """A client presenting a certificate for `node_id` (closed with the fixture)."""
        cert_pem, key_pem = credentials(self.ca, node_id, role)
        channel = grpc.aio.secure_channel(
            self.address,
            channel_credentials(self.ca.root.cert_pem, cert_pem, key_pem),
            options=MANAGER_CHANNEL_OPTIONS,
        )
        self.channels.append(channel)
        return dispatcher_pb2_grpc.DispatcherStub(channel)


@pytest.fixture
async def manager() -> AsyncIterator[TLSManager]:
    ca = ClusterCA.initialize()
    authorizer = Authorizer(ca.root, ca.cluster_id)
    store = local_store()
    await put(store, node("worker1"), node("manager1", role=types_pb2.MANAGER))
    dispatcher = Dispatcher(store, clock=FakeClock().clock)
    runner = asyncio.create_task(dispatcher.run())
    server = grpc.aio.server(
        interceptors=[AuthorizationInterceptor(authorizer, DISPATCHER_POLICIES)]
    )
    add_dispatcher_service(server, dispatcher, certificate_identity(authorizer))
    cert_pem, key_pem = credentials(ca, "manager1", Role.MANAGER)
    port = server.add_secure_port(
        "127.0.0.1:0", ReloadableServerCredentials(cert_pem, key_pem, ca.root.cert_pem).credentials
    )
    await server.start()
    tls_manager = TLSManager(ca, f"127.0.0.1:{port}", store)
    try:
        await until_async(lambda: dispatcher.running, "the dispatcher to run")
        yield tls_manager
    finally:
        for channel in tls_manager.channels:
            await channel.close()
        await server.stop(None)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


@pytest.mark.parametrize(
    ("node_id", "role"), [("worker1", Role.WORKER), ("manager1", Role.MANAGER)]
)
async def test_workers_and_managers_open_sessions_as_their_certificate_says(
    manager: TLSManager, node_id: str, role: Role
) -> None:
    stub = manager.stub(node_id, role)
    call = stub.Session(dispatcher_pb2.SessionRequest(description=description()))
    first = await asyncio.wait_for(call.read(), 5)
    assert first.node.id == node_id
    assert get_node(manager.store, node_id).status.state == types_pb2.NodeStatus.READY
    response = await stub.Heartbeat(dispatcher_pb2.HeartbeatRequest(session_id=first.session_id))
    assert response.period.seconds >= 4
    call.cancel()


async def test_a_certificate_for_a_node_that_is_not_a_member_is_refused(
    manager: TLSManager,
) -> None:
    stub = manager.stub("intruder", Role.WORKER)
    call = stub.Session(dispatcher_pb2.SessionRequest(description=description()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), 5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "intruder is not a member" in (caught.value.details() or "")


def test_policies_let_every_node_call_every_dispatcher_method() -> None:
    service = dispatcher_pb2.DESCRIPTOR.services_by_name["Dispatcher"]
    assert set(DISPATCHER_POLICIES) == {
        f"/{service.full_name}/{method.name}" for method in service.methods
    }
    for policy in DISPATCHER_POLICIES.values():
        assert policy.roles == {Role.WORKER, Role.MANAGER}
        assert not policy.anonymous
