"""The ResourceAllocator service on a real store: attachment tasks of standalone containers,
made for the calling node and deleted by it only, and every refusal with its gRPC code."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest

from manager.ca.auth import Authorizer, requires
from manager.ca.cluster_ca import ClusterCA
from manager.ca.errors import Unauthenticated
from manager.ca.roles import Role
from manager.clock import timestamp_seconds
from manager.node_rpc import certificate_identity
from manager.orchestrator.tasks import is_attachment
from manager.resource_allocator import RESOURCE_POLICIES, ResourceAllocatorServicer
from manager.store import LocalProposer, NotLeader, Store, WriteTx, new_id
from shoal.v1 import objects_pb2, resource_pb2, specs_pb2, store_pb2, types_pb2
from tests.unit.manager.ca.fakes import Aborted, FakeContext, node_certificate_pem
from tests.unit.manager.fake_clock import START, FakeClock

ATTACH = "/shoal.v1.ResourceAllocator/AttachNetwork"
DETACH = "/shoal.v1.ResourceAllocator/DetachNetwork"
CONTAINER_ID = "3f2a" * 16  # 64 hex characters, as the engine makes container ids


def network(
    name: str,
    *,
    attachable: bool = True,
    ingress: bool = False,
    pending_delete: bool = False,
) -> objects_pb2.Network:
    result = objects_pb2.Network(id=new_id(), pending_delete=pending_delete)
    result.spec.annotations.name = name
    result.spec.driver_config.name = "overlay"
    result.spec.attachable = attachable
    result.spec.ingress = ingress
    return result


def node(node_id: str) -> objects_pb2.Node:
    result = objects_pb2.Node(id=node_id, role=types_pb2.WORKER)
    result.spec.annotations.name = node_id
    result.status.state = types_pb2.NodeStatus.READY
    return result


def service_task(node_id: str) -> objects_pb2.Task:
    task = objects_pb2.Task(id=new_id(), node_id=node_id, service_id="svc", slot=1)
    task.spec.container.image = "busybox"
    task.desired_state = types_pb2.RUNNING
    task.status.state = types_pb2.RUNNING
    return task


class Cluster:
    """A store with nodes w1 and w2 and networks of every kind; callers by node id."""

    def __init__(self) -> None:
        self.store = Store()
        self.store.proposer = LocalProposer(self.store, proposer_id="test")
        self.clock = FakeClock()
        self.servicer = ResourceAllocatorServicer(self.store, self.identify, self.clock.clock)
        self.networks = {
            n.spec.annotations.name: n
            for n in (
                network("backend"),
                network("private", attachable=False),
                network("ingress", ingress=True),
                network("leaving", pending_delete=True),
            )
        }

    @staticmethod
    def identify(context: grpc.aio.ServicerContext) -> str:
        """TEST ONLY: the caller is the node the FakeCaller names."""
        assert isinstance(context, FakeCaller)
        return context.node_id

    async def populate(self) -> None:
        def write(tx: WriteTx) -> None:
            for node_id in ("w1", "w2"):
                tx.create(node(node_id))
            for each in self.networks.values():
                tx.create(each)

        await self.store.update(write)

    def tasks(self) -> list[objects_pb2.Task]:
        return self.store.view(lambda tx: tx.list(objects_pb2.Task))

    def task(self, task_id: str) -> objects_pb2.Task | None:
        return self.store.view(lambda tx: tx.get(objects_pb2.Task, task_id))

    async def attach(
        self,
        target: str,
        caller: str = "w1",
        container_id: str = CONTAINER_ID,
        container_name: str = "db",
        aliases: tuple[str, ...] = (),
    ) -> str:
        request = resource_pb2.AttachNetworkRequest(
            config=specs_pb2.NetworkAttachmentConfig(target=target, aliases=list(aliases)),
            container_id=container_id,
            container_name=container_name,
        )
        response = await self.servicer.AttachNetwork(request, FakeCaller(caller))
        return response.attachment_id

    async def detach(self, attachment_id: str, caller: str = "w1") -> None:
        request = resource_pb2.DetachNetworkRequest(attachment_id=attachment_id)
        response = await self.servicer.DetachNetwork(request, FakeCaller(caller))
        assert response == resource_pb2.DetachNetworkResponse()


class FakeCaller(FakeContext):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id


@pytest.fixture
async def cluster() -> Cluster:
    result = Cluster()
    await result.populate()
    return result


async def refused(code: grpc.StatusCode, cluster: Cluster, attach: Awaitable[str]) -> Aborted:
    """`attach` (a call not yet started) refused with `code`, and nothing made."""
    before = cluster.tasks()
    with pytest.raises(Aborted) as caught:
        await attach
    assert caught.value.code == code, caught.value
    assert cluster.tasks() == before
    return caught.value


# -- AttachNetwork --------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["name", "id"])
async def test_attach_makes_a_task_preassigned_to_the_caller(cluster: Cluster, by: str) -> None:
    backend = cluster.networks["backend"]
    target = backend.spec.annotations.name if by == "name" else backend.id
    attachment_id = await cluster.attach(target, caller="w2", aliases=("db-alias",))

    [task] = cluster.tasks()
    assert task.id == attachment_id
    assert is_attachment(task)
    assert task.node_id == "w2"
    assert task.spec.attachment.container_id == CONTAINER_ID
    assert task.annotations.name == "db"
    assert task.service_id == "" and task.slot == 0
    assert [(c.target, list(c.aliases)) for c in task.spec.networks] == [(backend.id, ["db-alias"])]
    assert task.desired_state == types_pb2.RUNNING
    assert task.status.state == types_pb2.NEW
    assert timestamp_seconds(task.status.timestamp) == START


async def test_each_attach_is_a_task_of_its_own(cluster: Cluster) -> None:
    first = await cluster.attach("backend", container_id="a1", container_name="one")
    second = await cluster.attach("backend", container_id="b2", container_name="two")
    assert first != second
    assert {(t.id, t.spec.attachment.container_id) for t in cluster.tasks()} == {
        (first, "a1"),
        (second, "b2"),
    }


async def test_an_unknown_network_is_not_found(cluster: Cluster) -> None:
    error = await refused(grpc.StatusCode.NOT_FOUND, cluster, cluster.attach("nope"))
    assert "no network 'nope'" in error.details


async def test_the_ingress_network_is_refused(cluster: Cluster) -> None:
    error = await refused(grpc.StatusCode.FAILED_PRECONDITION, cluster, cluster.attach("ingress"))
    assert "ingress network" in error.details


@pytest.mark.parametrize("by", ["name", "id"])
async def test_a_network_that_is_not_attachable_is_refused(cluster: Cluster, by: str) -> None:
    private = cluster.networks["private"]
    target = "private" if by == "name" else private.id
    error = await refused(grpc.StatusCode.FAILED_PRECONDITION, cluster, cluster.attach(target))
    assert "not attachable" in error.details and "--attachable" in error.details


async def test_a_network_being_removed_is_refused(cluster: Cluster) -> None:
    error = await refused(grpc.StatusCode.FAILED_PRECONDITION, cluster, cluster.attach("leaving"))
    assert "being removed" in error.details


async def test_a_caller_whose_node_is_not_in_the_store_is_not_found(cluster: Cluster) -> None:
    error = await refused(
        grpc.StatusCode.NOT_FOUND, cluster, cluster.attach("backend", caller="ghost")
    )
    assert "ghost" in error.details


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("container_id", ""),
        ("container_id", "-starts-with-a-dash"),
        ("container_id", "has/slash"),
        ("container_id", "x" * 129),
        ("container_name", ""),
        ("container_name", "has space"),
        ("container_name", "semi;colon"),
    ],
)
async def test_a_bad_container_reference_is_an_invalid_argument(
    cluster: Cluster, field: str, value: str
) -> None:
    if field == "container_id":
        attach = cluster.attach("backend", container_id=value)
    else:
        attach = cluster.attach("backend", container_name=value)
    error = await refused(grpc.StatusCode.INVALID_ARGUMENT, cluster, attach)
    assert error.details.startswith(f"{field}:")


async def test_the_longest_container_reference_is_accepted(cluster: Cluster) -> None:
    longest = "a" + "b.c_d-" * 21 + "e"  # 128 characters
    assert len(longest) == 128
    await cluster.attach("backend", container_id=longest, container_name=longest)
    [task] = cluster.tasks()
    assert task.spec.attachment.container_id == longest


async def test_no_network_is_an_invalid_argument(cluster: Cluster) -> None:
    error = await refused(grpc.StatusCode.INVALID_ARGUMENT, cluster, cluster.attach(""))
    assert "config.target" in error.details


class RefusingProposer:
    async def propose(self, actions: store_pb2.StoreActions) -> int:
        raise NotLeader("10.0.0.1:4242")


async def test_a_store_that_refuses_the_write_is_unavailable(cluster: Cluster) -> None:
    cluster.store.proposer = RefusingProposer()
    error = await refused(grpc.StatusCode.UNAVAILABLE, cluster, cluster.attach("backend"))
    assert "not the raft leader" in error.details


async def test_an_unidentified_caller_is_refused_with_its_code(cluster: Cluster) -> None:
    ca = ClusterCA.initialize()
    servicer = ResourceAllocatorServicer(
        cluster.store, certificate_identity(Authorizer(ca.root, ca.cluster_id))
    )
    request = resource_pb2.AttachNetworkRequest(
        config=specs_pb2.NetworkAttachmentConfig(target="backend"),
        container_id=CONTAINER_ID,
        container_name="db",
    )
    with pytest.raises(Aborted) as caught:
        await servicer.AttachNetwork(request, FakeContext())  # no certificate
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(Aborted) as caught:
        await servicer.DetachNetwork(
            resource_pb2.DetachNetworkRequest(attachment_id="x"), FakeContext()
        )
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert cluster.tasks() == []

    # With its certificate, the node the certificate names is the caller.
    context = FakeContext(node_certificate_pem(ca, "w2", Role.WORKER))
    response = await servicer.AttachNetwork(request, context)
    task = cluster.task(response.attachment_id)
    assert task is not None and task.node_id == "w2"


# -- DetachNetwork --------------------------------------------------------------------------


async def test_detach_deletes_the_callers_attachment(cluster: Cluster) -> None:
    kept = await cluster.attach("backend", container_id="other")
    attachment_id = await cluster.attach("backend")
    await cluster.detach(attachment_id)
    assert cluster.task(attachment_id) is None
    assert [t.id for t in cluster.tasks()] == [kept]


async def test_detaching_twice_is_no_error(cluster: Cluster) -> None:
    attachment_id = await cluster.attach("backend")
    await cluster.detach(attachment_id)
    await cluster.detach(attachment_id)
    await cluster.detach("never-was")
    assert cluster.tasks() == []


async def test_another_nodes_attachment_is_not_detached(cluster: Cluster) -> None:
    attachment_id = await cluster.attach("backend", caller="w1")
    with pytest.raises(Aborted) as caught:
        await cluster.detach(attachment_id, caller="w2")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "another node" in caught.value.details
    assert cluster.task(attachment_id) is not None


async def test_a_service_task_is_not_detached(cluster: Cluster) -> None:
    task = service_task("w1")
    await cluster.store.update(lambda tx: tx.create(task))
    with pytest.raises(Aborted) as caught:
        await cluster.detach(task.id, caller="w1")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a network attachment" in caught.value.details
    assert cluster.task(task.id) is not None


async def test_a_detach_the_store_refuses_is_unavailable(cluster: Cluster) -> None:
    attachment_id = await cluster.attach("backend")
    cluster.store.proposer = RefusingProposer()
    with pytest.raises(Aborted) as caught:
        await cluster.detach(attachment_id)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert cluster.task(attachment_id) is not None


# -- who may call ---------------------------------------------------------------------------


def test_workers_and_managers_may_call_both_methods() -> None:
    assert set(RESOURCE_POLICIES) == {ATTACH, DETACH}
    for policy in RESOURCE_POLICIES.values():
        assert policy == requires(Role.WORKER, Role.MANAGER)
        assert not policy.anonymous


@pytest.mark.parametrize("method", [ATTACH, DETACH])
def test_the_policies_admit_node_certificates_of_both_roles(method: str) -> None:
    ca = ClusterCA.initialize()
    authorizer = Authorizer(ca.root, ca.cluster_id)
    for node_id, role in (("w1", Role.WORKER), ("m1", Role.MANAGER)):
        context = FakeContext(node_certificate_pem(ca, node_id, role))
        caller = authorizer.authorize(context, method, RESOURCE_POLICIES[method])
        assert caller is not None and caller.node_id == node_id and caller.role is role
    with pytest.raises(Unauthenticated):  # a node's certificate it must be
        authorizer.authorize(FakeContext(), method, RESOURCE_POLICIES[method])
