"""Joining, renewing and role checks over real gRPC with real TLS on 127.0.0.1."""

from __future__ import annotations

import grpc
import pytest

from manager.ca.certificates import create_csr, generate_node_key, read_node_identity
from manager.ca.client import NodeCredentials, join_cluster, renew_certificate
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import InvalidJoinToken, JoinError, RootCAMismatch
from manager.ca.join_tokens import JoinToken
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role
from manager.ca.server import CAServicer
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS, channel_credentials
from manager.reloadable_tls import ReloadableServerCredentials
from shoal.v1 import ca_pb2, ca_pb2_grpc, specs_pb2, types_pb2
from tests.integration.manager.ca.conftest import (
    ANY_NODE,
    MANAGERS_ONLY,
    UNLISTED,
    Manager,
    manager_credentials,
)

TIMEOUT = 10.0


async def call(address: str, credentials: grpc.ChannelCredentials, method: str) -> bytes:
    async with grpc.aio.secure_channel(address, credentials, MANAGER_CHANNEL_OPTIONS) as channel:
        response: bytes = await channel.unary_unary(method)(b"", timeout=TIMEOUT)
    return response


async def call_status(
    address: str, credentials: grpc.ChannelCredentials, method: str
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(address, credentials, method)
    return caught.value


async def join(manager: Manager, role: Role) -> NodeCredentials:
    token = str(manager.ca.join_tokens.for_role(role))
    return await join_cluster(manager.join_address, token, generate_node_key(), TIMEOUT)


async def test_worker_joins_and_is_refused_a_manager_only_method(manager: Manager) -> None:
    worker = await join(manager, Role.WORKER)

    identity = worker.identity
    assert identity.role is Role.WORKER
    assert identity.cluster_id == manager.ca.cluster_id
    assert worker.root.digest == manager.ca.root.digest
    record = await manager.registry.certificate(identity.node_id)
    assert record is not None and record.role == types_pb2.WORKER

    credentials = worker.channel_credentials()
    assert await call(manager.cluster_address, credentials, ANY_NODE) == identity.node_id.encode()
    denied = await call_status(manager.cluster_address, credentials, MANAGERS_ONLY)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "swarm-manager" in (denied.details() or "")
    assert identity.node_id in (denied.details() or "")

    async with grpc.aio.secure_channel(
        manager.cluster_address, credentials, MANAGER_CHANNEL_OPTIONS
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ca_pb2_grpc.CAStub(channel).GetUnlockKey(
                ca_pb2.GetUnlockKeyRequest(), timeout=TIMEOUT
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_manager_token_node_may_call_manager_only_methods(manager: Manager) -> None:
    node = await join(manager, Role.MANAGER)

    assert node.identity.role is Role.MANAGER
    credentials = node.channel_credentials()
    answer = await call(manager.cluster_address, credentials, MANAGERS_ONLY)
    assert answer == node.identity.node_id.encode()
    async with grpc.aio.secure_channel(
        manager.cluster_address, credentials, MANAGER_CHANNEL_OPTIONS
    ) as channel:
        unlock = await ca_pb2_grpc.CAStub(channel).GetUnlockKey(
            ca_pb2.GetUnlockKeyRequest(), timeout=TIMEOUT
        )
    assert unlock.unlock_key == b""


async def test_method_without_stated_roles_is_refused_to_everyone(manager: Manager) -> None:
    node = await join(manager, Role.MANAGER)

    denied = await call_status(manager.cluster_address, node.channel_credentials(), UNLISTED)

    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert UNLISTED in (denied.details() or "")


async def test_wrong_token_is_refused(manager: Manager) -> None:
    real = manager.ca.join_tokens.worker
    wrong = JoinToken(real.ca_digest, bytes(16))

    with pytest.raises(JoinError, match=r"PERMISSION_DENIED.*wrong or has been rotated"):
        await join_cluster(manager.join_address, str(wrong), generate_node_key(), TIMEOUT)


async def test_rotated_token_is_refused_and_the_new_one_admits(manager: Manager) -> None:
    old = str(manager.ca.join_tokens.worker)
    manager_token = str(manager.ca.join_tokens.manager)
    manager.ca.rotate_join_token(Role.WORKER)

    with pytest.raises(JoinError, match="PERMISSION_DENIED"):
        await join_cluster(manager.join_address, old, generate_node_key(), TIMEOUT)
    fresh = await join_cluster(
        manager.join_address, str(manager.ca.join_tokens.worker), generate_node_key(), TIMEOUT
    )
    assert fresh.identity.role is Role.WORKER
    still = await join_cluster(manager.join_address, manager_token, generate_node_key(), TIMEOUT)
    assert still.identity.role is Role.MANAGER


async def test_malformed_token_is_invalid_argument_at_the_server(manager: Manager) -> None:
    credentials = channel_credentials(manager.ca.root.cert_pem)
    request = ca_pb2.IssueNodeCertificateRequest(
        csr=create_csr(generate_node_key()), token="SWMTKN-2-abc-def"
    )
    async with grpc.aio.secure_channel(
        manager.join_address, credentials, MANAGER_CHANNEL_OPTIONS
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ca_pb2_grpc.NodeCAStub(channel).IssueNodeCertificate(request, timeout=TIMEOUT)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "version '2'" in (caught.value.details() or "")
    assert len(manager.registry) == 0


async def test_malformed_token_is_refused_before_contacting_anyone(manager: Manager) -> None:
    with pytest.raises(InvalidJoinToken, match="must start with 'SWMTKN'"):
        await join_cluster(manager.join_address, "TOKEN-1-a-b", generate_node_key(), TIMEOUT)


async def test_token_of_another_cluster_fails_the_root_pin(manager: Manager) -> None:
    other = ClusterCA.initialize()

    with pytest.raises(RootCAMismatch, match="not the one the join token pins"):
        await join_cluster(
            manager.join_address, str(other.join_tokens.worker), generate_node_key(), TIMEOUT
        )
    assert len(manager.registry) == 0


async def test_certificate_from_a_foreign_ca_is_refused_at_the_tls_layer(
    manager: Manager,
) -> None:
    foreign = manager_credentials(ClusterCA.initialize())
    # It trusts our root, so only its own certificate can be what the server refuses.
    impostor = NodeCredentials(foreign.key, foreign.certificate, manager.ca.root)

    refused = await call_status(manager.cluster_address, impostor.channel_credentials(), ANY_NODE)

    assert refused.code() == grpc.StatusCode.UNAVAILABLE


async def test_no_client_certificate(manager: Manager) -> None:
    anonymous = channel_credentials(manager.ca.root.cert_pem)

    # The join port lets the call through to the interceptor, which wants a certificate.
    missing = await call_status(manager.join_address, anonymous, MANAGERS_ONLY)
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "none was presented" in (missing.details() or "")
    # The cluster port refuses the handshake itself.
    refused = await call_status(manager.cluster_address, anonymous, ANY_NODE)
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    # Bootstrap methods need no certificate.
    async with grpc.aio.secure_channel(
        manager.join_address, anonymous, MANAGER_CHANNEL_OPTIONS
    ) as channel:
        root = await ca_pb2_grpc.CAStub(channel).GetRootCACertificate(
            ca_pb2.GetRootCACertificateRequest(), timeout=TIMEOUT
        )
    assert root.certificate == manager.ca.root.cert_pem


async def test_join_port_never_sees_client_certificates(manager: Manager) -> None:
    node = await join(manager, Role.MANAGER)

    missing = await call_status(manager.join_address, node.channel_credentials(), MANAGERS_ONLY)

    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_renewal_keeps_id_and_role_and_changes_key(manager: Manager) -> None:
    worker = await join(manager, Role.WORKER)

    renewed = await renew_certificate(manager.cluster_address, worker, generate_node_key(), TIMEOUT)

    assert renewed.identity == worker.identity
    assert renewed.certificate.serial_number != worker.certificate.serial_number
    assert renewed.key.public_key() != worker.key.public_key()
    answer = await call(manager.cluster_address, renewed.channel_credentials(), ANY_NODE)
    assert answer == worker.identity.node_id.encode()
    record = await manager.registry.certificate(worker.identity.node_id)
    assert record is not None
    assert record.certificate == certificate_pem(renewed.certificate)


async def test_renewal_after_promotion_gives_a_manager_certificate(manager: Manager) -> None:
    worker = await join(manager, Role.WORKER)
    manager.registry.set_role(worker.identity.node_id, Role.MANAGER)

    promoted = await renew_certificate(
        manager.cluster_address, worker, generate_node_key(), TIMEOUT
    )

    assert promoted.identity.node_id == worker.identity.node_id
    assert promoted.identity.role is Role.MANAGER
    answer = await call(manager.cluster_address, promoted.channel_credentials(), MANAGERS_ONLY)
    assert answer == worker.identity.node_id.encode()


async def test_removed_node_cannot_renew(manager: Manager) -> None:
    worker = await join(manager, Role.WORKER)
    manager.registry.remove(worker.identity.node_id)

    with pytest.raises(JoinError, match=r"PERMISSION_DENIED.*not a member"):
        await renew_certificate(manager.cluster_address, worker, generate_node_key(), TIMEOUT)


async def test_renewal_without_certificate_is_unauthenticated(manager: Manager) -> None:
    credentials = channel_credentials(manager.ca.root.cert_pem)
    request = ca_pb2.IssueNodeCertificateRequest(csr=create_csr(generate_node_key()))
    async with grpc.aio.secure_channel(
        manager.join_address, credentials, MANAGER_CHANNEL_OPTIONS
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ca_pb2_grpc.NodeCAStub(channel).IssueNodeCertificate(request, timeout=TIMEOUT)

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "join token" in (caught.value.details() or "")


async def test_node_joins_drained_and_status_of_unknown_node(manager: Manager) -> None:
    token = str(manager.ca.join_tokens.worker)
    node = await join_cluster(
        manager.join_address,
        token,
        generate_node_key(),
        TIMEOUT,
        availability=specs_pb2.NodeSpec.DRAIN,
    )
    assert manager.registry.availability(node.identity.node_id) == specs_pb2.NodeSpec.DRAIN

    credentials = channel_credentials(manager.ca.root.cert_pem)
    async with grpc.aio.secure_channel(
        manager.join_address, credentials, MANAGER_CHANNEL_OPTIONS
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ca_pb2_grpc.NodeCAStub(channel).NodeCertificateStatus(
                ca_pb2.NodeCertificateStatusRequest(node_id="nosuchnode"), timeout=TIMEOUT
            )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert read_node_identity(node.certificate).role is Role.WORKER


async def test_impostor_serving_the_real_root_with_its_own_certificate_is_refused(
    manager: Manager,
) -> None:
    """A server that relays the cluster's public root but cannot hold a certificate of it."""
    foreign = manager_credentials(ClusterCA.initialize())
    impostor = grpc.aio.server()
    ca_pb2_grpc.add_CAServicer_to_server(CAServicer(manager.ca), impostor)
    port = impostor.add_secure_port(
        "127.0.0.1:0",
        ReloadableServerCredentials(
            certificate_pem(foreign.certificate), private_key_pem(foreign.key), None
        ).credentials,
    )
    await impostor.start()
    try:
        with pytest.raises(RootCAMismatch, match="its own certificate is not issued by it"):
            await join_cluster(
                f"127.0.0.1:{port}",
                str(manager.ca.join_tokens.worker),
                generate_node_key(),
                TIMEOUT,
            )
    finally:
        await impostor.stop(None)
