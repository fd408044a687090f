"""The Assignments stream over gRPC: a complete set, then batched incremental changes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import grpc
import pytest

from manager.dispatcher.assignment_stream import CHUNK_BYTES
from manager.store import Store, WriteTx
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

from .conftest import Agent, Harness, failure, read
from .fakes import node, put, task

COMPLETE = dispatcher_pb2.AssignmentsMessage.COMPLETE
INCREMENTAL = dispatcher_pb2.AssignmentsMessage.INCREMENTAL
UPDATE = dispatcher_pb2.AssignmentChange.UPDATE
REMOVE = dispatcher_pb2.AssignmentChange.REMOVE


def summary(message: dispatcher_pb2.AssignmentsMessage) -> set[tuple[str, str, str]]:
    """(action, kind, id) of every change."""
    result: set[tuple[str, str, str]] = set()
    for change in message.changes:
        kind = change.assignment.WhichOneof("item")
        assert kind is not None
        item = getattr(change.assignment, kind)
        item_id = item.network_id if kind == "network_endpoints" else item.id
        result.add((dispatcher_pb2.AssignmentChange.Action.Name(change.action), kind, item_id))
    return result


async def change_task(store: Store, task_id: str, edit: Callable[[objects_pb2.Task], None]) -> None:
    def write(tx: WriteTx) -> None:
        current = tx.get(objects_pb2.Task, task_id)
        assert current is not None
        edit(current)
        tx.update(current)

    await store.update(write)


async def incremental(harness: Harness, call: object) -> dispatcher_pb2.AssignmentsMessage:
    """The next message, once the batch interval (100 ms of fake time) has passed."""
    await harness.round_trip()
    harness.clock.advance(0.1)
    message: dispatcher_pb2.AssignmentsMessage = await read(call)
    assert message.type == INCREMENTAL
    return message


async def connect(harness: Harness, node_id: str = "n1") -> tuple[Agent, object, str]:
    agent = harness.agent(node_id)
    session_call, first = await agent.open()
    return agent, session_call, first.session_id


async def test_complete_set_then_incremental_changes(harness: Harness) -> None:
    store = harness.store
    mine = task("n1", types_pb2.RUNNING)
    stopping = task("n1", types_pb2.RUNNING, desired=types_pb2.SHUTDOWN)  # still to be stopped
    finished = task("n1", types_pb2.COMPLETE, desired=types_pb2.SHUTDOWN)  # nothing left to do
    unassigned = task("", types_pb2.PENDING)
    other = task("n2", types_pb2.RUNNING)
    await put(store, node("n1"), node("n2"), mine, stopping, finished, unassigned, other)
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)

    complete = await read(call)
    assert complete.type == COMPLETE
    assert complete.applies_to == ""
    assert summary(complete) == {("UPDATE", "task", mine.id), ("UPDATE", "task", stopping.id)}

    # The scheduler assigns a task to the node: it arrives.
    new = task("", types_pb2.PENDING)
    await put(store, new)

    def assign(t: objects_pb2.Task) -> None:
        t.node_id = "n1"
        t.status.state = types_pb2.ASSIGNED

    await change_task(store, new.id, assign)
    added = await incremental(harness, call)
    assert added.applies_to == complete.results_in
    assert summary(added) == {("UPDATE", "task", new.id)}
    assert added.changes[0].assignment.task.status.state == types_pb2.ASSIGNED

    # The agent's own status reports are not echoed; a desired state change is sent.
    def running(t: objects_pb2.Task) -> None:
        t.status.state = types_pb2.RUNNING

    def shut_down(t: objects_pb2.Task) -> None:
        t.desired_state = types_pb2.SHUTDOWN

    await change_task(store, new.id, running)
    await change_task(store, mine.id, shut_down)
    stop = await incremental(harness, call)
    assert summary(stop) == {("UPDATE", "task", mine.id)}
    assert stop.changes[0].assignment.task.desired_state == types_pb2.SHUTDOWN
    assert stop.applies_to == added.results_in

    await store.update(lambda tx: tx.delete(objects_pb2.Task, mine.id))
    removed = await incremental(harness, call)
    assert summary(removed) == {("REMOVE", "task", mine.id)}
    call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


async def test_secrets_and_configs_follow_the_tasks_that_use_them(harness: Harness) -> None:
    store = harness.store
    secret = objects_pb2.Secret(id="s1")
    secret.spec.annotations.name = "db-password"
    secret.spec.data = b"hunter2"
    config = objects_pb2.Config(id="c1")
    config.spec.annotations.name = "app.conf"
    config.spec.data = b"x=1"
    user = task("n1", types_pb2.RUNNING)
    user.spec.container.secrets.add(secret_id="s1", secret_name="db-password")
    user.spec.container.configs.add(config_id="c1", config_name="app.conf")
    await put(store, node("n1"), secret, config, user)
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)

    complete = await read(call)
    assert summary(complete) == {
        ("UPDATE", "task", user.id),
        ("UPDATE", "secret", "s1"),
        ("UPDATE", "config", "c1"),
    }
    sent = [c.assignment.secret for c in complete.changes if c.assignment.HasField("secret")]
    assert sent[0].spec.data == b"hunter2"

    await store.update(lambda tx: tx.delete(objects_pb2.Task, user.id))
    gone = await incremental(harness, call)
    assert summary(gone) == {
        ("REMOVE", "task", user.id),
        ("REMOVE", "secret", "s1"),
        ("REMOVE", "config", "c1"),
    }
    call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


def on_network(t: objects_pb2.Task, network_id: str, address: str) -> objects_pb2.Task:
    t.networks.add(network=objects_pb2.Network(id=network_id), addresses=[f"{address}/24"])
    return t


def endpoints_in(
    message: dispatcher_pb2.AssignmentsMessage, network_id: str
) -> dict[str, dispatcher_pb2.NetworkEndpoints.Endpoint]:
    """Task id -> its endpoint, of the network's NetworkEndpoints in `message`."""
    (found,) = [
        c.assignment.network_endpoints
        for c in message.changes
        if c.assignment.network_endpoints.network_id == network_id
    ]
    return {e.task_id: e for e in found.endpoints}


def where(endpoints: dict[str, dispatcher_pb2.NetworkEndpoints.Endpoint]) -> dict[str, str]:
    return {task_id: f"{e.address}@{e.node_address}" for task_id, e in endpoints.items()}


async def test_overlay_endpoints_follow_the_tasks_on_the_networks_the_node_serves(
    harness: Harness,
) -> None:
    store = harness.store
    n2, n3 = node("n2"), node("n3")
    n2.status.addr, n3.status.addr = "192.0.2.2", "192.0.2.3"
    mine = on_network(task("n1", types_pb2.RUNNING), "net1", "10.0.1.2")
    peer = on_network(task("n2", types_pb2.RUNNING), "net1", "10.0.1.3")
    peer.service_id, peer.slot = "svc1", 2
    peer.service_annotations.name = "web"
    peer.networks[0].aliases.append("front")
    peer.endpoint.virtual_ips.add(network_id="net1", addr="10.0.1.100/24")
    starting = on_network(task("n3", types_pb2.ASSIGNED), "net1", "10.0.1.4")
    stopped = on_network(task("n2", types_pb2.COMPLETE), "net1", "10.0.1.5")
    elsewhere = on_network(task("n2", types_pb2.RUNNING), "net2", "10.0.2.3")
    await put(store, node("n1"), n2, n3, mine, peer, starting, stopped, elsewhere)
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)

    complete = await read(call)
    assert summary(complete) == {
        ("UPDATE", "task", mine.id),
        ("UPDATE", "network_endpoints", "net1"),
    }
    found = endpoints_in(complete, "net1")
    assert set(found) == {mine.id, peer.id, starting.id}  # the node's own task too
    assert found[mine.id].node_id == "n1" and found[mine.id].address == "10.0.1.2"
    assert where({k: v for k, v in found.items() if k != mine.id}) == {
        peer.id: "10.0.1.3@192.0.2.2",
        starting.id: "10.0.1.4@192.0.2.3",
    }
    named = found[peer.id]
    assert (named.service_name, named.task_name, named.vip, list(named.aliases)) == (
        "web",
        f"web.2.{peer.id}",
        "10.0.1.100",
        ["front"],
    )

    def failed(t: objects_pb2.Task) -> None:
        t.status.state = types_pb2.FAILED

    await change_task(store, starting.id, failed)  # a task of another node: still heard
    gone = await incremental(harness, call)
    assert summary(gone) == {("UPDATE", "network_endpoints", "net1")}
    assert set(endpoints_in(gone, "net1")) == {mine.id, peer.id}

    def write(tx: WriteTx) -> None:
        current = tx.get(objects_pb2.Node, "n2")
        assert current is not None
        current.status.addr = "192.0.2.22"
        tx.update(current)

    await store.update(write)
    readdressed = await incremental(harness, call)
    assert where(endpoints_in(readdressed, "net1"))[peer.id] == "10.0.1.3@192.0.2.22"

    await store.update(lambda tx: tx.delete(objects_pb2.Task, mine.id))
    left = await incremental(harness, call)
    assert summary(left) == {
        ("REMOVE", "task", mine.id),
        ("REMOVE", "network_endpoints", "net1"),
    }
    call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


async def test_a_reconnect_gets_a_fresh_complete_set(harness: Harness) -> None:
    store = harness.store
    first_task = task("n1", types_pb2.RUNNING)
    await put(store, node("n1"), first_task)
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)
    assert summary(await read(call)) == {("UPDATE", "task", first_task.id)}
    call.cancel()

    second_task = task("n1", types_pb2.ASSIGNED)
    await put(store, second_task)
    again = agent.assignments(session_id)
    complete = await read(again)
    assert complete.type == COMPLETE
    assert summary(complete) == {
        ("UPDATE", "task", first_task.id),
        ("UPDATE", "task", second_task.id),
    }
    again.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


async def test_changes_are_batched_by_count_and_time(harness: Harness) -> None:
    store = harness.store
    await put(store, node("n1"))
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)
    assert not (await read(call)).changes

    tasks = [task("n1") for _ in range(150)]
    await put(store, *tasks)
    full = await read(call)  # 100 changes make a batch without waiting
    assert len(full.changes) == 100
    rest = await incremental(harness, call)  # the other 50 once the interval passed
    assert len(rest.changes) == 50
    assert {i for _, _, i in summary(full) | summary(rest)} == {t.id for t in tasks}
    call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


async def test_a_lone_change_goes_at_once_and_a_burst_waits_for_the_window(
    harness: Harness,
) -> None:
    store = harness.store
    await put(store, node("n1"))
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)
    assert (await read(call)).type == COMPLETE
    harness.clock.advance(0.1)  # a quiet spell after the complete set

    lone = task("n1")
    await put(store, lone)
    first = await read(call)  # the fake clock stands still: nothing waited for the window
    assert summary(first) == {("UPDATE", "task", lone.id)}

    burst = [task("n1") for _ in range(3)]
    for t in burst:  # one transaction each, within the window the lone change opened
        await put(store, t)
    await harness.round_trip()
    harness.clock.advance(0.1)
    together = await read(call)
    assert summary(together) == {("UPDATE", "task", t.id) for t in burst}
    call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


async def test_the_stream_needs_the_current_session(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent, session_call, session_id = await connect(harness)
    error = await failure(agent.assignments("not-the-session"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await failure(harness.agent("n2").assignments(session_id))  # another node's
    assert error.code() == grpc.StatusCode.NOT_FOUND
    session_call.cancel()  # type: ignore[attr-defined]


async def test_the_stream_ends_with_its_session(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)
    await read(call)
    replaced_call, _ = await agent.open()  # a new session ends the old one
    error = await failure(call)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "replaced" in (error.details() or "")
    replaced_call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


@pytest.mark.parametrize("state", [types_pb2.NEW, types_pb2.PENDING])
async def test_tasks_not_yet_assigned_are_not_sent(harness: Harness, state: int) -> None:
    early = task("n1", types_pb2.TaskState.ValueType(state))
    await put(harness.store, node("n1"), early)
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)
    assert not (await read(call)).changes
    call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]


async def test_a_set_larger_than_a_message_comes_in_chained_chunks(harness: Harness) -> None:
    """24 tasks of 300 KiB each (7 MiB: gRPC's default limit is 4 MiB) arrive as chunks of
    at most CHUNK_BYTES, chained, all but the last saying `more`; together they are the
    whole set."""
    big = [task("n1", types_pb2.RUNNING) for _ in range(24)]
    for item in big:
        item.spec.container.env.append("PAYLOAD=" + "x" * (300 << 10))
    await put(harness.store, node("n1"), *big)
    agent, session_call, session_id = await connect(harness)
    call = agent.assignments(session_id)
    chunks = [await read(call)]
    while chunks[-1].more:
        chunks.append(await read(call))
    assert len(chunks) > 2
    assert {c.type for c in chunks} == {COMPLETE}
    for previous, chunk in itertools.pairwise(chunks):
        assert chunk.applies_to == previous.results_in
    assert all(
        sum(c.ByteSize() for c in chunk.changes) <= CHUNK_BYTES or len(chunk.changes) == 1
        for chunk in chunks
    )
    sent = {change.assignment.task.id for chunk in chunks for change in chunk.changes}
    assert sent == {item.id for item in big}
    call.cancel()
    session_call.cancel()  # type: ignore[attr-defined]
