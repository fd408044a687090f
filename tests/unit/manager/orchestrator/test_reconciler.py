"""The loop under every subsystem: refused writes are retried, a restored store is re-read,
metrics count what was done."""

from __future__ import annotations

from collections import Counter

from prometheus_client import REGISTRY

from manager.orchestrator import OrchestratorConfig, Orchestrators, ReplicatedOrchestrator
from manager.store import Kind, LocalProposer, ProposalFailed, Store
from shoal.v1 import store_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock
from tests.unit.manager.orchestrator.harness import (
    Sim,
    node,
    running,
    service_spec,
    settle,
)


class RefusingProposer:
    """A raft stand-in that refuses the next `refusals` proposals, then commits locally."""

    def __init__(self, store: Store) -> None:
        self._local = LocalProposer(store, proposer_id="test")
        self.refusals = 0

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        if self.refusals:
            self.refusals -= 1
            raise ProposalFailed("no leader (test)")
        return await self._local.propose(actions)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_refused_write_is_retried_after_a_growing_delay(sim: Sim, clock: FakeClock) -> None:
    proposer = RefusingProposer(sim.store)
    sim.store.proposer = proposer
    refused_before = sample(
        "shoal_orchestrator_refused_writes_total", subsystem="replicated", error="ProposalFailed"
    )
    async with running(ReplicatedOrchestrator(sim.store, clock.clock)):
        service_id = await sim.create_service(service_spec("web", replicas=2))
        proposer.refusals = 2
        await settle(sim.store)
        assert sim.tasks(service_id) == []
        clock.advance(0.1)  # first retry: refused again
        await settle(sim.store)
        assert sim.tasks(service_id) == []
        clock.advance(0.1)  # the second retry waits 0.2 s
        await settle(sim.store)
        assert sim.tasks(service_id) == []
        clock.advance(0.15)
        await settle(sim.store)
    assert sorted(t.slot for t in sim.tasks(service_id)) == [1, 2]
    refused = sample(
        "shoal_orchestrator_refused_writes_total", subsystem="replicated", error="ProposalFailed"
    )
    assert refused - refused_before == 2


async def test_a_store_restored_from_a_snapshot_is_read_again(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(Orchestrators(sim.store, sim.clock.clock)):
        service_id = await sim.create_service(service_spec("web", replicas=1))
        await sim.converge()
        sim.store.restore(sim.store.capture())  # what installing a raft snapshot does
        await settle(sim.store)
        await sim.scale(service_id, 3)
        await sim.converge()
    assert sorted(t.slot for t in sim.runnable(service_id)) == [1, 2, 3]


async def test_created_tasks_are_counted(sim: Sim) -> None:
    before = sample("shoal_orchestrator_tasks_created_total", reason="new slot")
    async with running(ReplicatedOrchestrator(sim.store, sim.clock.clock)):
        await sim.create_service(service_spec("web", replicas=4))
        await settle(sim.store)
    assert sample("shoal_orchestrator_tasks_created_total", reason="new slot") - before == 4


async def test_big_changes_are_split_over_several_transactions(sim: Sim) -> None:
    config = OrchestratorConfig(max_changes_per_transaction=3)
    events = sim.store.watch(kinds=[Kind.TASK])
    async with running(ReplicatedOrchestrator(sim.store, sim.clock.clock, config)):
        service_id = await sim.create_service(service_spec("web", replicas=10))
        await settle(sim.store)
        assert sorted(t.slot for t in sim.tasks(service_id)) == list(range(1, 11))
        await sim.remove_service(service_id)
        await settle(sim.store)
        assert all(t.desired_state == types_pb2.REMOVE for t in sim.tasks(service_id))
    received = [await events.get() for _ in range(events.pending())]
    per_commit = Counter(event.index for event in received)
    assert max(per_commit.values()) == 3
    assert sum(per_commit.values()) == 20  # 10 created, 10 marked REMOVE
