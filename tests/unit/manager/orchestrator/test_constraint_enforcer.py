"""The constraint enforcer on a real store: tasks leave nodes that stopped suiting them."""

from __future__ import annotations

from collections.abc import Callable

from manager.orchestrator import ConstraintEnforcer, GlobalOrchestrator, ReplicatedOrchestrator
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.orchestrator.harness import Sim, node, running, service_spec, settle

GIB = 1 << 30


def enforcer(sim: Sim) -> ConstraintEnforcer:
    return ConstraintEnforcer(sim.store, sim.clock.clock)


def relabel(zone: str) -> Callable[[objects_pb2.Node], None]:
    def change(n: objects_pb2.Node) -> None:
        n.spec.annotations.labels["zone"] = zone

    return change


async def test_a_label_change_moves_the_task_elsewhere(sim: Sim) -> None:
    await sim.add_node(node("a", labels={"zone": "x"}))
    await sim.add_node(node("b", labels={"zone": "y"}))
    replicated = ReplicatedOrchestrator(sim.store, sim.clock.clock)
    async with running(replicated, enforcer(sim)):
        spec = service_spec("web", replicas=1, constraints=["node.labels.zone==x"])
        service_id = await sim.create_service(spec)
        await sim.schedule(place=lambda task: "a")
        await sim.converge()
        [placed] = sim.runnable(service_id)
        assert placed.node_id == "a"

        await sim.change_node("b", relabel("x"))
        await sim.change_node("a", relabel("z"))
        await settle(sim.store)
        assert sim.task(placed.id).desired_state == types_pb2.SHUTDOWN
        [successor] = sim.runnable(service_id)
        assert successor.slot == placed.slot and successor.status.state == types_pb2.NEW

        await sim.schedule(place=lambda task: "b")
        await sim.converge()
    [moved] = sim.runnable(service_id)
    assert moved.node_id == "b" and moved.status.state == types_pb2.RUNNING


async def test_an_unrelated_change_leaves_tasks_alone(sim: Sim) -> None:
    await sim.add_node(node("a", labels={"zone": "x"}))
    async with running(ReplicatedOrchestrator(sim.store, sim.clock.clock), enforcer(sim)):
        spec = service_spec("web", replicas=2, constraints=["node.labels.zone==x"])
        service_id = await sim.create_service(spec)
        await sim.converge()
        before = sim.runnable(service_id)

        def other_label(n: objects_pb2.Node) -> None:
            n.spec.annotations.labels["rack"] = "7"

        await sim.change_node("a", other_label)
        await settle(sim.store)
    assert sim.runnable(service_id) == [sim.task(t.id) for t in before]
    assert all(t.desired_state == types_pb2.RUNNING for t in sim.runnable(service_id))


async def test_shrinking_resources_evict_the_newest_tasks(sim: Sim) -> None:
    await sim.add_node(node("a", memory=4 * GIB))
    async with running(ReplicatedOrchestrator(sim.store, sim.clock.clock), enforcer(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=1, memory=GIB))
        await sim.converge()
        [oldest] = sim.runnable(service_id)
        sim.clock.advance(1)
        await sim.scale(service_id, 3)
        await sim.converge()
        assert len(sim.runnable(service_id)) == 3

        def shrink(n: objects_pb2.Node) -> None:
            n.description.resources.memory_bytes = int(1.5 * GIB)

        await sim.change_node("a", shrink)
        await settle(sim.store)
    survivors = [t for t in sim.runnable(service_id) if t.status.state == types_pb2.RUNNING]
    assert [t.id for t in survivors] == [oldest.id]
    assert len(sim.runnable(service_id)) == 3  # the two evicted slots wait for a node


async def test_a_global_task_leaves_a_node_that_no_longer_matches(sim: Sim) -> None:
    await sim.add_node(node("a", labels={"zone": "x"}))
    global_ = GlobalOrchestrator(sim.store, sim.clock.clock)
    async with running(enforcer(sim)):
        # Without the global orchestrator: what the enforcer does alone.
        spec = service_spec("agent", replicas=None, constraints=["node.labels.zone==x"])
        service_id = await sim.create_service(spec)
        async with running(global_):
            await sim.converge()
        [placed] = sim.runnable(service_id)
        await sim.change_node("a", relabel("y"))
        await settle(sim.store)
    assert sim.runnable(service_id) == []
    assert sim.task(placed.id).desired_state == types_pb2.SHUTDOWN
