"""The Authorizer identifies callers of a synchronous grpc server too (real mutual TLS)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from manager.ca.auth import Authorizer
from manager.ca.certificates import generate_node_key
from manager.ca.client import join_cluster
from manager.ca.errors import AuthorizationError
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS
from manager.reloadable_tls import ReloadableServerCredentials
from tests.integration.manager.ca.conftest import Manager

WHOAMI = "/shoal.test.SyncProbe/WhoAmI"


@pytest.fixture
def sync_address(manager: Manager) -> Iterator[str]:
    authorizer = Authorizer(manager.ca.root, manager.ca.cluster_id)

    def whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            caller = authorizer.identify(context)
        except AuthorizationError as exc:
            context.abort(exc.code, str(exc))
        assert caller is not None  # the port requires a client certificate
        return f"{caller.node_id} {caller.role.ou} {caller.cluster_id}".encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "shoal.test.SyncProbe", {"WhoAmI": grpc.unary_unary_rpc_method_handler(whoami)}
            ),
        )
    )
    own = manager.credentials
    port = server.add_secure_port(
        "127.0.0.1:0",
        ReloadableServerCredentials(
            certificate_pem(own.certificate), private_key_pem(own.key), manager.ca.root.cert_pem
        ).credentials,
    )
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(10)


async def test_sync_context_yields_the_callers_identity(
    manager: Manager, sync_address: str
) -> None:
    token = str(manager.ca.join_tokens.worker)
    worker = await join_cluster(manager.join_address, token, generate_node_key(), 10.0)

    async with grpc.aio.secure_channel(
        sync_address, worker.channel_credentials(), MANAGER_CHANNEL_OPTIONS
    ) as channel:
        answer = await channel.unary_unary(WHOAMI)(b"", timeout=10.0)

    identity = worker.identity
    assert identity.role is Role.WORKER
    assert answer == f"{identity.node_id} swarm-worker {manager.ca.cluster_id}".encode()
