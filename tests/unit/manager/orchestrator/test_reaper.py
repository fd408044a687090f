"""The task reaper on a real store: history per slot, removed tasks and services."""

from __future__ import annotations

from manager.orchestrator import (
    GlobalOrchestrator,
    ReplicatedOrchestrator,
    RestartSupervisor,
    TaskReaper,
)
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.orchestrator.harness import (
    Runnable,
    Sim,
    node,
    running,
    service_spec,
    settle,
)


def subsystems(sim: Sim) -> list[Runnable]:
    clock = sim.clock.clock
    return [
        ReplicatedOrchestrator(sim.store, clock),
        GlobalOrchestrator(sim.store, clock),
        RestartSupervisor(sim.store, clock),
        TaskReaper(sim.store, clock),
    ]


async def fail_repeatedly(sim: Sim, service_id: str, times: int) -> list[str]:
    """Fail the slot's current task `times` times; the ids, oldest first."""
    failed = []
    for _ in range(times):
        [task] = sim.runnable(service_id)
        failed.append(task.id)
        await sim.fail(task.id)
        await sim.converge()
    return failed


async def test_five_old_tasks_are_kept_per_slot(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(*subsystems(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=2))
        await sim.converge()
        failed = await fail_repeatedly_slot(sim, service_id, slot=1, times=8)
    slot_one = [t for t in sim.tasks(service_id) if t.slot == 1]
    assert len(slot_one) == 6  # the running one and the five newest that failed
    assert {t.id for t in slot_one} >= set(failed[-5:])
    assert not {t.id for t in slot_one} & set(failed[:3])
    assert len([t for t in sim.tasks(service_id) if t.slot == 2]) == 1


async def fail_repeatedly_slot(sim: Sim, service_id: str, slot: int, times: int) -> list[str]:
    failed = []
    for _ in range(times):
        [task] = sim.by_slot(service_id)[slot]
        failed.append(task.id)
        await sim.fail(task.id)
        await sim.converge()
    return failed


async def test_the_cluster_sets_the_limit(sim: Sim) -> None:
    await sim.add_node(node("a"))
    await sim.set_cluster_history(2)
    async with running(*subsystems(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=1))
        await sim.converge()
        await fail_repeatedly(sim, service_id, 4)
        assert len(sim.tasks(service_id)) == 3

        await sim.set_cluster_history(0)
        await settle(sim.store)
        assert len(sim.tasks(service_id)) == 1

        await sim.set_cluster_history(-1)
        await fail_repeatedly(sim, service_id, 7)
    assert len(sim.tasks(service_id)) == 8


async def test_a_slot_that_ended_for_good_keeps_its_last_task(sim: Sim) -> None:
    await sim.add_node(node("a"))
    await sim.set_cluster_history(0)
    async with running(*subsystems(sim)):
        spec = service_spec("web", replicas=1, restart=types_pb2.RestartPolicy.NONE)
        service_id = await sim.create_service(spec)
        await sim.converge()
        [last] = await fail_repeatedly(sim, service_id, 1)
    [kept] = sim.tasks(service_id)
    assert kept.id == last and kept.desired_state == types_pb2.SHUTDOWN


async def test_scaled_away_tasks_go_once_they_stopped(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(*subsystems(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=3))
        await sim.converge()
        await sim.scale(service_id, 1)
        await settle(sim.store)
        # Told to stop (desired REMOVE) but not stopped yet: kept.
        assert len(sim.tasks(service_id)) == 3
        await sim.converge()
    assert [t.slot for t in sim.tasks(service_id)] == [1]


async def test_never_assigned_tasks_of_a_scale_down_go_at_once(sim: Sim) -> None:
    async with running(*subsystems(sim)):  # no node: nothing gets assigned
        service_id = await sim.create_service(service_spec("web", replicas=3))
        await settle(sim.store)
        await sim.scale(service_id, 1)
        await settle(sim.store)
    assert [t.slot for t in sim.tasks(service_id)] == [1]


async def test_a_removed_service_goes_with_its_last_task(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(*subsystems(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=2))
        await sim.converge()
        await sim.remove_service(service_id)
        await settle(sim.store)
        assert len(sim.tasks(service_id)) == 2  # still running
        await sim.converge()
        assert sim.tasks(service_id) == []
    assert sim.store.view(lambda tx: tx.get(objects_pb2.Service, service_id)) is None


async def test_tasks_on_a_down_node_of_a_removed_service_go(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(*subsystems(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=1))
        await sim.converge()

        def down(n: objects_pb2.Node) -> None:
            n.status.state = types_pb2.NodeStatus.DOWN

        await sim.change_node("a", down)
        await sim.remove_service(service_id)
        await settle(sim.store)
    assert sim.tasks(service_id) == []


async def test_global_history_is_kept_per_node(sim: Sim) -> None:
    await sim.add_node(node("a"))
    await sim.add_node(node("b"))
    await sim.set_cluster_history(1)
    async with running(*subsystems(sim)):
        service_id = await sim.create_service(service_spec("agent", replicas=None))
        await sim.converge()
        for _ in range(3):
            [on_a] = [t for t in sim.runnable(service_id) if t.node_id == "a"]
            await sim.fail(on_a.id)
            await sim.converge()
    per_node = {h: [t for t in sim.tasks(service_id) if t.node_id == h] for h in ("a", "b")}
    assert len(per_node["a"]) == 2 and len(per_node["b"]) == 1
