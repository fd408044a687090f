"""The worker reconciling assignment sets with the node: new, changed, removed, adopted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import REGISTRY

from agent.executor import Executor
from agent.worker import Worker
from tests.polling import until_async
from tests.unit.agent.builders import TS, task, with_desired
from tests.unit.agent.conftest import Reports
from tests.unit.agent.fake_engine import FakeEngine


@pytest.fixture
async def workers(executor: Executor, reports: Reports) -> AsyncIterator[Callable[[], Worker]]:
    """workers() -> a new Worker on the same node (the same engine), like a restarted agent."""
    made: list[Worker] = []

    def factory() -> Worker:
        made.append(Worker(executor, "node-1", reports))
        return made[-1]

    yield factory
    for worker in made:
        await worker.close()


def running(engine: FakeEngine) -> dict[str, int]:
    """Task id -> pid of its running container."""
    out = {}
    for info in engine.list():
        out[info["Config"]["Labels"]["com.shoal.task.id"]] = info["State"]["Pid"]
    return out


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_complete_set_runs_every_task(
    workers: Callable[[], Worker], reports: Reports, engine: FakeEngine
) -> None:
    worker = workers()
    await worker.assign([task("a", slot=1), task("b", slot=2)])
    await until_async(lambda: set(running(engine)) == {"a", "b"}, "both running")
    await until_async(
        lambda: reports.last_state("a") == reports.last_state("b") == TS.RUNNING, "both reported"
    )
    assert gauge("shoal_agent_tasks", state="running") == 2
    assert gauge("shoal_agent_assignments") == 2


async def test_tasks_left_out_are_shut_down_and_removed(
    workers: Callable[[], Worker], reports: Reports, engine: FakeEngine
) -> None:
    worker = workers()
    await worker.assign([task("a", slot=1), task("b", slot=2)])
    await until_async(lambda: set(running(engine)) == {"a", "b"}, "both running")
    await worker.assign([task("a", slot=1, state=TS.RUNNING)])
    await until_async(lambda: len(engine.containers) == 1, "b's container removed")
    assert set(running(engine)) == {"a"}
    assert reports.last_state("b") == TS.SHUTDOWN
    assert gauge("shoal_agent_assignments") == 1


async def test_increments_add_change_and_remove(
    workers: Callable[[], Worker], reports: Reports, engine: FakeEngine
) -> None:
    worker = workers()
    await worker.assign([])
    a = task("a")
    await worker.update([a], [])
    await until_async(lambda: reports.last_state("a") == TS.RUNNING, "a running")
    await worker.update([with_desired(a, TS.SHUTDOWN, TS.RUNNING)], [])
    await until_async(lambda: reports.last_state("a") == TS.SHUTDOWN, "a shut down")
    assert len(engine.containers) == 1  # kept until the task goes: its logs stay readable
    await worker.update([], ["a"])
    await until_async(lambda: engine.containers == {}, "a removed")


async def test_a_restarted_worker_adopts_and_cleans_up(
    workers: Callable[[], Worker], reports: Reports, engine: FakeEngine
) -> None:
    first = workers()
    await first.assign([task("a", slot=1), task("b", slot=2)])
    await until_async(lambda: set(running(engine)) == {"a", "b"}, "both running")
    before = running(engine)
    await first.close()  # the agent goes away; its containers do not
    assert running(engine) == before
    calls = len(engine.calls)
    reports.all.clear()

    second = workers()
    await second.assign([task("a", slot=1, state=TS.RUNNING)])  # b was removed meanwhile
    await until_async(lambda: set(running(engine)) == {"a"}, "only a left")
    await until_async(lambda: len(engine.containers) == 1, "b's container removed")
    assert running(engine)["a"] == before["a"]  # the same process: not restarted
    assert [op for op, _ in engine.calls[calls:]] == ["stop", "remove"]
    (adopted,) = reports.of("a")
    assert adopted.state == TS.RUNNING and adopted.message == "adopted"
    assert adopted.container_status.pid == before["a"]
    assert reports.of("b") == []  # nobody to tell: the task is gone


async def test_a_reconnect_reconciles_instead_of_restarting(
    workers: Callable[[], Worker], reports: Reports, engine: FakeEngine
) -> None:
    worker = workers()
    a = task("a")
    await worker.assign([a])
    await until_async(lambda: reports.last_state("a") == TS.RUNNING, "a running")
    pid = running(engine)["a"]
    calls = len(engine.calls)
    await worker.assign([with_desired(a, TS.RUNNING, TS.RUNNING)])  # a new session's set
    await worker.assign([with_desired(a, TS.RUNNING, TS.RUNNING)])
    assert running(engine) == {"a": pid}
    assert engine.calls[calls:] == []


async def test_a_task_removed_and_assigned_again_waits_for_its_old_controller(
    workers: Callable[[], Worker], reports: Reports, engine: FakeEngine
) -> None:
    worker = workers()
    a = task("a")
    await worker.assign([a])
    await until_async(lambda: reports.last_state("a") == TS.RUNNING, "a running")
    old = running(engine)["a"]
    await worker.update([], ["a"])
    await worker.update([task("a")], [])
    await until_async(
        lambda: running(engine).get("a", old) != old and len(engine.containers) == 1, "a again"
    )
    ops = [op for op, _ in engine.calls]
    assert ops == ["create", "start", "stop", "remove", "create", "start"]
