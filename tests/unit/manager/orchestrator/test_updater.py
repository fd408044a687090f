"""Rolling updates and rollbacks on a real store, with every orchestrator running."""

from __future__ import annotations

from typing import Any

import pytest

from manager.orchestrator import Orchestrators, reconciler, rolling_update
from manager.orchestrator.reconciler import WriteFn
from manager.store import Store, VersionConflict, WriteTx
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock
from tests.unit.manager.orchestrator.harness import (
    IMAGE,
    Sim,
    node,
    running,
    service_spec,
    settle,
    update_config,
)

V2 = "registry:5000/app:2"
V3 = "registry:5000/app:3"
Status = types_pb2.UpdateStatus


def orchestrators(sim: Sim) -> Orchestrators:
    return Orchestrators(sim.store, sim.clock.clock)


async def start_service(sim: Sim, replicas: int | None = 6, **options: Any) -> str:
    for name in ("a", "b", "c"):
        await sim.add_node(node(name))
    spec = service_spec("web", replicas=replicas, **options)
    service_id = await sim.create_service(spec)
    await sim.converge()
    assert len(sim.runnable(service_id)) == (replicas or 3)
    return service_id


def images(sim: Sim, service_id: str) -> list[str]:
    return sorted(t.spec.container.image for t in sim.runnable(service_id))


def status(sim: Sim, service_id: str) -> types_pb2.UpdateStatus:
    return sim.service(service_id).update_status


async def fail_new_tasks(sim: Sim, service_id: str, image: str) -> None:
    for task in sim.runnable(service_id):
        if task.spec.container.image == image and task.status.state == types_pb2.RUNNING:
            await sim.fail(task.id)


async def test_parallelism_two_with_a_delay(sim: Sim, clock: FakeClock) -> None:
    config = update_config(parallelism=2, delay=10.0, monitor=5.0)
    async with running(orchestrators(sim)):
        # A restart delay does not hold back the tasks of an update.
        service_id = await start_service(sim, update=config, restart_delay=30.0)
        old = {t.slot: t for t in sim.runnable(service_id)}
        await sim.set_image(service_id, V2)
        await settle(sim.store)

        state = status(sim, service_id)
        assert state.state == Status.UPDATING and state.message == "update in progress"
        assert state.started_at.seconds == int(clock.now)
        new = [t for t in sim.runnable(service_id) if t.spec.container.image == V2]
        # Stop-first: two old tasks told to stop, their successors wait (READY) meanwhile.
        assert len(new) == 2
        assert all(t.desired_state == types_pb2.READY for t in new)
        assert all(old[t.slot].id != t.id for t in new)
        assert all(sim.task(old[t.slot].id).desired_state == types_pb2.SHUTDOWN for t in new)

        await sim.converge()  # the old ones stop, the new ones start and run
        assert images(sim, service_id).count(V2) == 2
        assert all(sim.task(t.id).status.state == types_pb2.RUNNING for t in new)
        clock.advance(9.9)
        await sim.converge()
        assert images(sim, service_id).count(V2) == 2  # still waiting out the delay
        clock.advance(0.1)
        await sim.converge()
        assert images(sim, service_id).count(V2) == 4
        clock.advance(10)
        await sim.converge()
        assert images(sim, service_id) == [V2] * 6
        assert status(sim, service_id).state == Status.UPDATING  # monitoring the last batch
        clock.advance(5)
        await sim.converge()

    state = status(sim, service_id)
    assert state.state == Status.COMPLETED and state.message == "update completed"
    assert state.completed_at.seconds == int(clock.now)
    assert sorted(t.slot for t in sim.runnable(service_id)) == [1, 2, 3, 4, 5, 6]


async def test_start_first_keeps_the_old_task_until_the_new_one_runs(sim: Sim) -> None:
    config = update_config(order=types_pb2.UpdateConfig.START_FIRST, monitor=0.0)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=1, update=config)
        [old] = sim.runnable(service_id)
        await sim.set_image(service_id, V2)
        await settle(sim.store)
        both = {t.spec.container.image: t for t in sim.runnable(service_id)}
        assert sorted(both) == [IMAGE, V2]
        assert both[IMAGE].id == old.id
        assert all(t.desired_state == types_pb2.RUNNING for t in both.values())

        await sim.schedule()
        await settle(sim.store)
        assert sim.task(old.id).desired_state == types_pb2.RUNNING  # new one not running yet
        await sim.converge()
    [new] = sim.runnable(service_id)
    assert new.spec.container.image == V2 and new.status.state == types_pb2.RUNNING
    assert sim.task(old.id).status.state == types_pb2.SHUTDOWN
    assert status(sim, service_id).state == Status.COMPLETED


async def test_a_failure_pauses_the_update(sim: Sim, clock: FakeClock) -> None:
    async with running(orchestrators(sim)):
        config = update_config(monitor=30.0, delay=20.0)
        service_id = await start_service(sim, replicas=3, update=config)
        await sim.set_image(service_id, V2)
        await sim.converge()
        [new] = [t for t in sim.runnable(service_id) if t.spec.container.image == V2]
        clock.advance(10)
        await sim.fail(new.id)
        await sim.converge()
        state = status(sim, service_id)
        assert state.state == Status.PAUSED
        assert new.id in state.message and "paused" in state.message
        assert state.completed_at.seconds == int(clock.now)
        clock.advance(60)
        await sim.converge()
    assert images(sim, service_id) == [IMAGE, IMAGE, V2]  # the failed one was restarted
    assert status(sim, service_id).state == Status.PAUSED


async def test_a_failure_after_the_monitor_window_does_not_count(
    sim: Sim, clock: FakeClock
) -> None:
    async with running(orchestrators(sim)):
        config = update_config(monitor=5.0, delay=20.0)
        service_id = await start_service(sim, replicas=2, update=config)
        await sim.set_image(service_id, V2)
        await sim.converge()
        [new] = [t for t in sim.runnable(service_id) if t.spec.container.image == V2]
        clock.advance(6)
        await sim.fail(new.id)
        await sim.converge()
        assert status(sim, service_id).state == Status.UPDATING
        clock.advance(20)
        await sim.converge(advance=5)
    assert status(sim, service_id).state == Status.COMPLETED
    assert images(sim, service_id) == [V2, V2]


async def test_a_failure_rolls_back_to_the_previous_spec(sim: Sim, clock: FakeClock) -> None:
    config = update_config(parallelism=2, failure_action=types_pb2.UpdateConfig.ROLLBACK)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=4, update=config)
        original = sim.service(service_id)
        await sim.set_image(service_id, V2)
        await sim.converge()
        await fail_new_tasks(sim, service_id, V2)
        await sim.converge()
        clock.advance(5)  # the rollback's monitor window
        await sim.converge()

    service = sim.service(service_id)
    assert service.spec == original.spec
    assert service.spec_version == original.spec_version
    assert service.previous_spec.task.container.image == V2
    assert service.update_status.state == Status.ROLLBACK_COMPLETED
    assert service.update_status.message.startswith("update rolled back due to ")
    assert service.update_status.message.endswith("; rollback completed")
    assert images(sim, service_id) == [IMAGE] * 4
    assert all(t.status.state == types_pb2.RUNNING for t in sim.runnable(service_id))


async def test_a_rollback_that_fails_pauses_and_never_loops(sim: Sim, clock: FakeClock) -> None:
    config = update_config(failure_action=types_pb2.UpdateConfig.ROLLBACK, monitor=60.0)
    rollback = update_config(failure_action=types_pb2.UpdateConfig.ROLLBACK, monitor=60.0)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=2, update=config, rollback=rollback)
        await sim.set_image(service_id, V2)
        await sim.converge()
        await fail_new_tasks(sim, service_id, V2)
        await sim.converge()
        assert status(sim, service_id).state == Status.ROLLBACK_STARTED
        await fail_new_tasks(sim, service_id, IMAGE)  # the rolled-back task fails too
        await sim.converge(advance=1)
        for _ in range(3):
            clock.advance(120)
            await sim.converge()

    service = sim.service(service_id)
    assert service.update_status.state == Status.ROLLBACK_PAUSED
    assert "rollback paused" in service.update_status.message
    assert service.spec.task.container.image == IMAGE  # rolled back once, not again


async def test_a_rollback_without_a_previous_spec_pauses(sim: Sim) -> None:
    config = update_config(failure_action=types_pb2.UpdateConfig.ROLLBACK)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=1, update=config)

        def force_without_history(spec: specs_pb2.ServiceSpec) -> None:
            spec.task.container.image = V2

        await sim.update_service(service_id, force_without_history)
        await sim.store.update(lambda tx: clear_previous(tx, service_id))
        await sim.converge()
        await fail_new_tasks(sim, service_id, V2)
        await sim.converge()
    state = status(sim, service_id)
    assert state.state == Status.PAUSED
    assert "no previous spec" in state.message


def clear_previous(tx: WriteTx, service_id: str) -> None:
    service = tx.get(objects_pb2.Service, service_id)
    assert service is not None
    service.ClearField("previous_spec")
    service.ClearField("previous_spec_version")
    tx.update(service)


async def test_a_new_update_supersedes_the_running_one(sim: Sim, clock: FakeClock) -> None:
    config = update_config(parallelism=1, delay=30.0, monitor=1.0)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=4, update=config)
        await sim.set_image(service_id, V2)
        await sim.converge()
        assert images(sim, service_id).count(V2) == 1
        await sim.set_image(service_id, V3)
        await sim.converge(advance=30)
        clock.advance(30)
        await sim.converge(advance=30)
    assert images(sim, service_id) == [V3] * 4
    assert status(sim, service_id).state == Status.COMPLETED
    assert not [
        t
        for t in sim.tasks(service_id)
        if t.spec.container.image == V2 and t.desired_state <= types_pb2.RUNNING
    ]


async def test_a_new_leader_resumes_the_update_without_duplicating_slots(
    sim: Sim, clock: FakeClock
) -> None:
    config = update_config(parallelism=2, delay=10.0)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=6, update=config)
        await sim.set_image(service_id, V2)
        await settle(sim.store)
        # The first batch is in flight: old tasks stopping, new ones READY.
        assert images(sim, service_id).count(V2) == 2
    # The leader is gone before starting them; the agents stop the old tasks meanwhile.
    await sim.agents()
    first_batch = {t.id for t in sim.runnable(service_id) if t.spec.container.image == V2}

    async with running(orchestrators(sim)):
        await sim.converge()
        assert status(sim, service_id).state == Status.UPDATING
        new = {t.id for t in sim.runnable(service_id) if t.spec.container.image == V2}
        assert first_batch <= new and len(new) == 2  # picked up, nothing re-created
        await sim.converge(advance=10)
        clock.advance(10)
        await sim.converge(advance=10)

    assert status(sim, service_id).state == Status.COMPLETED
    slots = sim.by_slot(service_id)
    assert sorted(slots) == [1, 2, 3, 4, 5, 6]
    assert all(len(tasks) == 1 for tasks in slots.values())
    created = [t for t in sim.tasks(service_id) if t.spec.container.image == V2]
    assert len(created) == 6  # one new task per slot, ever


async def test_only_changed_tasks_are_replaced(sim: Sim) -> None:
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=3, update=update_config(monitor=0.0))
        before = {t.id for t in sim.runnable(service_id)}
        await sim.scale(service_id, 3)  # a new spec version, same task template
        await sim.converge()
        assert {t.id for t in sim.runnable(service_id)} == before
        assert status(sim, service_id).state == Status.UNKNOWN

        def force(spec: specs_pb2.ServiceSpec) -> None:
            spec.task.force_update += 1

        await sim.update_service(service_id, force)
        await sim.converge()
    assert not {t.id for t in sim.runnable(service_id)} & before
    assert status(sim, service_id).state == Status.COMPLETED


async def test_a_task_that_never_starts_fails_the_update(sim: Sim, clock: FakeClock) -> None:
    async with running(orchestrators(sim)):
        config = update_config(order=types_pb2.UpdateConfig.START_FIRST)
        service_id = await start_service(sim, replicas=1, update=config)
        await sim.set_image(service_id, V2)
        await settle(sim.store)  # no scheduling: the new task stays NEW
        clock.advance(299)
        await settle(sim.store)
        assert status(sim, service_id).state == Status.UPDATING
        clock.advance(1)
        await settle(sim.store)
    assert status(sim, service_id).state == Status.PAUSED
    assert images(sim, service_id) == [IMAGE, V2]  # the old one keeps serving


async def test_a_global_service_updates_node_by_node(sim: Sim, clock: FakeClock) -> None:
    async with running(orchestrators(sim)):
        config = update_config(monitor=0.0)
        service_id = await start_service(sim, replicas=None, update=config)
        await sim.set_image(service_id, V2)
        await settle(sim.store)
        assert images(sim, service_id).count(V2) == 1
        await sim.converge()
    assert images(sim, service_id) == [V2] * 3
    assert sorted(t.node_id for t in sim.runnable(service_id)) == ["a", "b", "c"]
    assert status(sim, service_id).state == Status.COMPLETED


async def test_an_update_follows_a_new_task_whose_node_was_lost(sim: Sim) -> None:
    config = update_config(order=types_pb2.UpdateConfig.START_FIRST, monitor=0.0)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=2, update=config)
        first_old, second_old = sim.runnable(service_id)
        await sim.set_image(service_id, V2)
        await settle(sim.store)
        [target] = {"a", "b", "c"} - {first_old.node_id, second_old.node_id}
        await sim.schedule(place=lambda task: target)
        [new] = [t for t in sim.by_slot(service_id)[1] if t.id != first_old.id]
        assert new.node_id == target

        def drain(n: objects_pb2.Node) -> None:
            n.spec.availability = specs_pb2.NodeSpec.DRAIN

        await sim.change_node(target, drain)
        await settle(sim.store)
        assert sim.task(new.id).desired_state == types_pb2.SHUTDOWN
        slot_one = sim.by_slot(service_id)[1]
        [successor] = [t for t in slot_one if t.id != first_old.id]
        assert successor.spec.container.image == V2
        assert first_old.id in {t.id for t in slot_one}  # still serving meanwhile
        # The batch (parallelism 1) waits for the successor: slot 2 is not touched yet.
        assert [t.id for t in sim.by_slot(service_id)[2]] == [second_old.id]
        assert status(sim, service_id).state == Status.UPDATING
        await sim.converge()
    assert images(sim, service_id) == [V2, V2]
    assert successor.id in {t.id for t in sim.runnable(service_id)}
    assert status(sim, service_id).state == Status.COMPLETED


async def test_a_rollback_to_the_last_completed_spec_runs_after_an_interrupted_update(
    sim: Sim, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The updater remembers the spec its last run completed, so as not to run it again. An
    update whose run was then cut short by a refused write, followed by a rollback to that
    very spec, must still roll back (it once stayed ROLLBACK_STARTED forever)."""
    refused: list[str] = []
    real_commit = reconciler.commit

    async def refuse_once(store: Store, fn: WriteFn[Any]) -> Any:
        if not refused:
            refused.append("refused")
            raise VersionConflict("task", "t1", stored=2, given=1)
        return await real_commit(store, fn)

    config = update_config(parallelism=1, monitor=5.0)
    async with running(orchestrators(sim)):
        service_id = await start_service(sim, replicas=2, update=config)
        monkeypatch.setattr(rolling_update, "commit", refuse_once)
        await sim.set_image(service_id, V2)
        await settle(sim.store)
        assert refused  # the update's run ended on a refused write; it retries later
        await sim.roll_back(service_id)
        await sim.converge(advance=1)
    assert status(sim, service_id).state == Status.ROLLBACK_COMPLETED
    assert images(sim, service_id) == [IMAGE, IMAGE]
