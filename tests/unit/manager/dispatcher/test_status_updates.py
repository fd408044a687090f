"""Task status updates over gRPC: checked, queued, committed in batched transactions."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY

from manager.dispatcher import DispatcherConfig
from manager.store import LocalProposer, Store
from shoal.v1 import dispatcher_pb2, types_pb2
from tests.polling import until_async

from .conftest import Agent, Harness, serving
from .fakes import advance_until, get_task, node, put, task

RUNNING = types_pb2.RUNNING


def queued() -> float | None:
    """Status updates waiting for the next batch, as the leader's metrics export it."""
    return REGISTRY.get_sample_value("shoal_dispatcher_status_updates_queued")


async def connect(harness: Harness, node_id: str) -> tuple[Agent, str]:
    agent = harness.agent(node_id)
    call, first = await agent.open()
    call.cancel()  # the session outlives its stream
    return agent, first.session_id


async def committed(harness: Harness, reports: list[asyncio.Future[Any]]) -> None:
    """Move the fake clock until every report came back (the flush committed them)."""
    await advance_until(harness.clock, lambda: all(r.done() for r in reports), "the flush")
    for report in reports:
        report.result()


async def open_window(harness: Harness, agent: Agent, session_id: str) -> None:
    """Commit a lone update (at once), so that the next ones wait for the end of its window."""
    lead = task(agent.node_id)
    await put(harness.store, lead)
    await agent.report(session_id, (lead.id, RUNNING))


async def test_a_lone_update_is_committed_at_once(harness: Harness) -> None:
    t = task("n1")
    await put(harness.store, node("n1"), t)
    agent, session_id = await connect(harness, "n1")
    before = harness.store.index
    await agent.report(session_id, (t.id, RUNNING))  # no clock advance: no window to wait out
    assert harness.store.index - before == 1
    assert get_task(harness.store, t.id).status.state == RUNNING


async def test_250_updates_from_5_nodes_within_a_window_take_one_transaction(
    harness: Harness,
) -> None:
    store = harness.store
    nodes = [f"n{i}" for i in range(5)]
    tasks = {n: [task(n) for _ in range(50)] for n in nodes}
    await put(store, *(node(n) for n in nodes), *(t for ts in tasks.values() for t in ts))
    agents = [await connect(harness, n) for n in nodes]
    await open_window(harness, *agents[0])

    reports: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(agent.report(session_id, *((t.id, RUNNING) for t in tasks[n])))
        for (agent, session_id), n in zip(agents, nodes, strict=True)
    ]
    await until_async(lambda: queued() == 250, "250 queued")
    assert not any(r.done() for r in reports)  # held until the window ends
    before = store.index
    await committed(harness, reports)
    assert store.index - before == 1
    assert all(get_task(store, t.id).status.state == RUNNING for ts in tasks.values() for t in ts)


async def test_a_full_queue_is_flushed_without_waiting() -> None:
    async with serving(config=DispatcherConfig(status_batch_size=20)) as harness:
        tasks = [task("n1") for _ in range(20)]
        await put(harness.store, node("n1"), *tasks)
        agent, session_id = await connect(harness, "n1")
        await agent.report(session_id, *((t.id, RUNNING) for t in tasks))  # no clock advance
        assert all(get_task(harness.store, t.id).status.state == RUNNING for t in tasks)


async def test_states_only_move_forward(harness: Harness) -> None:
    store = harness.store
    t = task("n1", types_pb2.ACCEPTED)
    await put(store, node("n1"), t)
    agent, session_id = await connect(harness, "n1")
    await open_window(harness, agent, session_id)
    # Queued in the same batch: the later, older state is dropped at commit time.
    reports: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(agent.report(session_id, (t.id, RUNNING)))
    ]
    await until_async(lambda: queued() == 1, "the first queued")
    reports.append(asyncio.ensure_future(agent.report(session_id, (t.id, types_pb2.PREPARING))))
    await until_async(lambda: queued() == 2, "both queued")
    await committed(harness, reports)
    assert get_task(store, t.id).status.state == RUNNING
    # Reported again later: dropped before it is even queued.
    await agent.report(session_id, (t.id, types_pb2.STARTING))
    assert queued() == 0
    assert get_task(store, t.id).status.state == RUNNING


async def test_queued_updates_fail_and_are_no_longer_counted_when_leadership_is_lost(
    harness: Harness,
) -> None:
    t = task("n1")
    await put(harness.store, node("n1"), t)
    agent, session_id = await connect(harness, "n1")
    await open_window(harness, agent, session_id)
    report = asyncio.ensure_future(agent.report(session_id, (t.id, RUNNING)))
    await until_async(lambda: queued() == 1, "the update queued")
    await harness.stop()
    with pytest.raises(grpc.aio.AioRpcError):
        await report  # the agent retries it with the next leader
    assert queued() == 0
    assert get_task(harness.store, t.id).status.state == types_pb2.ASSIGNED


async def test_a_node_cannot_update_another_nodes_task(harness: Harness) -> None:
    store = harness.store
    mine, theirs = task("n1"), task("n2")
    await put(store, node("n1"), node("n2"), mine, theirs)
    agent, session_id = await connect(harness, "n1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.report(session_id, (mine.id, RUNNING), (theirs.id, types_pb2.FAILED))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"task {theirs.id} is assigned to node n2, not to node n1" in (
        caught.value.details() or ""
    )
    assert queued() == 0
    assert get_task(store, mine.id).status.state == types_pb2.ASSIGNED
    assert get_task(store, theirs.id).status.state == types_pb2.ASSIGNED


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (types_pb2.ASSIGNED, "cannot report state ASSIGNED"),
        (types_pb2.REMOVE, "cannot report state REMOVE"),
        (types_pb2.ORPHANED, "cannot report state ORPHANED"),
        (999, "cannot report state 999"),
    ],
)
async def test_states_an_agent_cannot_report_are_refused(
    harness: Harness, state: int, message: str
) -> None:
    t = task("n1")
    await put(harness.store, node("n1"), t)
    agent, session_id = await connect(harness, "n1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.report(session_id, (t.id, types_pb2.TaskState.ValueType(state)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")
    stored = get_task(harness.store, t.id)
    assert stored.status.state == types_pb2.ASSIGNED
    assert stored.desired_state == RUNNING


async def test_malformed_updates_are_refused(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent, session_id = await connect(harness, "n1")
    for update, message in [
        (dispatcher_pb2.UpdateTaskStatusRequest.TaskStatusUpdate(), "has no task_id"),
        (dispatcher_pb2.UpdateTaskStatusRequest.TaskStatusUpdate(task_id="t"), "has no status"),
    ]:
        request = dispatcher_pb2.UpdateTaskStatusRequest(session_id=session_id, updates=[update])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent.stub.UpdateTaskStatus(request, metadata=agent.metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (caught.value.details() or "")


async def test_unknown_tasks_are_ignored_and_desired_state_is_untouched(harness: Harness) -> None:
    store = harness.store
    t = task("n1", desired=types_pb2.SHUTDOWN)
    await put(store, node("n1"), t)
    agent, session_id = await connect(harness, "n1")
    report = asyncio.create_task(
        agent.report(session_id, ("no-such-task", RUNNING), (t.id, types_pb2.SHUTDOWN))
    )
    await committed(harness, [report])
    stored = get_task(store, t.id)
    assert stored.status.state == types_pb2.SHUTDOWN
    assert stored.desired_state == types_pb2.SHUTDOWN
    assert stored.status.HasField("timestamp")  # stamped on arrival when the agent gave none


async def test_scheduling_delay_is_measured_from_creation_to_running() -> None:
    store = Store(clock=lambda: Timestamp(seconds=1_700_000_000))
    store.proposer = LocalProposer(store, proposer_id="test")
    async with serving(store) as harness:
        t = task("n1")
        await put(store, node("n1"), t)
        agent, session_id = await connect(harness, "n1")
        before_count = histogram("count")
        before_sum = histogram("sum")
        request = dispatcher_pb2.UpdateTaskStatusRequest(session_id=session_id)
        update = request.updates.add(task_id=t.id)
        update.status.state = RUNNING
        update.status.timestamp.seconds = 1_700_000_003
        report = asyncio.ensure_future(
            agent.stub.UpdateTaskStatus(request, metadata=agent.metadata)
        )
        await committed(harness, [report])
    assert histogram("count") == before_count + 1
    assert histogram("sum") == pytest.approx(before_sum + 3.0)


def histogram(part: str) -> float:
    name = f"shoal_dispatcher_scheduling_delay_seconds_{part}"
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_batch_that_does_not_commit_fails_the_call_for_a_retry(harness: Harness) -> None:
    store = harness.store
    t = task("n1")
    await put(store, node("n1"), t)
    agent, session_id = await connect(harness, "n1")
    proposer, store.proposer = store.proposer, None  # the store takes no writes for a while
    report = asyncio.ensure_future(agent.report(session_id, (t.id, RUNNING)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await committed(harness, [report])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not committed" in (caught.value.details() or "")
    store.proposer = proposer
    retry = asyncio.ensure_future(agent.report(session_id, (t.id, RUNNING)))
    await committed(harness, [retry])
    assert get_task(store, t.id).status.state == RUNNING
