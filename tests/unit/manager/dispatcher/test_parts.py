"""The dispatcher's parts on their own: deadlines, the registration limit, jitter, settings,
peer addresses, and which tasks an assignment set holds."""

from __future__ import annotations

import random

import pytest

from manager.dispatcher import ConfigError, DispatcherConfig, RateLimited
from manager.dispatcher.assignments import AssignmentSet, joins
from manager.dispatcher.heartbeats import HeartbeatDeadlines, jittered
from manager.dispatcher.rate_limit import RegistrationLimiter
from manager.node_rpc import peer_host
from manager.store import Event, EventAction, Kind
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

from .fakes import local_store, task


def test_deadlines_expire_in_order_and_moves_replace_old_ones() -> None:
    deadlines = HeartbeatDeadlines()
    assert deadlines.set("a", 10)
    assert not deadlines.set("b", 20)
    assert deadlines.set("c", 5)
    assert not deadlines.set("c", 30)  # moved later: "a" is the earliest now
    assert deadlines.next_deadline() == 10
    assert deadlines.expired(9) == []
    assert deadlines.expired(20) == ["a", "b"]
    assert "a" not in deadlines and "c" in deadlines
    deadlines.forget("c")
    assert deadlines.next_deadline() is None
    assert deadlines.expired(100) == []


def test_registrations_are_limited_within_a_sliding_window() -> None:
    limiter = RegistrationLimiter(max_reregistrations=3, window=8.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        limiter.admit("n1", t)
    with pytest.raises(RateLimited, match=r"retry in 4\.0 s"):
        limiter.admit("n1", 4.0)
    limiter.admit("n2", 4.0)  # other nodes are not affected
    with pytest.raises(RateLimited):
        limiter.admit("n1", 7.9)  # refusals do not count, but the window has not moved yet
    limiter.admit("n1", 8.0)


def test_jitter_stays_within_bounds() -> None:
    rng = random.Random(1)
    values = [jittered(5.0, 0.1, rng) for _ in range(1000)]
    assert min(values) >= 4.5 and max(values) <= 5.5
    assert max(values) - min(values) > 0.9


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("default_heartbeat_period", 0),
        ("missed_heartbeats", -1),
        ("heartbeat_jitter", 1.0),
        ("status_batch_size", 0),
        ("assignment_batch_interval", -0.1),
    ],
)
def test_bad_settings_are_refused(setting: str, value: float) -> None:
    with pytest.raises(ConfigError, match=setting):
        DispatcherConfig(**{setting: value})  # type: ignore[arg-type]


def test_swarmkit_defaults() -> None:
    config = DispatcherConfig()
    assert config.heartbeat_period(None) == 5.0
    assert (config.missed_heartbeats, config.leader_change_grace) == (3, 6)
    assert (config.max_reregistrations, config.reregistration_window) == (3, 8.0)
    assert (config.status_flush_interval, config.status_batch_size) == (0.1, 10_000)
    assert (config.assignment_batch_interval, config.assignment_batch_size) == (0.1, 100)
    cluster = objects_pb2.Cluster()
    cluster.spec.dispatcher.heartbeat_period.FromMilliseconds(2500)
    assert config.heartbeat_period(cluster) == 2.5


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.2:4242", "10.0.0.2"),
        ("ipv6:[::1]:4242", "::1"),
        ("unix:/run/swarmd.sock", ""),
        ("", ""),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


@pytest.mark.parametrize(
    ("state", "desired", "member"),
    [
        (types_pb2.PENDING, types_pb2.RUNNING, False),
        (types_pb2.ASSIGNED, types_pb2.RUNNING, True),
        (types_pb2.RUNNING, types_pb2.SHUTDOWN, True),  # the agent must stop it
        (types_pb2.FAILED, types_pb2.RUNNING, True),
        (types_pb2.SHUTDOWN, types_pb2.SHUTDOWN, False),
        (types_pb2.COMPLETE, types_pb2.REMOVE, False),
    ],
)
def test_which_tasks_join_a_nodes_set(state: int, desired: int, member: bool) -> None:
    t = task("n1", types_pb2.TaskState.ValueType(state), types_pb2.TaskState.ValueType(desired))
    assert joins(t, "n1") is member
    assert not joins(t, "n2")


def test_a_task_moved_to_another_node_is_removed_from_the_set() -> None:
    store = local_store()
    t = task("n1", types_pb2.RUNNING)
    assignments = AssignmentSet("n1")
    assignments.observe(Event(Kind.TASK, EventAction.CREATE, None, t, 1))
    moved = objects_pb2.Task()
    moved.CopyFrom(t)
    moved.node_id = "n2"
    assignments.observe(Event(Kind.TASK, EventAction.UPDATE, t, moved, 2))
    changes = store.view(assignments.take_changes)
    assert [(c.action, c.assignment.task.id) for c in changes] == [
        (dispatcher_pb2.AssignmentChange.REMOVE, t.id)
    ]
