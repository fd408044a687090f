"""Agent sessions over gRPC: registration, the session stream, re-registration limits."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import REGISTRY

from manager.store import WriteTx
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

from .conftest import Harness, failure, read
from .fakes import get_node, node, put

READY = types_pb2.NodeStatus.READY


async def test_a_session_registers_the_node_ready(harness: Harness) -> None:
    store = harness.store
    cluster = objects_pb2.Cluster(id="c")
    cluster.spec.annotations.name = "default"
    cluster.root_ca.ca_cert = b"-----BEGIN CERTIFICATE-----root"
    cluster.root_ca.ca_key = b"secret key"
    await put(
        store,
        cluster,
        node("n1"),
        node("m1", READY, types_pb2.MANAGER, "10.1.0.1:2377"),
        node("m2", READY, types_pb2.MANAGER, "10.1.0.2:2377"),
    )
    call, first = await harness.agent("n1").open()

    assert first.session_id
    assert first.node.id == "n1"
    assert first.node.status.state == READY
    assert [(m.peer.node_id, m.peer.addr) for m in first.managers] == [
        ("m1", "10.1.0.1:2377"),
        ("m2", "10.1.0.2:2377"),
    ]
    assert all(m.weight > 0 for m in first.managers)
    assert first.root_ca == cluster.root_ca.ca_cert
    assert b"secret key" not in first.SerializeToString()
    stored = get_node(store, "n1")
    assert stored.status.state == READY
    assert stored.status.addr == "127.0.0.1"
    assert stored.description.hostname == "n1-host"
    call.cancel()


async def test_the_session_stream_follows_managers_and_the_node(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    call, first = await harness.agent("n1").open()
    assert not first.managers
    await put(harness.store, node("m1", READY, types_pb2.MANAGER, "10.1.0.1:2377"))
    update = await read(call)
    assert update.session_id == first.session_id
    assert [m.peer.addr for m in update.managers] == ["10.1.0.1:2377"]

    def drain(tx: WriteTx) -> None:
        current = tx.get(objects_pb2.Node, "n1")
        assert current is not None
        current.spec.availability = current.spec.DRAIN
        tx.update(current)

    await harness.store.update(drain)
    assert (await read(call)).node.spec.availability == objects_pb2.Node().spec.DRAIN
    call.cancel()


async def test_an_unknown_node_is_refused(harness: Harness) -> None:
    error = await failure(harness.agent("stranger").session())
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "node stranger is not a member of the cluster" in (error.details() or "")


async def test_a_bad_description_is_refused_and_changes_nothing(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    before = get_node(harness.store, "n1")
    agent = harness.agent("n1")
    request = dispatcher_pb2.SessionRequest()  # no hostname
    error = await failure(agent.stub.Session(request, metadata=agent.metadata))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no hostname" in (error.details() or "")
    request.description.hostname = "h"
    request.description.resources.memory_bytes = -1
    error = await failure(agent.stub.Session(request, metadata=agent.metadata))
    assert "negative resources" in (error.details() or "")
    assert get_node(harness.store, "n1") == before


async def test_a_call_without_identity_is_unauthenticated(harness: Harness) -> None:
    agent = harness.agent("n1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.stub.Heartbeat(dispatcher_pb2.HeartbeatRequest(session_id="x"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_reregistration_is_limited_to_3_in_8_seconds(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent = harness.agent("n1")
    calls = []
    for _ in range(4):  # a registration and 3 re-registrations
        call, _ = await agent.open()
        calls.append(call)
        harness.clock.advance(1)
    error = await failure(agent.session())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "node n1 re-registered 3 times in the last 8 s (at most 3)" in (error.details() or "")
    harness.clock.advance(4.5)  # the first registration leaves the window
    call, _ = await agent.open()
    for c in [*calls, call]:
        c.cancel()


async def test_a_new_session_ends_the_previous_one(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent = harness.agent("n1")
    old_call, old = await agent.open()
    new_call, new = await agent.open()
    assert new.session_id != old.session_id
    error = await failure(old_call)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "was replaced by a new one" in (error.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.heartbeat(old.session_id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await agent.heartbeat(new.session_id)
    new_call.cancel()


async def test_resuming_the_current_session_keeps_it(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent = harness.agent("n1")
    first_call, first = await agent.open()
    first_call.cancel()
    call = agent.session(resume=first.session_id)
    again = await read(call)
    assert again.session_id == first.session_id
    await agent.heartbeat(first.session_id)
    call.cancel()


async def test_removing_the_node_ends_its_session(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    call, _ = await harness.agent("n1").open()
    await harness.store.update(lambda tx: tx.delete(objects_pb2.Node, "n1"))
    error = await failure(call)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "removed from the cluster" in (error.details() or "")


async def test_losing_leadership_ends_sessions_and_refuses_calls(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent = harness.agent("n1")
    call, first = await agent.open()
    assert REGISTRY.get_sample_value("shoal_dispatcher_sessions") == 1
    await harness.stop()
    error = await failure(call)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "no longer the leader" in (error.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.heartbeat(first.session_id)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not running on this manager" in (caught.value.details() or "")
    assert REGISTRY.get_sample_value("shoal_dispatcher_sessions") == 0
    await harness.restart()  # leader again: a new session works
    call, _ = await agent.open()
    call.cancel()
