"""Writes on a follower reach the leader: two real Control servers on loopback, each over its
own real Store; a stand-in for raft commits on the leader's store and applies the same
entries to the follower's, whose own proposals raise NotLeader."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client import REGISTRY

from manager.controlapi import ControlServicer, StoreLeaderChannels, leader_control_address
from manager.store import NotLeader, Store
from shoal.v1 import control_pb2, control_pb2_grpc, objects_pb2, store_pb2, types_pb2
from tests.unit.manager.controlapi.helpers import (
    async_stub,
    control_server,
    node,
    refused,
    service_spec,
)
from tests.unit.manager.fake_clock import FakeClock

LEADER_RAFT = "127.0.0.1:7001"
FOLLOWER_RAFT = "127.0.0.1:7002"


class ReplicatedLog:
    """What raft does for the store, in one process: each entry applied at the same index
    on every store."""

    def __init__(self, leader: Store, followers: list[Store]) -> None:
        self._leader = leader
        self._followers = followers
        self._sequence = itertools.count(1)
        # False: the followers lag behind (they miss the entries committed meanwhile).
        self.replicating = True

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        if not actions.proposer_id:
            actions.proposer_id, actions.sequence = "log", next(self._sequence)
        index = self._leader.index + 1
        result = self._leader.apply(index, actions)
        if self.replicating:
            for follower in self._followers:
                follower.apply(index, actions)
        return result.committed_index()


class NotTheLeader:
    """A follower's proposer: never commits, names the leader it believes in."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        raise NotLeader(self.leader)


@dataclass
class Pair:
    leader_store: Store
    follower_store: Store
    follower_proposer: NotTheLeader
    log: ReplicatedLog
    leader: control_pb2_grpc.ControlAsyncStub
    follower: control_pb2_grpc.ControlAsyncStub


def manager_node(raft_address: str, control_address: str) -> objects_pb2.Node:
    result = node(role=types_pb2.MANAGER)
    result.manager_status.raft_addr = raft_address
    result.manager_status.addr = control_address
    return result


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    clock = FakeClock()
    leader_store, follower_store = Store(clock=clock.timestamp), Store(clock=clock.timestamp)
    log = ReplicatedLog(leader_store, [follower_store])
    leader_store.proposer = log
    proposer = NotTheLeader(LEADER_RAFT)
    follower_store.proposer = proposer
    channels = StoreLeaderChannels(follower_store, grpc.aio.insecure_channel)
    leader_servicer = ControlServicer(leader_store, clock=clock)
    follower_servicer = ControlServicer(follower_store, leader_channel=channels, clock=clock)
    async with (
        control_server(leader_servicer) as leader_address,
        control_server(follower_servicer) as follower_address,
        grpc.aio.insecure_channel(leader_address) as leader_channel,
        grpc.aio.insecure_channel(follower_address) as follower_channel,
    ):
        nodes = [
            manager_node(LEADER_RAFT, leader_address),
            manager_node(FOLLOWER_RAFT, follower_address),
        ]

        def register(tx: object) -> None:
            for each in nodes:
                tx.create(each)  # type: ignore[attr-defined]

        await leader_store.update(register)
        try:
            yield Pair(
                leader_store,
                follower_store,
                proposer,
                log,
                async_stub(leader_channel),
                async_stub(follower_channel),
            )
        finally:
            await channels.close()


def forwarded(method: str) -> float:
    labels = {"method": method}
    return REGISTRY.get_sample_value("shoal_controlapi_forwarded_total", labels) or 0.0


def services(store: Store) -> list[objects_pb2.Service]:
    return store.view(lambda tx: tx.list(objects_pb2.Service))


async def test_leader_address_is_looked_up_by_raft_address(pair: Pair) -> None:
    address = pair.follower_store.view(lambda tx: leader_control_address(tx, LEADER_RAFT))
    assert address is not None and address.startswith("127.0.0.1:")
    assert pair.follower_store.view(lambda tx: leader_control_address(tx, "nowhere:1")) is None


async def test_a_write_on_the_follower_is_made_by_the_leader(pair: Pair) -> None:
    before = forwarded("CreateService")

    response = await pair.follower.CreateService(
        control_pb2.CreateServiceRequest(spec=service_spec("web"))
    )

    assert forwarded("CreateService") == before + 1
    assert services(pair.leader_store) == [response.service]
    assert services(pair.follower_store) == [response.service]
    # Reads are served by the follower from its own (replicated) store.
    got = await pair.follower.GetService(
        control_pb2.GetServiceRequest(service_id=response.service.id)
    )
    assert got.service == response.service


async def test_the_leaders_refusal_is_relayed(pair: Pair) -> None:
    """The follower has not seen "web" yet, so only the leader can refuse the name."""
    pair.log.replicating = False
    await pair.leader.CreateService(control_pb2.CreateServiceRequest(spec=service_spec("web")))
    before = forwarded("CreateService")
    await refused(
        pair.follower.CreateService(control_pb2.CreateServiceRequest(spec=service_spec("web"))),
        grpc.StatusCode.ALREADY_EXISTS,
        "service name 'web' is already used",
    )
    assert forwarded("CreateService") == before + 1
    assert len(services(pair.leader_store)) == 1
    assert services(pair.follower_store) == []


async def test_invalid_requests_are_refused_locally(pair: Pair) -> None:
    before = forwarded("CreateService")
    spec = service_spec()
    spec.task.container.image = "UPPER"
    await refused(
        pair.follower.CreateService(control_pb2.CreateServiceRequest(spec=spec)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec.task.container.image",
    )
    assert forwarded("CreateService") == before


async def test_update_and_remove_are_forwarded(pair: Pair) -> None:
    created = (
        await pair.follower.CreateService(control_pb2.CreateServiceRequest(spec=service_spec()))
    ).service
    updated = (
        await pair.follower.UpdateService(
            control_pb2.UpdateServiceRequest(
                service_id=created.id,
                service_version=created.meta.version,
                spec=service_spec(replicas=3),
            )
        )
    ).service
    assert updated.spec.replicated_service.replicas == 3
    await pair.follower.RemoveService(control_pb2.RemoveServiceRequest(service_id=created.id))
    assert services(pair.leader_store) == services(pair.follower_store) == []


async def test_no_known_leader_is_unavailable(pair: Pair) -> None:
    pair.follower_proposer.leader = None
    await refused(
        pair.follower.CreateService(control_pb2.CreateServiceRequest(spec=service_spec())),
        grpc.StatusCode.UNAVAILABLE,
        "no leader is known",
    )
    pair.follower_proposer.leader = "127.0.0.1:7999"
    await refused(
        pair.follower.CreateService(control_pb2.CreateServiceRequest(spec=service_spec())),
        grpc.StatusCode.UNAVAILABLE,
        "the leader's Control address is not known",
    )
    assert services(pair.leader_store) == []


async def test_a_forwarded_call_is_never_forwarded_again(pair: Pair) -> None:
    """During an election the one a follower believes to be leader may not be: the call
    stops there instead of circling."""
    pair.leader_store.proposer = NotTheLeader(FOLLOWER_RAFT)
    details = await refused(
        pair.follower.CreateService(control_pb2.CreateServiceRequest(spec=service_spec())),
        grpc.StatusCode.UNAVAILABLE,
        "already forwarded once",
    )
    assert FOLLOWER_RAFT in details
    assert services(pair.leader_store) == []


async def test_a_follower_without_forwarding_answers_unavailable() -> None:
    clock = FakeClock()
    store = Store(proposer=NotTheLeader(LEADER_RAFT), clock=clock.timestamp)
    async with (
        control_server(ControlServicer(store, clock=clock)) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = async_stub(channel)
        await refused(
            stub.CreateService(control_pb2.CreateServiceRequest(spec=service_spec())),
            grpc.StatusCode.UNAVAILABLE,
            f"the leader is {LEADER_RAFT}",
            "does not forward",
        )
