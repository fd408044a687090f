"""The task state machine against a fake engine: forward only, never past the desired state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from agent.controller import TaskController
from agent.executor import Executor
from runtime.errors import ContainerError
from shoal.v1 import objects_pb2
from tests.polling import until_async
from tests.unit.agent.builders import TS, task, with_desired
from tests.unit.agent.conftest import Reports
from tests.unit.agent.fake_engine import FakeEngine, FakeImages

LIFECYCLE = [TS.ACCEPTED, TS.PREPARING, TS.READY, TS.STARTING, TS.RUNNING]

Start = Callable[..., TaskController]


@pytest.fixture
async def start(executor: Executor, reports: Reports) -> AsyncIterator[Start]:
    """start(task, container=None) -> a controller whose run() is under way."""
    runs: list[asyncio.Task[None]] = []

    def factory(t: objects_pb2.Task, container: dict[str, object] | None = None) -> TaskController:
        controller = TaskController(t, executor, "node-1", reports, container)
        runs.append(asyncio.create_task(controller.run()))
        return controller

    yield factory
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)


def assert_forward(states: list[int]) -> None:
    assert states == sorted(states), f"states went backwards: {states}"


async def test_runs_to_running_with_container_id_and_pid(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    controller = start(task("t1"))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    assert reports.states("t1") == LIFECYCLE
    running = reports.of("t1")[-1]
    container = engine.containers[controller.container_id]
    assert container.process is not None
    assert running.container_status.container_id == controller.container_id
    assert running.container_status.pid == container.process.pid
    assert running.message == "started" and running.timestamp.seconds > 0
    assert container.spec.name == "web.1.t1"


async def test_exit_zero_completes(start: Start, reports: Reports, engine: FakeEngine) -> None:
    controller = start(task("t1"))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    engine.finish(controller.container_id, 0)
    await until_async(lambda: reports.last_state("t1") == TS.COMPLETE, "COMPLETE")
    done = reports.of("t1")[-1]
    assert done.exit_code == 0 and done.err == ""
    assert engine.containers[controller.container_id].cleanups == 1  # network, cgroup freed
    assert_forward(reports.states("t1"))


async def test_non_zero_exit_fails_with_code(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    controller = start(task("t1"))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    engine.finish(controller.container_id, 3)
    await until_async(lambda: reports.last_state("t1") == TS.FAILED, "FAILED")
    failed = reports.of("t1")[-1]
    assert failed.err == "task: non-zero exit (3)"
    assert failed.exit_code == 3 and failed.container_status.exit_code == 3


async def test_missing_image_is_rejected_with_the_registry_message(
    start: Start, reports: Reports, engine: FakeEngine, images: FakeImages
) -> None:
    start(task("t1", image="registry:5000/nothere:1"))
    await until_async(lambda: reports.last_state("t1") == TS.REJECTED, "REJECTED")
    assert reports.states("t1") == [TS.ACCEPTED, TS.PREPARING, TS.REJECTED]
    assert reports.of("t1")[-1].err == "registry:5000/nothere:1: manifest unknown"
    assert images.pulls == ["registry:5000/nothere:1"]
    assert engine.containers == {}


async def test_image_pulled_only_when_missing(
    start: Start, reports: Reports, images: FakeImages
) -> None:
    start(task("t1", image="registry:5000/app:1"))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "t1 RUNNING")
    start(task("t2", image="registry:5000/app:1"))
    await until_async(lambda: reports.last_state("t2") == TS.RUNNING, "t2 RUNNING")
    assert images.pulls == ["registry:5000/app:1"]


async def test_concurrent_tasks_share_one_pull(
    start: Start, reports: Reports, images: FakeImages
) -> None:
    images.gate.clear()
    for n in range(3):
        start(task(f"t{n}", image="registry:5000/app:1", slot=n + 1))
    await until_async(
        lambda: all(reports.last_state(f"t{n}") == TS.PREPARING for n in range(3)), "PREPARING"
    )
    images.gate.set()
    await until_async(
        lambda: all(reports.last_state(f"t{n}") == TS.RUNNING for n in range(3)), "RUNNING"
    )
    assert images.pulls == ["registry:5000/app:1"]


async def test_concurrent_tasks_share_one_lookup_and_later_ones_look_again(
    start: Start, reports: Reports, images: FakeImages
) -> None:
    images.lookup_gate.clear()
    for n in range(3):
        start(task(f"t{n}", slot=n + 1))
    await until_async(
        lambda: all(reports.last_state(f"t{n}") == TS.PREPARING for n in range(3)), "PREPARING"
    )
    images.lookup_gate.set()
    await until_async(
        lambda: all(reports.last_state(f"t{n}") == TS.RUNNING for n in range(3)), "RUNNING"
    )
    assert len(images.lookups) == 1
    start(task("t3", slot=4))
    await until_async(lambda: reports.last_state("t3") == TS.RUNNING, "t3 RUNNING")
    assert len(images.lookups) == 2  # not remembered: the image may be gone by now
    assert images.pulls == []


async def test_unsupported_spec_is_rejected_before_any_pull(
    start: Start, reports: Reports, images: FakeImages
) -> None:
    start(task("t1", image="registry:5000/app:1", read_only=True))
    await until_async(lambda: reports.last_state("t1") == TS.REJECTED, "REJECTED")
    assert "read_only" in reports.of("t1")[-1].err
    assert images.pulls == []


async def test_start_error_fails_the_task(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    engine.fail_start = ContainerError("exec nope: No such file or directory")
    start(task("t1"))
    await until_async(lambda: reports.last_state("t1") == TS.FAILED, "FAILED")
    assert reports.states("t1") == [*LIFECYCLE[:4], TS.FAILED]
    assert reports.of("t1")[-1].err == "exec nope: No such file or directory"


async def test_desired_ready_prepares_but_does_not_start(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    t = task("t1", desired=TS.READY)
    controller = start(t)
    await until_async(lambda: reports.last_state("t1") == TS.READY, "READY")
    await asyncio.sleep(0.2)  # give it room to go wrong: it must stay put
    assert reports.states("t1") == LIFECYCLE[:3]
    assert [op for op, _ in engine.calls] == ["create"]
    controller.update(task("t1", desired=TS.RUNNING, state=TS.READY))  # the manager caught up
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    assert reports.states("t1") == LIFECYCLE


async def test_desired_shutdown_stops_with_grace_then_removal_removes(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    t = task("t1", grace=2.5)
    controller = start(t)
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    controller.update(with_desired(t, TS.SHUTDOWN, TS.RUNNING))
    await until_async(lambda: reports.last_state("t1") == TS.SHUTDOWN, "SHUTDOWN")
    container = engine.containers[controller.container_id]
    assert container.stop_timeouts == [2.5]
    assert reports.of("t1")[-1].exit_code == 143  # SIGTERM
    controller.remove()
    await until_async(lambda: controller.container_id not in engine.containers, "removal")
    assert reports.states("t1") == [*LIFECYCLE, TS.SHUTDOWN]


async def test_default_grace_is_ten_seconds(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    t = task("t1")
    controller = start(t)
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    controller.update(with_desired(t, TS.SHUTDOWN))
    await until_async(lambda: reports.last_state("t1") == TS.SHUTDOWN, "SHUTDOWN")
    assert engine.containers[controller.container_id].stop_timeouts == [10.0]


async def test_shutdown_before_start_never_starts(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    start(task("t1", desired=TS.SHUTDOWN))
    await until_async(lambda: reports.last_state("t1") == TS.SHUTDOWN, "SHUTDOWN")
    assert reports.states("t1") == [TS.SHUTDOWN]
    assert engine.calls == []


async def test_removed_while_running_is_stopped_reported_and_removed(
    start: Start, reports: Reports, engine: FakeEngine
) -> None:
    controller = start(task("t1"))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    controller.remove()
    await until_async(lambda: engine.containers == {}, "container removed")
    assert reports.states("t1") == [*LIFECYCLE, TS.SHUTDOWN]


def _stop_point(previous: int, desired: int) -> int:
    """Where a controller settles for `desired`, having reached `previous`."""
    if desired >= TS.SHUTDOWN:
        return TS.SHUTDOWN
    return max(previous, min(desired, TS.RUNNING))


@pytest.mark.parametrize(
    ("desired_steps", "expected"),
    [
        ([TS.READY, TS.RUNNING, TS.SHUTDOWN], [*LIFECYCLE, TS.SHUTDOWN]),
        ([TS.READY, TS.SHUTDOWN], [*LIFECYCLE[:3], TS.SHUTDOWN]),
        ([TS.ACCEPTED, TS.READY, TS.REMOVE], [*LIFECYCLE[:3], TS.SHUTDOWN]),
        # A desired state moved back is not obeyed backwards.
        ([TS.RUNNING, TS.READY, TS.SHUTDOWN], [*LIFECYCLE, TS.SHUTDOWN]),
    ],
)
async def test_never_backwards_never_past_desired(
    executor: Executor, desired_steps: list[int], expected: list[int]
) -> None:
    seen: list[tuple[int, int]] = []  # (state reported, desired at that moment)
    t = task("t1", desired=desired_steps[0])  # type: ignore[arg-type]
    controller = TaskController(
        t, executor, "node-1", lambda _id, status: seen.append((status.state, controller.desired))
    )
    run = asyncio.create_task(controller.run())
    try:
        stop = 0
        for n, desired in enumerate(desired_steps):
            if n:
                controller.update(with_desired(t, desired))  # type: ignore[arg-type]
            stop = _stop_point(stop, desired)
            await until_async(lambda s=stop: bool(seen) and seen[-1][0] == s, TS.Name(stop))  # type: ignore[arg-type,misc]
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    states = list(dict.fromkeys(state for state, _ in seen))
    assert states == expected
    assert_forward([state for state, _ in seen])
    reached = 0
    for state, desired in seen:
        if reached < state < TS.COMPLETE:
            assert state <= desired, f"{TS.Name(state)} entered with desired {TS.Name(desired)}"  # type: ignore[arg-type]
        reached = max(reached, state)


async def test_a_job_runs_to_completion(start: Start, reports: Reports, engine: FakeEngine) -> None:
    controller = start(task("t1", desired=TS.COMPLETE))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    engine.finish(controller.container_id, 0)
    await until_async(lambda: reports.last_state("t1") == TS.COMPLETE, "COMPLETE")


async def test_adopts_a_running_container_without_restarting_it(
    executor: Executor, engine: FakeEngine, reports: Reports, start: Start
) -> None:
    first = start(task("t1"))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    pid = reports.of("t1")[-1].container_status.pid
    info = engine.inspect(first.container_id)
    calls_before = list(engine.calls)
    reports.all.clear()

    adopted = start(task("t1", state=TS.RUNNING), info)
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING again")
    status = reports.of("t1")[-1]
    assert status.message == "adopted"
    assert status.container_status.container_id == first.container_id
    assert status.container_status.pid == pid
    assert engine.calls == calls_before  # no create, no start
    assert engine.dns_served == [first.container_id]  # its resolver is opened again
    engine.finish(adopted.container_id, 0)
    await until_async(lambda: reports.last_state("t1") == TS.COMPLETE, "COMPLETE")


async def test_adopting_an_exited_container_reports_its_outcome(
    engine: FakeEngine, reports: Reports, start: Start
) -> None:
    first = start(task("t1"))
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    engine.finish(first.container_id, 7)
    await until_async(
        lambda: engine.inspect(first.container_id)["State"]["Status"] == "exited", "exit"
    )
    reports.all.clear()
    start(task("t1", state=TS.RUNNING), engine.inspect(first.container_id))
    await until_async(lambda: reports.last_state("t1") == TS.FAILED, "FAILED")
    assert reports.of("t1")[-1].exit_code == 7


async def test_task_started_elsewhere_without_container_fails(
    reports: Reports, start: Start, engine: FakeEngine
) -> None:
    start(task("t1", state=TS.RUNNING))
    await until_async(lambda: reports.last_state("t1") == TS.FAILED, "FAILED")
    assert reports.of("t1")[-1].err == "the task's container is gone from this node"
    assert engine.calls == []


async def test_terminal_task_is_left_alone(
    reports: Reports, start: Start, engine: FakeEngine
) -> None:
    controller = start(task("t1", state=TS.COMPLETE))
    await asyncio.sleep(0.1)  # room to go wrong
    controller.update(task("t1", state=TS.COMPLETE, desired=TS.SHUTDOWN))
    await asyncio.sleep(0.1)
    assert reports.all == [] and engine.calls == []


async def test_a_manager_behind_hears_the_status_again(start: Start, reports: Reports) -> None:
    t = task("t1")
    controller = start(t)
    await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "RUNNING")
    count = len(reports.of("t1"))
    controller.update(t)  # the manager still has ASSIGNED
    assert len(reports.of("t1")) == count + 1
    assert reports.last_state("t1") == TS.RUNNING
