"""Control is for managers only: the policy table, and real mutual TLS on loopback with the
CA's AuthorizationInterceptor in front of the servicer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from manager.ca.auth import AuthorizationInterceptor, Authorizer
from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role
from manager.ca.server import CA_POLICIES
from manager.ca.tls import (
    MANAGER_CHANNEL_OPTIONS,
    channel_credentials,
)
from manager.controlapi import CONTROL_POLICIES, ControlServicer, add_control_service
from manager.reloadable_tls import ReloadableServerCredentials
from manager.store import new_id
from shoal.v1 import control_pb2
from tests.unit.manager.controlapi.helpers import (
    async_stub,
    local_store,
    refused,
    service_spec,
)
from tests.unit.manager.fake_clock import FakeClock


def test_every_control_method_is_for_managers_only() -> None:
    methods = control_pb2.DESCRIPTOR.services_by_name["Control"].methods
    assert set(CONTROL_POLICIES) == {f"/shoal.v1.Control/{m.name}" for m in methods}
    assert len(CONTROL_POLICIES) == 30
    for policy in CONTROL_POLICIES.values():
        assert policy.roles == frozenset({Role.MANAGER})
        assert not policy.anonymous
    assert not set(CONTROL_POLICIES) & set(CA_POLICIES)


def credentials(ca: ClusterCA, role: Role) -> tuple[bytes, bytes]:
    """A node certificate and its key, PEM."""
    key = generate_node_key()
    certificate = ca.issue(create_csr(key), new_id(), role)
    return certificate_pem(certificate), private_key_pem(key)


@pytest.fixture
async def tls_control() -> AsyncIterator[tuple[ClusterCA, str]]:
    ca = ClusterCA.initialize()
    cert, key = credentials(ca, Role.MANAGER)
    interceptor = AuthorizationInterceptor(Authorizer(ca.root, ca.cluster_id), CONTROL_POLICIES)
    server = grpc.aio.server(interceptors=[interceptor])
    add_control_service(server, ControlServicer(local_store(FakeClock())))
    port = server.add_secure_port(
        "127.0.0.1:0", ReloadableServerCredentials(cert, key, ca.root.cert_pem).credentials
    )
    await server.start()
    try:
        yield ca, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_a_worker_certificate_is_refused_and_a_manager_one_served(
    tls_control: tuple[ClusterCA, str],
) -> None:
    ca, address = tls_control
    request = control_pb2.CreateServiceRequest(spec=service_spec())
    for role in (Role.WORKER, Role.MANAGER):
        cert, key = credentials(ca, role)
        creds = channel_credentials(ca.root.cert_pem, cert, key)
        async with grpc.aio.secure_channel(address, creds, MANAGER_CHANNEL_OPTIONS) as channel:
            stub = async_stub(channel)
            if role is Role.WORKER:
                await refused(
                    stub.CreateService(request),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "/shoal.v1.Control/CreateService is for swarm-manager only",
                )
                await refused(
                    stub.ListServices(control_pb2.ListServicesRequest()),
                    grpc.StatusCode.PERMISSION_DENIED,
                )
            else:
                created = await stub.CreateService(request)
                listed = await stub.ListServices(control_pb2.ListServicesRequest())
                assert list(listed.services) == [created.service]
