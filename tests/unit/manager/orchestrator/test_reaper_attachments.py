"""The task reaper and network attachments of standalone containers (tasks of no service,
preassigned to their node): their node detaches them, so the reaper leaves them alone while
the node is in the store, whatever happens to tasks around them, and deletes them only once
the node is gone."""

from __future__ import annotations

from manager.orchestrator import Orchestrators
from manager.orchestrator.tasks import is_attachment
from manager.store import WriteTx, new_id
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.orchestrator.harness import (
    Sim,
    TaskState,
    node,
    running,
    service_spec,
    settle,
)


def attachment(
    node_id: str, state: TaskState = types_pb2.RUNNING, container_id: str = "c0ffee"
) -> objects_pb2.Task:
    """As manager.resource_allocator makes them (then moved on to `state`)."""
    task = objects_pb2.Task(id=new_id(), node_id=node_id, desired_state=types_pb2.RUNNING)
    task.annotations.name = f"container-{container_id}"
    task.spec.attachment.container_id = container_id
    task.spec.networks.add(target="net-1")
    task.status.state = state
    return task


def serviceless(node_id: str, state: TaskState) -> objects_pb2.Task:
    """A container task of no service on the node: the same slot group as its attachments
    (service "", slot 0, the node), and reaped as a removed service's once finished."""
    task = objects_pb2.Task(id=new_id(), node_id=node_id, desired_state=types_pb2.RUNNING)
    task.spec.container.image = "busybox"
    task.status.state = state
    return task


async def put(sim: Sim, *tasks: objects_pb2.Task) -> None:
    def write(tx: WriteTx) -> None:
        for task in tasks:
            tx.create(task)

    await sim.store.update(write)


async def remove_node(sim: Sim, node_id: str) -> None:
    await sim.store.update(lambda tx: tx.delete(objects_pb2.Node, node_id))


def ids(sim: Sim) -> set[str]:
    return {t.id for t in sim.tasks()}


def orchestrators(sim: Sim) -> Orchestrators:
    return Orchestrators(sim.store, sim.clock.clock)


async def test_attachments_stay_while_tasks_of_their_slot_group_are_reaped(sim: Sim) -> None:
    await sim.add_node(node("a"))
    running_one = attachment("a", container_id="c1")
    new_one = attachment("a", types_pb2.NEW, container_id="c2")  # not yet confirmed
    assigned = attachment("a", types_pb2.ASSIGNED, container_id="c3")
    await put(sim, running_one, new_one, assigned)
    stored = {t.id: t for t in sim.tasks()}
    async with running(orchestrators(sim)):
        await settle(sim.store)
        ended = serviceless("a", types_pb2.FAILED)
        await put(sim, ended)  # the reaper works on the slot group ("", 0, "a")
        await settle(sim.store)
        assert ended.id not in ids(sim)
    assert ids(sim) == {running_one.id, new_one.id, assigned.id}
    for task_id, task in stored.items():
        assert sim.task(task_id) == task  # untouched by every orchestrator


async def test_attachments_stay_among_a_services_tasks_and_history(sim: Sim) -> None:
    await sim.add_node(node("a"))
    await sim.set_cluster_history(0)
    mine = attachment("a", types_pb2.NEW)
    await put(sim, mine)
    async with running(orchestrators(sim)):
        service_id = await sim.create_service(service_spec("web", replicas=2))
        await sim.converge()  # the attachment is confirmed and reported RUNNING with them
        for _ in range(3):
            [first, _second] = sim.runnable(service_id)
            await sim.fail(first.id)
            await sim.converge()
        assert len(sim.tasks(service_id)) == 2  # no history kept
        await sim.remove_service(service_id)
        await sim.converge()
        assert sim.tasks(service_id) == []
    [kept] = sim.tasks()
    assert kept.id == mine.id and kept.status.state == types_pb2.RUNNING


async def test_attachments_stay_on_a_node_that_goes_down(sim: Sim) -> None:
    await sim.add_node(node("a"))
    mine = attachment("a")
    unconfirmed = attachment("a", types_pb2.NEW, container_id="c2")
    other = serviceless("a", types_pb2.RUNNING)  # finished once its node is DOWN
    await put(sim, mine, unconfirmed, other)
    async with running(orchestrators(sim)):
        await settle(sim.store)
        assert ids(sim) == {mine.id, unconfirmed.id, other.id}

        def down(n: objects_pb2.Node) -> None:
            n.status.state = types_pb2.NodeStatus.DOWN

        await sim.change_node("a", down)
        await settle(sim.store)
        assert other.id not in ids(sim)  # the reaper did go through the node's tasks
    assert ids(sim) == {mine.id, unconfirmed.id}


async def test_attachments_go_with_their_node(sim: Sim) -> None:
    await sim.add_node(node("a"))
    await sim.add_node(node("b"))
    on_a = [attachment("a"), attachment("a", types_pb2.NEW, container_id="c2")]
    on_b = attachment("b")
    await put(sim, *on_a, on_b)
    async with running(orchestrators(sim)):
        await settle(sim.store)
        assert ids(sim) == {on_a[0].id, on_a[1].id, on_b.id}
        await remove_node(sim, "a")
        await settle(sim.store)
    assert ids(sim) == {on_b.id}


async def test_attachments_of_a_down_node_go_when_it_is_removed(sim: Sim) -> None:
    await sim.add_node(node("a"))
    mine = attachment("a")
    await put(sim, mine)
    async with running(orchestrators(sim)):

        def down(n: objects_pb2.Node) -> None:
            n.status.state = types_pb2.NodeStatus.DOWN

        await sim.change_node("a", down)
        await settle(sim.store)
        assert ids(sim) == {mine.id}
        await remove_node(sim, "a")
        await settle(sim.store)
    assert ids(sim) == set()


async def test_a_new_leaders_reaper_keeps_attachments_of_live_nodes(sim: Sim) -> None:
    await sim.add_node(node("a"))
    mine = attachment("a")
    ended = serviceless("a", types_pb2.COMPLETE)
    await put(sim, mine, ended)
    async with running(orchestrators(sim)):  # starts with all of it in the store
        await settle(sim.store)
    assert ids(sim) == {mine.id}


async def test_a_new_leaders_reaper_deletes_attachments_of_nodes_already_gone(
    sim: Sim,
) -> None:
    """The node was removed while no reaper ran (between two leaders, or before the NodeWork
    of its removal was done): nobody will detach its attachments now."""
    await sim.add_node(node("b"))
    orphan = attachment("gone")
    unconfirmed_orphan = attachment("gone", types_pb2.NEW, container_id="c2")
    kept = attachment("b")
    await put(sim, orphan, unconfirmed_orphan, kept)
    async with running(orchestrators(sim)):
        await settle(sim.store)
    assert ids(sim) == {kept.id}


def test_only_attachments_are_attachments() -> None:
    assert is_attachment(attachment("a"))
    assert not is_attachment(serviceless("a", types_pb2.RUNNING))
