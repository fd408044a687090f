"""The replicated orchestrator on a real store: slots created, scaled, refilled, moved."""

from __future__ import annotations

from manager.orchestrator import Orchestrators, ReplicatedOrchestrator
from manager.store import WriteTx
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock
from tests.unit.manager.orchestrator.harness import (
    IMAGE,
    Sim,
    node,
    running,
    service_spec,
    settle,
)


def orchestrator(sim: Sim) -> ReplicatedOrchestrator:
    return ReplicatedOrchestrator(sim.store, sim.clock.clock)


async def test_six_replicas_get_slots_one_to_six(sim: Sim) -> None:
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=6))
        await settle(sim.store)

    tasks = sim.tasks(service_id)
    service = sim.service(service_id)
    assert sorted(t.slot for t in tasks) == [1, 2, 3, 4, 5, 6]
    for task in tasks:
        assert task.status.state == types_pb2.NEW
        assert task.desired_state == types_pb2.RUNNING
        assert task.spec == service.spec.task
        assert task.spec.container.image == IMAGE
        assert task.spec_version == service.spec_version
        assert task.service_annotations.name == "web"
        assert task.annotations.name == f"web.{task.slot}.{task.id}"
        assert not task.node_id


async def test_scale_up_then_down_keeps_balance_and_running_tasks(sim: Sim) -> None:
    for name in ("a", "b", "c"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=6))
        await settle(sim.store)
        await sim.scale(service_id, 12)
        await settle(sim.store)
        slots = {t.slot: t for t in sim.runnable(service_id)}
        assert sorted(slots) == list(range(1, 13))

        # Slots 1-6 on a (slot 1 not running yet), 7-10 on b, 11-12 on c.
        placement = {**dict.fromkeys(range(1, 7), "a"), **dict.fromkeys(range(7, 11), "b")}
        for slot, task in slots.items():
            host = placement.get(slot, "c")
            state = types_pb2.ASSIGNED if slot == 1 else types_pb2.RUNNING
            await sim.set_state(task.id, state, node_id=host)
        await settle(sim.store)

        await sim.scale(service_id, 2)
        await settle(sim.store)

    kept = sim.runnable(service_id)
    # Rank on each node: a's running tasks 2..6 first, then 1; b 7..10; c 11, 12. The
    # two kept are the first of their node with the lowest slot numbers: 2 (a) and 7 (b).
    assert sorted(t.slot for t in kept) == [2, 7]
    assert all(t.desired_state == types_pb2.RUNNING for t in kept)
    removed = [t for t in sim.tasks(service_id) if t.slot not in (2, 7)]
    assert len(removed) == 10
    assert all(t.desired_state == types_pb2.REMOVE for t in removed)


async def test_scale_down_takes_from_the_busiest_node_first(sim: Sim) -> None:
    for name in ("a", "b"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=4))
        await settle(sim.store)
        for task in sim.runnable(service_id):
            host = "b" if task.slot == 4 else "a"
            await sim.set_state(task.id, types_pb2.RUNNING, node_id=host)
        await sim.scale(service_id, 2)
        await settle(sim.store)

    kept = sim.runnable(service_id)
    assert sorted((t.slot, t.node_id) for t in kept) == [(1, "a"), (4, "b")]


async def test_a_task_on_a_drained_or_down_node_is_replaced_in_its_slot(sim: Sim) -> None:
    for name in ("a", "b", "c"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=3))
        await sim.converge()
        by_node = {t.node_id: t for t in sim.runnable(service_id)}
        assert sorted(by_node) == ["a", "b", "c"]

        def drain(n: objects_pb2.Node) -> None:
            n.spec.availability = specs_pb2.NodeSpec.DRAIN

        def down(n: objects_pb2.Node) -> None:
            n.status.state = types_pb2.NodeStatus.DOWN

        await sim.change_node("a", drain)
        await sim.change_node("b", down)
        await settle(sim.store)

        for host in ("a", "b"):
            old = sim.task(by_node[host].id)
            assert old.desired_state == types_pb2.SHUTDOWN
            [successor] = sim.by_slot(service_id)[old.slot]
            assert successor.id != old.id
            assert successor.status.state == types_pb2.NEW and not successor.node_id
        assert sim.task(by_node["c"].id).desired_state == types_pb2.RUNNING

        await sim.converge()
    assert sorted(t.node_id for t in sim.runnable(service_id)) == ["c", "c", "c"]


async def test_a_paused_node_keeps_its_tasks_and_a_removed_node_loses_them(sim: Sim) -> None:
    for name in ("a", "b"):
        await sim.add_node(node(name))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=2))
        await sim.converge()
        on_a = next(t for t in sim.runnable(service_id) if t.node_id == "a")
        on_b = next(t for t in sim.runnable(service_id) if t.node_id == "b")

        def pause(n: objects_pb2.Node) -> None:
            n.spec.availability = specs_pb2.NodeSpec.PAUSE

        await sim.change_node("a", pause)
        await sim.store.update(lambda tx: tx.delete(objects_pb2.Node, "b"))
        await settle(sim.store)

    assert sim.task(on_a.id).desired_state == types_pb2.RUNNING
    assert sim.task(on_b.id).desired_state == types_pb2.SHUTDOWN
    assert len(sim.by_slot(service_id)[on_b.slot]) == 1


async def test_a_deleted_task_is_replaced_and_a_dead_slot_waits_for_a_spec_change(
    sim: Sim,
) -> None:
    await sim.add_node(node("a"))
    async with running(orchestrator(sim)):
        spec = service_spec("web", replicas=2, restart=types_pb2.RestartPolicy.NONE)
        service_id = await sim.create_service(spec)
        await sim.converge()
        one, two = sim.runnable(service_id)

        await sim.store.update(lambda tx: tx.delete(objects_pb2.Task, one.id))
        await settle(sim.store)
        [refilled] = sim.by_slot(service_id)[one.slot]
        assert refilled.id != one.id

        # Slot 2 ends for good (no restart supervisor here: do what it would do).
        await sim.fail(two.id)

        def give_up(tx: WriteTx) -> None:
            task = tx.get(objects_pb2.Task, two.id)
            assert task is not None
            task.desired_state = types_pb2.SHUTDOWN
            tx.update(task)

        await sim.store.update(give_up)
        await sim.converge()
        assert two.slot not in sim.by_slot(service_id)

        await sim.set_image(service_id, "registry:5000/app:2")
        await settle(sim.store)
        [revived] = sim.by_slot(service_id)[two.slot]
        assert revived.spec.container.image == "registry:5000/app:2"


async def test_a_removed_service_has_all_its_tasks_marked_remove(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=3))
        await sim.converge()
        await sim.remove_service(service_id)
        await settle(sim.store)
    tasks = sim.tasks(service_id)
    assert len(tasks) == 3
    assert all(t.desired_state == types_pb2.REMOVE for t in tasks)


async def test_a_second_slot_task_goes_once_one_of_the_current_spec_runs(sim: Sim) -> None:
    await sim.add_node(node("a"))
    async with running(orchestrator(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=1))
        await sim.converge()
        [first] = sim.runnable(service_id)
        service = sim.service(service_id)
        extra = objects_pb2.Task(
            id="duplicate", service_id=service_id, slot=1, desired_state=types_pb2.RUNNING
        )
        extra.spec.CopyFrom(service.spec.task)
        extra.spec_version.CopyFrom(service.spec_version)
        await sim.store.update(lambda tx: tx.create(extra))
        await sim.converge()
    # Both are current and RUNNING: the newest stays.
    assert [t.id for t in sim.runnable(service_id)] == ["duplicate"]
    assert sim.task(first.id).desired_state == types_pb2.SHUTDOWN


async def test_a_new_leader_creates_nothing_twice(sim: Sim, clock: FakeClock) -> None:
    await sim.add_node(node("a"))
    async with running(Orchestrators(sim.store, clock.clock)):
        service_id = await sim.create_service(service_spec("web", replicas=3))
        await sim.converge()
    before = {t.id for t in sim.tasks(service_id)}
    async with running(Orchestrators(sim.store, clock.clock)):
        await sim.converge()
    assert {t.id for t in sim.tasks(service_id)} == before


async def test_a_service_created_while_no_leader_ran_gets_its_tasks(sim: Sim) -> None:
    service_id = await sim.create_service(service_spec("web", replicas=2))
    async with running(orchestrator(sim)):
        await settle(sim.store)
    assert sorted(t.slot for t in sim.tasks(service_id)) == [1, 2]
