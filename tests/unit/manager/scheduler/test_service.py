"""The scheduler wired to a real store: pending tasks get nodes, races are retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from manager.scheduler.scheduler import Assignment, Decisions
from manager.scheduler.service import SchedulerService
from manager.store import LocalProposer, Store, WriteTx
from shoal.v1 import objects_pb2, types_pb2
from tests.polling import until_async
from tests.unit.manager.scheduler.builders import node


def _store() -> Store:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")
    return store


def _pending(task_id: str, memory: int = 0) -> objects_pb2.Task:
    task = objects_pb2.Task(id=task_id, service_id="svc", slot=1, desired_state=types_pb2.RUNNING)
    task.status.state = types_pb2.PENDING
    task.spec.resources.reservations.memory_bytes = memory
    return task


@pytest.fixture
async def running() -> AsyncIterator[tuple[Store, SchedulerService]]:
    store = _store()
    service = SchedulerService(store, debounce_s=0.005, max_delay_s=0.05)
    task = asyncio.create_task(service.run())
    try:
        yield store, service
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _tasks(store: Store) -> dict[str, objects_pb2.Task]:
    return store.view(lambda tx: {t.id: t for t in tx.list(objects_pb2.Task)})


async def test_pending_tasks_are_assigned_and_spread(
    running: tuple[Store, SchedulerService],
) -> None:
    store, _ = running

    def seed(tx: WriteTx) -> None:
        for n in ("n1", "n2", "n3"):
            tx.create(node(n))
        for i in range(6):
            tx.create(_pending(f"t{i}"))

    await store.update(seed)
    await until_async(lambda: all(t.node_id for t in _tasks(store).values()), "all placed")
    tasks = _tasks(store).values()
    assert {t.status.state for t in tasks} == {types_pb2.ASSIGNED}
    per_node: dict[str, int] = {}
    for t in tasks:
        per_node[t.node_id] = per_node.get(t.node_id, 0) + 1
    assert per_node == {"n1": 2, "n2": 2, "n3": 2}


async def test_unschedulable_then_placed_when_a_node_joins(
    running: tuple[Store, SchedulerService],
) -> None:
    store, _ = running
    big = 64 << 30

    def seed(tx: WriteTx) -> None:
        tx.create(node("small", memory=1 << 30))
        tx.create(_pending("t1", memory=big))

    await store.update(seed)
    await until_async(
        lambda: _tasks(store)["t1"].status.err,
        "t1 unplaceable",
        holds=lambda e: "insufficient" in e,
    )
    assert _tasks(store)["t1"].status.state == types_pb2.PENDING
    await store.update(lambda tx: tx.create(node("large", memory=2 * big)))
    await until_async(
        lambda: _tasks(store)["t1"].node_id, "t1 on large", holds=lambda n: n == "large"
    )


async def test_a_task_taken_by_another_writer_is_not_assigned(
    running: tuple[Store, SchedulerService],
) -> None:
    store, service = running
    await store.update(lambda tx: tx.create(node("n1")))
    await store.update(lambda tx: tx.create(_pending("t1")))
    await until_async(lambda: _tasks(store)["t1"].node_id, "t1 on n1", holds=lambda n: n == "n1")

    # A decision for a task that meanwhile stopped being PENDING is dropped at commit time.
    def shut(tx: WriteTx) -> None:
        task = objects_pb2.Task()
        task.CopyFrom(tx.get(objects_pb2.Task, "t1"))  # type: ignore[arg-type]
        task.node_id = ""
        task.status.state = types_pb2.SHUTDOWN
        tx.update(task)

    await store.update(shut)
    await service.commit(Decisions(assigned=[Assignment("t1", "n1")]))
    assert _tasks(store)["t1"].status.state == types_pb2.SHUTDOWN
    assert _tasks(store)["t1"].node_id == ""


async def test_a_lone_task_is_assigned_without_waiting_for_the_debounce() -> None:
    store = _store()
    service = SchedulerService(store, debounce_s=30.0, max_delay_s=60.0)
    await store.update(lambda tx: tx.create(node("n1")))
    running = asyncio.create_task(service.run())
    try:
        await store.update(lambda tx: tx.create(_pending("t1")))
        # Far sooner than the 30 s debounce: the first change after a quiet spell leads.
        await until_async(
            lambda: _tasks(store)["t1"].node_id, "t1 on n1", holds=lambda n: n == "n1"
        )
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_a_task_preassigned_to_a_node_is_assigned_there(
    running: tuple[Store, SchedulerService],
) -> None:
    """A global service's task (or a network attachment) names its node already: the
    scheduler checks the node can take it and marks it ASSIGNED there."""
    store, _ = running

    def seed(tx: WriteTx) -> None:
        for n in ("n1", "n2"):
            tx.create(node(n))
        task = _pending("g1")
        task.slot = 0
        task.node_id = "n2"
        tx.create(task)

    await store.update(seed)
    await until_async(
        lambda: _tasks(store)["g1"].status.state == types_pb2.ASSIGNED, "the task assigned"
    )
    assert _tasks(store)["g1"].node_id == "n2"
