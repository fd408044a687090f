"""The store's word on a caller whose certificate is valid: removed nodes are refused
everywhere, a changed role narrows what the old certificate may call."""

from __future__ import annotations

import pytest

from manager.ca.auth import Authorizer, requires
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import PermissionDenied
from manager.ca.roles import Role
from manager.node_standing import store_standing
from manager.store import LocalProposer, Store, WriteTx
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.ca.fakes import FakeContext, node_certificate_pem

MANAGERS = requires(Role.MANAGER)
NODES = requires(Role.WORKER, Role.MANAGER)


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.initialize()


async def authorizer_with(ca: ClusterCA, **desired: int) -> Authorizer:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")

    def seed(tx: WriteTx) -> None:
        for node_id, role in desired.items():
            node = objects_pb2.Node(id=node_id)
            node.spec.desired_role = role  # type: ignore[assignment]
            tx.create(node)

    await store.update(seed)
    return Authorizer(ca.root, ca.cluster_id, standing=store_standing(store))


def caller(ca: ClusterCA, node_id: str, role: Role) -> FakeContext:
    return FakeContext(node_certificate_pem(ca, node_id, role))


async def test_a_node_in_good_standing_calls_what_its_certificate_allows(ca: ClusterCA) -> None:
    authorizer = await authorizer_with(ca, m1=types_pb2.MANAGER, w1=types_pb2.WORKER)
    assert authorizer.authorize(caller(ca, "m1", Role.MANAGER), "/x.S/M", MANAGERS) is not None
    assert authorizer.authorize(caller(ca, "w1", Role.WORKER), "/x.S/N", NODES) is not None


async def test_a_removed_node_is_refused_everywhere(ca: ClusterCA) -> None:
    authorizer = await authorizer_with(ca, m1=types_pb2.MANAGER)
    for policy in (MANAGERS, NODES):
        with pytest.raises(PermissionDenied, match="node gone was removed from the cluster"):
            authorizer.authorize(caller(ca, "gone", Role.MANAGER), "/x.S/M", policy)


async def test_a_demoted_manager_keeps_only_what_a_worker_may_call(ca: ClusterCA) -> None:
    authorizer = await authorizer_with(ca, m2=types_pb2.WORKER)
    old_certificate = caller(ca, "m2", Role.MANAGER)
    with pytest.raises(PermissionDenied, match="node m2 is to be a swarm-worker now"):
        authorizer.authorize(old_certificate, "/x.S/Control", MANAGERS)
    assert authorizer.authorize(old_certificate, "/x.S/Dispatch", NODES) is not None
