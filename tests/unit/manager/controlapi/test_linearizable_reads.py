"""Get and List run after the read barrier: a manager whose store lags behind the leader's
answers what the leader acknowledged before the read. Two real Control servers on loopback,
each over its own Store; a stand-in for raft commits on the leader's store and hands the
entries to the follower's only when the follower's read barrier asks for them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from manager.controlapi import ControlServicer
from manager.store import NotLeader, ProposalFailed, Store
from shoal.v1 import control_pb2, control_pb2_grpc, objects_pb2, store_pb2
from tests.unit.manager.controlapi.helpers import (
    async_stub,
    control_server,
    refused,
    service_spec,
)


class LaggingLog:
    """Commits on the leader's store at once; the follower's gets the entries on catch_up."""

    def __init__(self, leader: Store, follower: Store) -> None:
        self._leader = leader
        self._follower = follower
        self._sequence = itertools.count(1)
        self._pending: list[tuple[int, store_pb2.StoreActions]] = []

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        if not actions.proposer_id:
            actions.proposer_id, actions.sequence = "log", next(self._sequence)
        index = self._leader.index + 1
        result = self._leader.apply(index, actions)
        self._pending.append((index, actions))
        return result.committed_index()

    def catch_up(self) -> int:
        """What a read point gives the follower: every entry committed so far, applied."""
        for index, actions in self._pending:
            self._follower.apply(index, actions)
        self._pending.clear()
        return self._follower.index


class NotTheLeader:
    """The follower's proposer: it never commits (Control forwards its writes)."""

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        raise NotLeader("127.0.0.1:7001")


@dataclass
class Barrier:
    """The follower's read barrier: counts calls, then catches up or fails as told."""

    log: LaggingLog
    calls: int = 0
    failure: Exception | None = None
    made: list[int] = field(default_factory=list)

    async def __call__(self) -> int:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        self.made.append(self.log.catch_up())
        return self.made[-1]


@dataclass
class Managers:
    leader_store: Store
    follower_store: Store
    barrier: Barrier
    leader: control_pb2_grpc.ControlAsyncStub
    follower: control_pb2_grpc.ControlAsyncStub


@pytest.fixture
async def managers() -> AsyncIterator[Managers]:
    leader_store, follower_store = Store(), Store()
    log = LaggingLog(leader_store, follower_store)
    leader_store.proposer = log
    follower_store.proposer = NotTheLeader()
    barrier = Barrier(log)
    leader_servicer = ControlServicer(leader_store)
    async with (
        control_server(leader_servicer) as leader_address,
        grpc.aio.insecure_channel(leader_address) as leader_channel,
    ):

        async def to_leader(error: NotLeader) -> grpc.aio.Channel:
            return leader_channel

        follower_servicer = ControlServicer(
            follower_store, leader_channel=to_leader, read_barrier=barrier
        )
        async with (
            control_server(follower_servicer) as follower_address,
            grpc.aio.insecure_channel(follower_address) as follower_channel,
        ):
            yield Managers(
                leader_store,
                follower_store,
                barrier,
                async_stub(leader_channel),
                async_stub(follower_channel),
            )


def service_ids(store: Store) -> set[str]:
    return {s.id for s in store.view(lambda tx: tx.list(objects_pb2.Service))}


async def test_a_lagging_manager_reads_what_the_leader_acknowledged(managers: Managers) -> None:
    created = await managers.leader.CreateService(
        control_pb2.CreateServiceRequest(spec=service_spec("web"))
    )
    service_id = created.service.id
    assert service_id not in service_ids(managers.follower_store)  # not applied here yet

    found = await managers.follower.GetService(control_pb2.GetServiceRequest(service_id=service_id))
    assert found.service.meta.version == created.service.meta.version
    assert managers.barrier.calls == 1

    second = await managers.leader.CreateService(
        control_pb2.CreateServiceRequest(spec=service_spec("db"))
    )
    listed = await managers.follower.ListServices(control_pb2.ListServicesRequest())
    assert {s.id for s in listed.services} == {service_id, second.service.id}
    assert managers.barrier.calls == 2


ReadCall = Callable[["control_pb2_grpc.ControlAsyncStub"], Awaitable[Any]]
READS: list[tuple[str, ReadCall]] = [
    ("GetNode", lambda s: s.GetNode(control_pb2.GetNodeRequest(node_id="n"))),
    ("ListNodes", lambda s: s.ListNodes(control_pb2.ListNodesRequest())),
    ("GetTask", lambda s: s.GetTask(control_pb2.GetTaskRequest(task_id="t"))),
    ("ListTasks", lambda s: s.ListTasks(control_pb2.ListTasksRequest())),
    ("GetService", lambda s: s.GetService(control_pb2.GetServiceRequest(service_id="s"))),
    ("ListServices", lambda s: s.ListServices(control_pb2.ListServicesRequest())),
    ("GetNetwork", lambda s: s.GetNetwork(control_pb2.GetNetworkRequest(network_id="n"))),
    ("ListNetworks", lambda s: s.ListNetworks(control_pb2.ListNetworksRequest())),
    ("GetCluster", lambda s: s.GetCluster(control_pb2.GetClusterRequest(cluster_id="c"))),
    ("ListClusters", lambda s: s.ListClusters(control_pb2.ListClustersRequest())),
    ("GetSecret", lambda s: s.GetSecret(control_pb2.GetSecretRequest(secret_id="s"))),
    ("ListSecrets", lambda s: s.ListSecrets(control_pb2.ListSecretsRequest())),
    ("GetConfig", lambda s: s.GetConfig(control_pb2.GetConfigRequest(config_id="c"))),
    ("ListConfigs", lambda s: s.ListConfigs(control_pb2.ListConfigsRequest())),
]


def test_every_get_and_list_is_covered_here() -> None:
    methods = control_pb2.DESCRIPTOR.services_by_name["Control"].methods_by_name
    reads = {name for name in methods if name.startswith(("Get", "List"))}
    assert reads == {name for name, _ in READS}


@pytest.mark.parametrize(("method", "call"), READS, ids=[name for name, _ in READS])
async def test_every_read_waits_for_the_barrier_and_fails_with_it(
    managers: Managers, method: str, call: ReadCall
) -> None:
    managers.barrier.failure = ProposalFailed("no linearizable read point: the test says so")
    reason = "no linearizable read point"
    await refused(call(managers.follower), grpc.StatusCode.UNAVAILABLE, reason)
    assert managers.barrier.calls == 1, method


async def test_writes_do_not_wait_for_the_barrier(managers: Managers) -> None:
    # The follower forwards the write; the leader's servicer has no barrier of its own here.
    managers.barrier.failure = ProposalFailed("reads only")
    created = await managers.follower.CreateService(
        control_pb2.CreateServiceRequest(spec=service_spec("web"))
    )
    assert created.service.id in service_ids(managers.leader_store)
    assert managers.barrier.calls == 0


async def test_a_read_whose_barrier_finds_no_leader_here_is_answered_by_the_leader(
    managers: Managers,
) -> None:
    created = await managers.leader.CreateService(
        control_pb2.CreateServiceRequest(spec=service_spec("web"))
    )
    managers.barrier.failure = NotLeader("127.0.0.1:7001")
    found = await managers.follower.GetService(
        control_pb2.GetServiceRequest(service_id=created.service.id)
    )
    assert found.service.id == created.service.id
    assert created.service.id not in service_ids(managers.follower_store)
