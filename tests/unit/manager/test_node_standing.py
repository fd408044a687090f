"""The store's word on a caller whose certificate is valid: removed nodes are refused
everywhere, a changed role narrows what the old certificate may call."""

from __future__ import annotations

import pytest

from manager.ca.auth import Authorizer, requires
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import PermissionDenied
from manager.ca.roles import Role
from manager.node_standing import raft_standing, store_standing
from manager.store import LocalProposer, Store, WriteTx
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.ca.fakes import FakeContext, node_certificate_pem

MANAGERS = requires(Role.MANAGER)
NODES = requires(Role.WORKER, Role.MANAGER)


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.initialize()


async def store_with(desired: dict[str, int], with_cluster: bool = False) -> Store:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")

    def seed(tx: WriteTx) -> None:
        if with_cluster:
            tx.create(objects_pb2.Cluster(id="c1"))
        for node_id, role in desired.items():
            node = objects_pb2.Node(id=node_id)
            node.spec.desired_role = role  # type: ignore[assignment]
            tx.create(node)

    if with_cluster or desired:
        await store.update(seed)
    return store


async def authorizer_with(ca: ClusterCA, **desired: int) -> Authorizer:
    store = await store_with(desired)
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


async def test_the_raft_port_refuses_a_removed_manager_but_not_a_demoted_one(
    ca: ClusterCA,
) -> None:
    """A demoted leader still talks raft while it hands over leadership and is removed; a
    node the store no longer has takes no part."""
    store = await store_with({"m1": types_pb2.MANAGER, "m2": types_pb2.WORKER}, with_cluster=True)
    authorizer = Authorizer(ca.root, ca.cluster_id, standing=raft_standing(store))
    for member in ("m1", "m2"):
        assert authorizer.authorize(caller(ca, member, Role.MANAGER), "/R/S", MANAGERS)
    with pytest.raises(PermissionDenied, match="node gone was removed"):
        authorizer.authorize(caller(ca, "gone", Role.MANAGER), "/R/S", MANAGERS)


async def test_a_manager_still_catching_up_refuses_no_manager(ca: ClusterCA) -> None:
    """A joining manager's store is empty until the leader's entries arrive: the leader
    must reach it (its certificate is still checked)."""
    authorizer = Authorizer(ca.root, ca.cluster_id, standing=raft_standing(await store_with({})))
    assert authorizer.authorize(caller(ca, "leader", Role.MANAGER), "/R/S", MANAGERS)
