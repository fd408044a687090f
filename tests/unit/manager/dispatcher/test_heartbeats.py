"""Heartbeats on a fake clock: jittered periods, DOWN after 3 missed periods, 6 after a
leader change, READY again on return."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import REGISTRY

from manager.dispatcher import HEARTBEAT_FAILURE
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2
from tests.polling import until_async

from .conftest import Harness, failure, serving
from .fakes import advance_until, get_node, local_store, node, put

READY = types_pb2.NodeStatus.READY
DOWN = types_pb2.NodeStatus.DOWN
PERIOD = 5.0


def seconds(response: dispatcher_pb2.HeartbeatResponse) -> float:
    return response.period.seconds + response.period.nanos / 1e9


async def test_heartbeat_period_is_jittered_around_the_cluster_setting(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent = harness.agent("n1")
    call, first = await agent.open()
    periods = [seconds(await agent.heartbeat(first.session_id)) for _ in range(30)]
    assert all(PERIOD * 0.9 <= p <= PERIOD * 1.1 for p in periods)
    assert len(set(periods)) > 1

    cluster = objects_pb2.Cluster(id="c")
    cluster.spec.dispatcher.heartbeat_period.seconds = 2
    await put(harness.store, cluster)
    await until_async(
        lambda: 1.8 <= harness.dispatcher.heartbeat("n1", first.session_id) <= 2.2,
        "the cluster's heartbeat period to apply",
    )
    assert 1.8 <= seconds(await agent.heartbeat(first.session_id)) <= 2.2
    call.cancel()


async def test_a_node_that_stops_beating_is_down_after_three_periods(harness: Harness) -> None:
    await put(harness.store, node("n1"))
    agent = harness.agent("n1")
    call, first = await agent.open()
    clock = harness.clock
    # Beating within each period keeps it READY, however long.
    for _ in range(10):
        period = seconds(await agent.heartbeat(first.session_id))
        clock.advance(period)
    assert get_node(harness.store, "n1").status.state == READY

    period = seconds(await agent.heartbeat(first.session_id))
    clock.advance(3 * period - 0.01)
    await harness.round_trip()
    assert get_node(harness.store, "n1").status.state == READY
    clock.advance(0.02)
    await until_async(
        lambda: get_node(harness.store, "n1").status.state == DOWN, "the node to be marked down"
    )
    assert get_node(harness.store, "n1").status.message == HEARTBEAT_FAILURE
    error = await failure(call)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "missed its heartbeats" in (error.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.heartbeat(first.session_id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    call, _ = await agent.open()  # it comes back
    assert get_node(harness.store, "n1").status.state == READY
    call.cancel()


async def test_after_a_leader_change_nodes_get_six_periods_to_reconnect() -> None:
    store = local_store()
    await put(
        store,
        node("quiet", READY),
        node("back", READY),
        node("gone", DOWN),
    )
    gone_version = get_node(store, "gone").meta.version
    async with serving(store) as harness:
        clock = harness.clock
        clock.advance(3 * PERIOD + 1)
        await harness.round_trip()
        assert get_node(store, "quiet").status.state == READY  # the usual 3 periods are not enough
        agent = harness.agent("back")
        call, first = await agent.open()
        clock.advance(3 * PERIOD - 2)  # 6 periods - 1 s since the leader change
        await agent.heartbeat(first.session_id)
        await harness.round_trip()
        assert get_node(store, "quiet").status.state == READY
        await advance_until(
            clock, lambda: get_node(store, "quiet").status.state == DOWN, "quiet to be down"
        )
        assert get_node(store, "back").status.state == READY
        assert get_node(store, "gone").meta.version == gone_version  # DOWN nodes are not rewritten
        call.cancel()


async def test_metrics_count_heartbeats_and_nodes_by_state(harness: Harness) -> None:
    before = REGISTRY.get_sample_value("shoal_dispatcher_heartbeats_total") or 0.0
    await put(harness.store, node("n1"), node("n2", DOWN))
    agent = harness.agent("n1")
    call, first = await agent.open()
    await agent.heartbeat(first.session_id)
    await agent.heartbeat(first.session_id)
    assert REGISTRY.get_sample_value("shoal_dispatcher_heartbeats_total") == before + 2

    def nodes(state: str) -> float | None:
        return REGISTRY.get_sample_value("shoal_manager_nodes", {"state": state})

    await until_async(lambda: nodes("ready") == 1 and nodes("down") == 1, "node counts")
    call.cancel()
