"""The servicers called directly with a fake context (the TLS path is in tests/integration)."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import REGISTRY

from manager.ca.auth import Authorizer
from manager.ca.certificates import create_csr, generate_node_key, verify_node_certificate
from manager.ca.cluster_ca import ClusterCA
from manager.ca.roles import Role
from manager.ca.server import CA_POLICIES, CAServicer, NodeCAServicer
from shoal.v1 import ca_pb2, specs_pb2, types_pb2
from tests.unit.manager.ca.fakes import (
    Aborted,
    FakeContext,
    MemoryNodeRegistry,
    node_certificate_pem,
)


@pytest.fixture
def ca() -> ClusterCA:
    return ClusterCA.initialize()


@pytest.fixture
def registry() -> MemoryNodeRegistry:
    return MemoryNodeRegistry()


@pytest.fixture
def node_ca(ca: ClusterCA, registry: MemoryNodeRegistry) -> NodeCAServicer:
    return NodeCAServicer(ca, registry, Authorizer(ca.root, ca.cluster_id))


def join_request(token: str) -> ca_pb2.IssueNodeCertificateRequest:
    return ca_pb2.IssueNodeCertificateRequest(csr=create_csr(generate_node_key()), token=token)


def issued(role: str, reason: str) -> float:
    labels = {"role": role, "reason": reason}
    return REGISTRY.get_sample_value("shoal_ca_certificates_issued_total", labels) or 0.0


async def test_worker_token_registers_a_worker(
    ca: ClusterCA, registry: MemoryNodeRegistry, node_ca: NodeCAServicer
) -> None:
    before = issued("swarm-worker", "join")
    response = await node_ca.IssueNodeCertificate(
        join_request(str(ca.join_tokens.worker)), FakeContext()
    )

    assert response.node_membership == specs_pb2.NodeSpec.ACCEPTED
    assert await registry.node_role(response.node_id) is Role.WORKER
    status = await node_ca.NodeCertificateStatus(
        ca_pb2.NodeCertificateStatusRequest(node_id=response.node_id), FakeContext()
    )
    assert status.status.state == types_pb2.IssuanceStatus.ISSUED
    assert status.certificate.cn == response.node_id
    assert status.certificate.role == types_pb2.WORKER
    verify_node_certificate(status.certificate.certificate, ca.root)
    assert issued("swarm-worker", "join") == before + 1


async def test_manager_token_registers_a_manager(
    ca: ClusterCA, registry: MemoryNodeRegistry, node_ca: NodeCAServicer
) -> None:
    response = await node_ca.IssueNodeCertificate(
        join_request(str(ca.join_tokens.manager)), FakeContext()
    )
    assert await registry.node_role(response.node_id) is Role.MANAGER


@pytest.mark.parametrize(
    ("token", "code", "message"),
    [
        ("SWMTKN-1-x", grpc.StatusCode.INVALID_ARGUMENT, "4 dash-separated parts"),
        (
            "SWMTKN-1-" + "0" * 50 + "-" + "0" * 25,
            grpc.StatusCode.PERMISSION_DENIED,
            "another root CA",
        ),
    ],
)
async def test_bad_tokens(
    node_ca: NodeCAServicer,
    registry: MemoryNodeRegistry,
    token: str,
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(Aborted, match=message) as caught:
        await node_ca.IssueNodeCertificate(join_request(token), FakeContext())
    assert caught.value.code == code
    assert len(registry) == 0


async def test_rotated_token_is_permission_denied(
    ca: ClusterCA, registry: MemoryNodeRegistry, node_ca: NodeCAServicer
) -> None:
    old = str(ca.join_tokens.worker)
    ca.rotate_join_token(Role.WORKER)

    with pytest.raises(Aborted, match="wrong or has been rotated") as caught:
        await node_ca.IssueNodeCertificate(join_request(old), FakeContext())
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert len(registry) == 0


async def test_bad_csr_is_invalid_argument(ca: ClusterCA, node_ca: NodeCAServicer) -> None:
    request = ca_pb2.IssueNodeCertificateRequest(csr=b"junk", token=str(ca.join_tokens.worker))
    with pytest.raises(Aborted, match="not valid PEM") as caught:
        await node_ca.IssueNodeCertificate(request, FakeContext())
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_renewal_keeps_id_and_takes_the_registry_role(
    ca: ClusterCA, registry: MemoryNodeRegistry, node_ca: NodeCAServicer
) -> None:
    joined = await node_ca.IssueNodeCertificate(
        join_request(str(ca.join_tokens.worker)), FakeContext()
    )
    node_id = joined.node_id
    context = FakeContext(node_certificate_pem(ca, node_id, Role.WORKER))
    renewal = ca_pb2.IssueNodeCertificateRequest(csr=create_csr(generate_node_key()))

    assert (await node_ca.IssueNodeCertificate(renewal, context)).node_id == node_id
    record = await registry.certificate(node_id)
    assert record is not None and record.role == types_pb2.WORKER

    registry.set_role(node_id, Role.MANAGER)
    assert (await node_ca.IssueNodeCertificate(renewal, context)).node_id == node_id
    record = await registry.certificate(node_id)
    assert record is not None and record.role == types_pb2.MANAGER

    registry.remove(node_id)
    with pytest.raises(Aborted, match="not a member") as caught:
        await node_ca.IssueNodeCertificate(renewal, context)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_renewal_without_certificate_is_unauthenticated(node_ca: NodeCAServicer) -> None:
    request = ca_pb2.IssueNodeCertificateRequest(csr=create_csr(generate_node_key()))
    with pytest.raises(Aborted, match="renewing needs the node's current certificate") as caught:
        await node_ca.IssueNodeCertificate(request, FakeContext())
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_status_of_unknown_or_empty_node(node_ca: NodeCAServicer) -> None:
    with pytest.raises(Aborted, match="no node 'ghost'") as caught:
        await node_ca.NodeCertificateStatus(
            ca_pb2.NodeCertificateStatusRequest(node_id="ghost"), FakeContext()
        )
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(Aborted, match="node_id is empty") as caught:
        await node_ca.NodeCertificateStatus(ca_pb2.NodeCertificateStatusRequest(), FakeContext())
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_ca_servicer(ca: ClusterCA) -> None:
    servicer = CAServicer(ca)
    root = await servicer.GetRootCACertificate(ca_pb2.GetRootCACertificateRequest(), FakeContext())
    assert root.certificate == ca.root.cert_pem
    unlock = await servicer.GetUnlockKey(ca_pb2.GetUnlockKeyRequest(), FakeContext())
    assert unlock.unlock_key == b""


def test_every_ca_method_states_its_roles() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for service in ca_pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(CA_POLICIES) == methods
    assert CA_POLICIES["/shoal.v1.CA/GetUnlockKey"].roles == {Role.MANAGER}
    assert not CA_POLICIES["/shoal.v1.CA/GetUnlockKey"].anonymous
    assert CA_POLICIES["/shoal.v1.NodeCA/IssueNodeCertificate"].anonymous


async def test_refusals_are_counted_by_reason(node_ca: NodeCAServicer) -> None:
    labels = {"reason": "InvalidJoinToken"}
    name = "shoal_ca_certificate_requests_refused_total"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    with pytest.raises(Aborted):
        await node_ca.IssueNodeCertificate(join_request("junk"), FakeContext())
    assert REGISTRY.get_sample_value(name, labels) == before + 1
