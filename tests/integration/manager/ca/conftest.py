"""A real grpc.aio manager on 127.0.0.1: NodeCA and CA plus a test-only Probe service, behind
the authorization interceptor, on a mutual-TLS cluster port and a TLS-only join port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from manager.ca import base36
from manager.ca.auth import AuthorizationInterceptor, Authorizer, requires
from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.client import NodeCredentials
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role
from manager.ca.server import CA_POLICIES, add_ca_services
from manager.reloadable_tls import ReloadableServerCredentials
from tests.unit.manager.ca.fakes import MemoryNodeRegistry

PROBE = "shoal.test.Probe"
MANAGERS_ONLY = f"/{PROBE}/ManagersOnly"
ANY_NODE = f"/{PROBE}/AnyNode"
UNLISTED = f"/{PROBE}/Unlisted"
PROBE_POLICIES = {
    MANAGERS_ONLY: requires(Role.MANAGER),
    ANY_NODE: requires(Role.MANAGER, Role.WORKER),
    # UNLISTED states no roles on purpose: nobody may call it.
}


@dataclass
class Manager:
    ca: ClusterCA
    registry: MemoryNodeRegistry
    authorizer: Authorizer
    credentials: NodeCredentials
    cluster_address: str
    join_address: str


def probe_handler(authorizer: Authorizer) -> grpc.GenericRpcHandler:
    """Answers with the caller's node id (empty when it presented no certificate)."""

    async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        caller = authorizer.identify(context)
        return caller.node_id.encode() if caller is not None else b""

    handler = grpc.unary_unary_rpc_method_handler(whoami)
    return grpc.method_handlers_generic_handler(
        PROBE, {"ManagersOnly": handler, "AnyNode": handler, "Unlisted": handler}
    )


def manager_credentials(ca: ClusterCA) -> NodeCredentials:
    """The serving manager's own certificate, issued directly by its CA."""
    key = generate_node_key()
    node_id = base36.new_id()
    certificate = ca.issue(create_csr(key), node_id, Role.MANAGER)
    return NodeCredentials(key, certificate, ca.root)


@pytest.fixture
async def manager() -> AsyncIterator[Manager]:
    ca = ClusterCA.initialize()
    registry = MemoryNodeRegistry()
    authorizer = Authorizer(ca.root, ca.cluster_id)
    own = manager_credentials(ca)
    server = grpc.aio.server(
        interceptors=[AuthorizationInterceptor(authorizer, {**CA_POLICIES, **PROBE_POLICIES})]
    )
    add_ca_services(server, ca, registry, authorizer)
    server.add_generic_rpc_handlers((probe_handler(authorizer),))
    cert_pem, key_pem = certificate_pem(own.certificate), private_key_pem(own.key)
    cluster_port = server.add_secure_port(
        "127.0.0.1:0", ReloadableServerCredentials(cert_pem, key_pem, ca.root.cert_pem).credentials
    )
    join_port = server.add_secure_port(
        "127.0.0.1:0", ReloadableServerCredentials(cert_pem, key_pem, None).credentials
    )
    await server.start()
    try:
        yield Manager(
            ca,
            registry,
            authorizer,
            own,
            f"127.0.0.1:{cluster_port}",
            f"127.0.0.1:{join_port}",
        )
    finally:
        await server.stop(None)
