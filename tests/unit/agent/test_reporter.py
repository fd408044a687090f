"""Status batching: one status per task (the newest); outcomes and full batches at once,
progress within 100 ms."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.reporter import StatusReporter
from shoal.v1 import types_pb2

TS = types_pb2.TaskState


def status(state: types_pb2.TaskState.ValueType, message: str = "") -> types_pb2.TaskStatus:
    return types_pb2.TaskStatus(state=state, message=message)


async def test_updates_of_a_task_coalesce_to_the_newest() -> None:
    reporter = StatusReporter()
    reporter.report("a", status(TS.ACCEPTED))
    reporter.report("a", status(TS.PREPARING))
    reporter.report("b", status(TS.ACCEPTED))
    reporter.report("a", status(TS.RUNNING))
    batch = await reporter.next_batch()
    assert {k: v.state for k, v in batch.items()} == {"a": TS.RUNNING, "b": TS.ACCEPTED}
    assert len(reporter) == 0


async def test_an_older_state_never_replaces_a_newer_one() -> None:
    reporter = StatusReporter()
    reporter.report("a", status(TS.RUNNING))
    reporter.report("a", status(TS.STARTING))
    assert (await reporter.next_batch())["a"].state == TS.RUNNING


async def test_progress_alone_waits_for_the_interval() -> None:
    reporter = StatusReporter(flush_interval=0.1)
    began = time.monotonic()
    reporter.report("a", status(TS.PREPARING))
    await reporter.next_batch()
    assert time.monotonic() - began >= 0.09


@pytest.mark.parametrize("outcome", [TS.RUNNING, TS.FAILED, TS.REJECTED, TS.SHUTDOWN])
async def test_an_outcome_goes_at_once_with_the_progress_waiting(
    outcome: types_pb2.TaskState.ValueType,
) -> None:
    reporter = StatusReporter(flush_interval=30)
    reporter.report("a", status(TS.ACCEPTED))
    reporter.report("b", status(TS.PREPARING))
    waiting = asyncio.ensure_future(reporter.next_batch())
    await asyncio.sleep(0.01)  # room to go wrong: only progress is waiting
    assert not waiting.done()
    reporter.report("a", status(outcome))
    batch = await asyncio.wait_for(waiting, 5)  # not 30 s
    assert {k: v.state for k, v in batch.items()} == {"a": outcome, "b": TS.PREPARING}


async def test_progress_waits_from_its_arrival_not_from_the_call() -> None:
    now = [1000.0]
    reporter = StatusReporter(flush_interval=30, clock=lambda: now[0])
    reporter.report("a", status(TS.ACCEPTED))
    now[0] += 30  # it came 30 s ago, while a batch was on its way
    assert list(await asyncio.wait_for(reporter.next_batch(), 5)) == ["a"]


async def test_a_full_batch_goes_at_once_and_the_rest_follows() -> None:
    reporter = StatusReporter(flush_interval=30, max_batch=100)
    for n in range(150):
        reporter.report(f"t{n}", status(TS.RUNNING))
    first = await asyncio.wait_for(reporter.next_batch(), 5)  # not 30 s: the batch is full
    assert list(first) == [f"t{n}" for n in range(100)]
    assert len(reporter) == 50
    waiting = asyncio.ensure_future(reporter.next_batch())
    for n in range(150, 200):
        reporter.report(f"t{n}", status(TS.RUNNING))
    second = await asyncio.wait_for(waiting, 5)
    assert list(second) == [f"t{n}" for n in range(100, 200)]


async def test_next_batch_waits_for_an_update() -> None:
    reporter = StatusReporter(flush_interval=0.01)
    waiting = asyncio.ensure_future(reporter.next_batch())
    await asyncio.sleep(0.05)  # room to go wrong: nothing was reported
    assert not waiting.done()
    reporter.report("a", status(TS.ACCEPTED))
    assert list(await asyncio.wait_for(waiting, 5)) == ["a"]


async def test_a_requeued_batch_yields_to_newer_updates_and_goes_at_once() -> None:
    reporter = StatusReporter(flush_interval=30)
    reporter.report("a", status(TS.STARTING))
    reporter.report("b", status(TS.RUNNING))
    batch = await asyncio.wait_for(reporter.next_batch(), 5)
    reporter.report("a", status(TS.RUNNING))  # while the batch was on its way
    reporter.requeue(batch)
    again = await asyncio.wait_for(reporter.next_batch(), 5)
    assert {k: v.state for k, v in again.items()} == {"a": TS.RUNNING, "b": TS.RUNNING}
    reporter.requeue({"c": status(TS.PREPARING)})  # progress only, but it was due already
    assert list(await asyncio.wait_for(reporter.next_batch(), 5)) == ["c"]


@pytest.mark.parametrize(("interval", "size"), [(0, 10), (0.1, 0)])
def test_nonsense_settings_are_refused(interval: float, size: int) -> None:
    with pytest.raises(ValueError, match="positive interval and size"):
        StatusReporter(interval, size)
