"""The restart supervisor on a real store: conditions, delay, attempts within a window."""

from __future__ import annotations

from functools import partial
from typing import Any, TypeAlias

from manager.orchestrator import Orchestrators, ReplicatedOrchestrator, RestartSupervisor
from manager.store import WriteTx
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock
from tests.unit.manager.orchestrator.harness import (
    Sim,
    node,
    running,
    service_spec,
    settle,
    update_config,
)

RestartCondition: TypeAlias = types_pb2.RestartPolicy.Condition.ValueType


def supervisor(sim: Sim) -> RestartSupervisor:
    return RestartSupervisor(sim.store, sim.clock.clock)


def replicated(sim: Sim) -> ReplicatedOrchestrator:
    return ReplicatedOrchestrator(sim.store, sim.clock.clock)


async def start_one(sim: Sim, **options: Any) -> tuple[str, objects_pb2.Task]:
    await sim.add_node(node("a"))
    service_id = await sim.create_service(service_spec("web", replicas=1, **options))
    await sim.converge()
    [task] = sim.runnable(service_id)
    assert task.status.state == types_pb2.RUNNING
    return service_id, task


async def test_a_failed_task_is_restarted_in_its_slot_after_the_delay(
    sim: Sim, clock: FakeClock
) -> None:
    async with running(replicated(sim), supervisor(sim)):
        service_id, first = await start_one(sim, restart_delay=None)  # default: 5 s
        await sim.fail(first.id)
        await settle(sim.store)

        assert sim.task(first.id).desired_state == types_pb2.SHUTDOWN
        [successor] = sim.runnable(service_id)
        assert successor.slot == first.slot and successor.id != first.id
        assert successor.desired_state == types_pb2.READY

        await sim.converge()  # the agent prepares it, no further
        assert sim.task(successor.id).status.state == types_pb2.READY
        clock.advance(4.9)
        await settle(sim.store)
        assert sim.task(successor.id).desired_state == types_pb2.READY
        clock.advance(0.1)
        await settle(sim.store)
        assert sim.task(successor.id).desired_state == types_pb2.RUNNING
        await sim.converge()
    assert sim.task(successor.id).status.state == types_pb2.RUNNING


async def outcome(
    sim: Sim, condition: RestartCondition, ended: types_pb2.TaskState.ValueType
) -> bool:
    """Whether a task of `condition` that ended in `ended` was restarted."""
    async with running(replicated(sim), supervisor(sim)):
        service_id, first = await start_one(sim, restart=condition)
        await sim.fail(first.id, ended)
        await sim.converge()
        assert sim.task(first.id).desired_state == types_pb2.SHUTDOWN
        restarted = bool(sim.runnable(service_id))
        # Nothing else revives the slot meanwhile.
        await sim.add_node(node("b"))
        await sim.converge()
        assert bool(sim.runnable(service_id)) == restarted
        return restarted


async def test_condition_any_restarts_after_an_exit_or_a_failure(sim: Sim) -> None:
    assert await outcome(sim, types_pb2.RestartPolicy.ANY, types_pb2.COMPLETE)


async def test_condition_any_restarts_after_an_unrequested_shutdown(sim: Sim) -> None:
    assert await outcome(sim, types_pb2.RestartPolicy.ANY, types_pb2.SHUTDOWN)


async def test_condition_on_failure_does_not_restart_after_a_clean_exit(sim: Sim) -> None:
    assert not await outcome(sim, types_pb2.RestartPolicy.ON_FAILURE, types_pb2.COMPLETE)


async def test_condition_on_failure_restarts_after_a_failure(sim: Sim) -> None:
    assert await outcome(sim, types_pb2.RestartPolicy.ON_FAILURE, types_pb2.FAILED)


async def test_condition_on_failure_restarts_after_a_rejection(sim: Sim) -> None:
    assert await outcome(sim, types_pb2.RestartPolicy.ON_FAILURE, types_pb2.REJECTED)


async def test_condition_none_never_restarts(sim: Sim) -> None:
    assert not await outcome(sim, types_pb2.RestartPolicy.NONE, types_pb2.FAILED)


async def test_max_attempts_within_the_window(sim: Sim, clock: FakeClock) -> None:
    async with running(replicated(sim), supervisor(sim)):
        service_id, task = await start_one(sim, max_attempts=2, window=60.0)
        restarts = 0
        for _ in range(3):
            await sim.fail(task.id)
            await sim.converge()
            current = sim.runnable(service_id)
            if not current:
                break
            restarts += 1
            [task] = current
            clock.advance(10)
        assert restarts == 2
        assert len(sim.tasks(service_id)) == 3


async def test_attempts_outside_the_window_do_not_count(sim: Sim, clock: FakeClock) -> None:
    async with running(replicated(sim), supervisor(sim)):
        service_id, task = await start_one(sim, max_attempts=1, window=30.0)
        await sim.fail(task.id)
        await sim.converge()
        [task] = sim.runnable(service_id)  # restart 1
        clock.advance(31)
        await sim.fail(task.id)
        await sim.converge()
        [task] = sim.runnable(service_id)  # the first restart is out of the window
        await sim.fail(task.id)
        await sim.converge()
    assert sim.runnable(service_id) == []


async def test_a_new_spec_starts_counting_afresh(sim: Sim) -> None:
    async with running(replicated(sim), supervisor(sim)):
        service_id, task = await start_one(sim, max_attempts=1)
        await sim.fail(task.id)
        await sim.converge()
        [task] = sim.runnable(service_id)
        await sim.fail(task.id)
        await sim.converge()
        assert sim.runnable(service_id) == []

        await sim.set_image(service_id, "registry:5000/app:2")
        await sim.converge()
        [task] = sim.runnable(service_id)  # revived with the new spec
        await sim.fail(task.id)
        await sim.converge()
    [restarted] = sim.runnable(service_id)
    assert restarted.spec.container.image == "registry:5000/app:2"


async def test_a_new_leader_keeps_the_restart_delay_and_the_attempts(
    sim: Sim, clock: FakeClock
) -> None:
    async with running(replicated(sim), supervisor(sim)):
        service_id, first = await start_one(sim, restart_delay=5.0, max_attempts=2)
        await sim.fail(first.id)
        await sim.converge()
        [second] = sim.runnable(service_id)
        clock.advance(3)
        await settle(sim.store)
    # Leadership moves: new instances, same store.
    async with running(replicated(sim), supervisor(sim)):
        await settle(sim.store)
        assert sim.task(second.id).desired_state == types_pb2.READY
        clock.advance(2)
        await sim.converge()
        assert sim.task(second.id).status.state == types_pb2.RUNNING

        await sim.fail(second.id)  # restart 2 of 2
        await sim.converge()
        [third] = sim.runnable(service_id)
        clock.advance(5)
        await sim.converge()
        await sim.fail(third.id)  # no restart 3
        await sim.converge()
    assert sim.runnable(service_id) == []


async def test_a_global_task_restarts_on_its_node_unless_the_node_left(sim: Sim) -> None:
    await sim.add_node(node("a"))
    await sim.add_node(node("b"))
    async with running(supervisor(sim)):
        service_id = await sim.create_service(service_spec("agent", replicas=None))
        service = sim.service(service_id)
        for host in ("a", "b"):
            task = objects_pb2.Task(
                id=f"t-{host}",
                service_id=service_id,
                node_id=host,
                desired_state=types_pb2.RUNNING,
                spec=service.spec.task,
                spec_version=service.spec_version,
            )
            await sim.store.update(partial(WriteTx.create, obj=task))
        await sim.converge()

        def down(n: objects_pb2.Node) -> None:
            n.status.state = types_pb2.NodeStatus.DOWN

        await sim.change_node("b", down)
        await sim.fail("t-a")
        await sim.fail("t-b")
        await settle(sim.store)
    [restarted] = sim.runnable(service_id)
    assert restarted.node_id == "a" and restarted.slot == 0
    assert sim.task("t-b").desired_state == types_pb2.SHUTDOWN


async def test_a_task_of_a_removed_service_is_not_restarted(sim: Sim) -> None:
    async with running(replicated(sim)):
        service_id, first = await start_one(sim)
    async with running(supervisor(sim)):
        await sim.remove_service(service_id)
        await sim.fail(first.id)
        await settle(sim.store)
    assert sim.runnable(service_id) == []


async def test_no_restart_when_a_task_of_the_current_spec_holds_the_slot(sim: Sim) -> None:
    config = update_config(order=types_pb2.UpdateConfig.START_FIRST)
    async with running(Orchestrators(sim.store, sim.clock.clock)):
        service_id, old = await start_one(sim, update=config)
        await sim.set_image(service_id, "registry:5000/app:2")
        await settle(sim.store)  # start-first: the new task is not placed yet
        [new] = [t for t in sim.runnable(service_id) if t.id != old.id]
        await sim.fail(old.id)
        await settle(sim.store)
        assert [t.id for t in sim.runnable(service_id)] == [new.id]
