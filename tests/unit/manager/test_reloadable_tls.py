"""A gRPC server's certificate replaced while it serves (loopback only)."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from manager.ca.certificates import create_csr, generate_node_key, read_node_identity
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS, channel_credentials, fetch_server_certificate
from manager.reloadable_tls import ReloadableServerCredentials


def _pems(ca: ClusterCA, node_id: str) -> tuple[bytes, bytes]:
    key = generate_node_key()
    certificate = ca.issue(create_csr(key), node_id, Role.MANAGER)
    return certificate_pem(certificate), private_key_pem(key)


async def _served_node_id(address: str) -> str:
    certificate = await asyncio.to_thread(fetch_server_certificate, address, 5)
    return read_node_identity(certificate).node_id


async def test_new_handshakes_present_the_replaced_certificate() -> None:
    ca = ClusterCA.initialize()
    tls = ReloadableServerCredentials(*_pems(ca, "first"), ca.root.cert_pem)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    address = f"127.0.0.1:{server.add_secure_port('127.0.0.1:0', tls.credentials)}"
    await server.start()
    try:
        assert await _served_node_id(address) == "first"
        tls.replace(*_pems(ca, "second"))
        assert await _served_node_id(address) == "second"
        assert await _served_node_id(address) == "second"

        # Mutual TLS still holds: a client certificate of the root is accepted.
        client_cert, client_key = _pems(ca, "client")
        credentials = channel_credentials(ca.root.cert_pem, client_cert, client_key)
        async with grpc.aio.secure_channel(address, credentials, MANAGER_CHANNEL_OPTIONS) as ch:
            answer = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


async def test_a_client_without_a_certificate_is_refused_on_the_cluster_port() -> None:
    ca = ClusterCA.initialize()
    tls = ReloadableServerCredentials(*_pems(ca, "first"), ca.root.cert_pem)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    address = f"127.0.0.1:{server.add_secure_port('127.0.0.1:0', tls.credentials)}"
    await server.start()
    try:
        credentials = channel_credentials(ca.root.cert_pem)
        async with grpc.aio.secure_channel(address, credentials, MANAGER_CHANNEL_OPTIONS) as ch:
            try:
                await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.UNAVAILABLE
            else:
                raise AssertionError("a client without a certificate was served")
    finally:
        await server.stop(0)
