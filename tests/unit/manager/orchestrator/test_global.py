"""The global orchestrator on a real store: one task per eligible node, following nodes."""

from __future__ import annotations

from collections.abc import Callable

from manager.orchestrator import GlobalOrchestrator, RestartSupervisor
from manager.store import WriteTx
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.orchestrator.harness import Sim, node, running, service_spec, settle


def orchestrator(sim: Sim) -> GlobalOrchestrator:
    return GlobalOrchestrator(sim.store, sim.clock.clock)


def hosts(sim: Sim, service_id: str) -> list[str]:
    return sorted(t.node_id for t in sim.runnable(service_id))


async def test_one_task_per_node_with_the_node_preassigned(sim: Sim) -> None:
    for name in ("a", "b", "c"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("agent", replicas=None))
        await settle(sim.store)
    tasks = sim.tasks(service_id)
    assert sorted(t.node_id for t in tasks) == ["a", "b", "c"]
    for task in tasks:
        assert task.slot == 0
        assert task.status.state == types_pb2.NEW
        assert task.desired_state == types_pb2.RUNNING
        assert task.annotations.name == f"agent.{task.node_id}.{task.id}"


async def test_a_joining_node_gets_a_task_and_a_drained_one_loses_it(sim: Sim) -> None:
    for name in ("a", "b", "c"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("agent", replicas=None))
        await sim.converge()
        await sim.add_node(node("d"))
        await settle(sim.store)
        assert hosts(sim, service_id) == ["a", "b", "c", "d"]

        def drain(n: objects_pb2.Node) -> None:
            n.spec.availability = specs_pb2.NodeSpec.DRAIN

        await sim.change_node("b", drain)
        await sim.converge()
        assert hosts(sim, service_id) == ["a", "c", "d"]
        [old] = [t for t in sim.tasks(service_id) if t.node_id == "b"]
        assert old.desired_state == types_pb2.SHUTDOWN
        assert old.status.state == types_pb2.SHUTDOWN

        def activate(n: objects_pb2.Node) -> None:
            n.spec.availability = specs_pb2.NodeSpec.ACTIVE

        await sim.change_node("b", activate)
        await sim.converge()
    assert hosts(sim, service_id) == ["a", "b", "c", "d"]


async def test_down_and_paused_nodes(sim: Sim) -> None:
    for name in ("a", "b"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("agent", replicas=None))
        await sim.converge()

        def down(n: objects_pb2.Node) -> None:
            n.status.state = types_pb2.NodeStatus.DOWN

        def pause(n: objects_pb2.Node) -> None:
            n.spec.availability = specs_pb2.NodeSpec.PAUSE

        await sim.change_node("a", down)
        await sim.change_node("b", pause)
        await settle(sim.store)
        assert hosts(sim, service_id) == ["b"]

        await sim.add_node(node("c", availability=specs_pb2.NodeSpec.PAUSE))
        await settle(sim.store)
        assert hosts(sim, service_id) == ["b"]

        def ready(n: objects_pb2.Node) -> None:
            n.status.state = types_pb2.NodeStatus.READY

        await sim.change_node("a", ready)
        await settle(sim.store)
    assert hosts(sim, service_id) == ["a", "b"]


async def test_constraints_follow_node_labels(sim: Sim) -> None:
    await sim.add_node(node("a", labels={"zone": "x"}))
    await sim.add_node(node("b", labels={"zone": "y"}))
    async with running(orchestrator(sim)):
        spec = service_spec("agent", replicas=None, constraints=["node.labels.zone==x"])
        service_id = await sim.create_service(spec)
        await sim.converge()
        assert hosts(sim, service_id) == ["a"]

        def relabel(zone: str) -> Callable[[objects_pb2.Node], None]:
            def change(n: objects_pb2.Node) -> None:
                n.spec.annotations.labels["zone"] = zone

            return change

        await sim.change_node("b", relabel("x"))
        await sim.change_node("a", relabel("y"))
        await sim.converge()
    assert hosts(sim, service_id) == ["b"]
    [old] = [t for t in sim.tasks(service_id) if t.node_id == "a"]
    assert old.desired_state == types_pb2.SHUTDOWN


async def test_a_node_whose_task_ended_for_good_gets_one_on_a_spec_change(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(orchestrator(sim), RestartSupervisor(sim.store, sim.clock.clock)):
        spec = service_spec("agent", replicas=None, restart=types_pb2.RestartPolicy.NONE)
        service_id = await sim.create_service(spec)
        await sim.converge()
        [task] = sim.runnable(service_id)
        await sim.fail(task.id, types_pb2.COMPLETE)
        await sim.converge()
        assert hosts(sim, service_id) == []

        await sim.set_image(service_id, "registry:5000/agent:2")
        await settle(sim.store)
    [revived] = sim.runnable(service_id)
    assert revived.node_id == "a"
    assert revived.spec.container.image == "registry:5000/agent:2"


async def test_a_removed_service_and_a_removed_node(sim: Sim) -> None:
    for name in ("a", "b"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        keep = await sim.create_service(service_spec("keep", replicas=None))
        gone = await sim.create_service(service_spec("gone", replicas=None))
        await sim.converge()

        def remove_b(tx: WriteTx) -> None:
            tx.delete(objects_pb2.Node, "b")

        await sim.store.update(remove_b)
        await sim.remove_service(gone)
        await settle(sim.store)
    assert hosts(sim, keep) == ["a"]
    assert all(t.desired_state == types_pb2.REMOVE for t in sim.tasks(gone))
