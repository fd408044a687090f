from __future__ import annotations

from typing import Any

from manager.scheduler import NodeInfo, NodeSet, TaskUsage
from manager.scheduler.node_info import FAILURE_WINDOW_S, MAX_FAILURES
from shoal.v1 import specs_pb2, types_pb2

from .builders import CPU, GIB, MIB, node, running, task


def info_for(**node_args: Any) -> NodeInfo:
    info = NodeInfo("n1")
    info.set_node(node("n1", **node_args))
    return info


def test_available_resources_are_described_minus_reservations() -> None:
    info = info_for(cpus=4, memory=8 * GIB)
    info.add_task("t1", TaskUsage.of(running("t1", "a", "n1", cpus=1.5, memory=512 * MIB)))
    info.add_task("t2", TaskUsage.of(running("t2", "b", "n1", cpus=0.5, memory=512 * MIB)))
    assert (info.available_cpus, info.available_memory) == (2 * CPU, 7 * GIB)
    assert info.active_tasks == 2
    assert info.active_by_service == {"a": 1, "b": 1}
    info.remove_task("t1")
    assert (info.available_cpus, info.available_memory) == (int(3.5 * CPU), int(7.5 * GIB))
    assert info.active_by_service == {"b": 1}
    assert info.remove_task("t1") is None  # twice is harmless


def test_re_adding_a_task_replaces_its_usage() -> None:
    info = info_for(cpus=4)
    info.add_task("t1", TaskUsage.of(running("t1", "a", "n1", cpus=1)))
    info.add_task("t1", TaskUsage.of(running("t1", "a", "n1", cpus=1)))
    assert info.available_cpus == 3 * CPU
    assert info.active_tasks == 1


def test_shutting_down_task_keeps_resources_but_not_its_spread_count() -> None:
    info = info_for(cpus=4)
    stopping = running("t1", "a", "n1", cpus=1, desired=types_pb2.SHUTDOWN)
    info.add_task("t1", TaskUsage.of(stopping))
    assert info.available_cpus == 3 * CPU
    assert info.active_tasks == 0
    assert info.active_by_service == {}


def test_fits_checks_every_reservation() -> None:
    info = info_for(cpus=2, memory=GIB, generic={"gpu": 2})
    assert info.fits(TaskUsage.of(task("x", cpus=2, memory=GIB, generic={"gpu": 2})))
    assert not info.fits(TaskUsage.of(task("x", cpus=2.5)))
    assert not info.fits(TaskUsage.of(task("x", memory=GIB + 1)))
    assert not info.fits(TaskUsage.of(task("x", generic={"gpu": 3})))
    assert not info.fits(TaskUsage.of(task("x", generic={"fpga": 1})))
    info.add_task("g", TaskUsage.of(running("g", "a", "n1", generic={"gpu": 2})))
    assert not info.fits(TaskUsage.of(task("x", generic={"gpu": 1})))


def test_host_ports_are_counted_per_task() -> None:
    info = info_for()
    ports = TaskUsage.of(running("t1", "a", "n1", host_ports=[8080])).host_ports
    assert ports == frozenset({(types_pb2.PortConfig.TCP, 8080)})
    info.add_task("t1", TaskUsage.of(running("t1", "a", "n1", host_ports=[8080])))
    info.add_task("t2", TaskUsage.of(running("t2", "a", "n1", host_ports=[8080])))
    assert info.uses_any_port(ports)
    info.remove_task("t1")
    assert info.uses_any_port(ports)
    info.remove_task("t2")
    assert not info.uses_any_port(ports)


def test_ingress_and_unpublished_ports_take_no_host_port() -> None:
    t = task("t1")
    t.endpoint.ports.add(target_port=80, published_port=30000)  # ingress (routing mesh)
    t.endpoint.ports.add(target_port=81, publish_mode=types_pb2.PortConfig.HOST)  # none
    assert TaskUsage.of(t).host_ports == frozenset()


def test_set_node_reports_changes_placement_cares_about() -> None:
    info = NodeInfo("n1")
    assert info.set_node(node("n1"))
    assert not info.set_node(node("n1"))
    assert info.ready
    drained = node("n1", availability=specs_pb2.NodeSpec.DRAIN)
    assert info.set_node(drained)
    assert not info.ready
    assert info.set_node(node("n1", labels={"zone": "a"}))
    assert info.set_node(node("n1", labels={"zone": "a"}, cpus=8))
    heartbeat = node("n1", labels={"zone": "a"}, cpus=8)
    heartbeat.status.message = "heartbeat"
    assert not info.set_node(heartbeat)


def test_node_resources_change_keeps_reservations() -> None:
    info = info_for(cpus=2)
    info.add_task("t1", TaskUsage.of(running("t1", "a", "n1", cpus=1)))
    info.set_node(node("n1", cpus=8))
    assert info.available_cpus == 7 * CPU


def test_failures_count_within_the_window() -> None:
    info = info_for()
    key = ("svc", 1)
    for second in range(MAX_FAILURES - 1):
        info.record_failure(key, 100.0 + second)
    assert info.recent_failures(key, 110.0) == MAX_FAILURES - 1
    assert info.failure_penalty(key, 110.0) == 0  # below the threshold: no penalty
    info.record_failure(key, 105.0)
    assert info.failure_penalty(key, 110.0) == MAX_FAILURES
    assert info.failure_penalty(("svc", 2), 110.0) == 0  # per spec version
    assert info.failure_penalty(("other", 1), 110.0) == 0
    # The first failure (t=100) leaves the window after FAILURE_WINDOW_S.
    assert info.recent_failures(key, 100.0 + FAILURE_WINDOW_S + 0.5) == MAX_FAILURES - 1
    assert info.failure_penalty(key, 100.0 + FAILURE_WINDOW_S + 0.5) == 0
    assert info.recent_failures(key, 200.0 + FAILURE_WINDOW_S) == 0


def test_old_failures_are_forgotten() -> None:
    info = info_for()
    info.record_failure(("old", 1), 0.0)
    info.record_failure(("new", 1), 2 * FAILURE_WINDOW_S)
    assert info.recent_failures(("old", 1), 2 * FAILURE_WINDOW_S) == 0
    assert info.recent_failures(("new", 1), 2 * FAILURE_WINDOW_S) == 1


def test_node_set_build_accounts_only_tasks_holding_resources() -> None:
    tasks = [
        running("run", "a", "n1", cpus=1),
        task("assigned", "a", node_id="n1", state=types_pb2.ASSIGNED, cpus=1),
        task("done", "a", node_id="n1", state=types_pb2.COMPLETE, cpus=1),
        task("failed", "a", node_id="n1", state=types_pb2.FAILED, cpus=1),
        task("pending", "a", cpus=1),
        task("preassigned", "a", node_id="n1", cpus=1),  # PENDING: checked, not accounted
        running("elsewhere", "a", "gone", cpus=1),
    ]
    node_set = NodeSet.build([node("n1", cpus=4), node("n2")], tasks)
    n1 = node_set.get("n1")
    assert n1 is not None
    assert set(n1.tasks) == {"run", "assigned"}
    assert n1.available_cpus == 2 * CPU
    assert [info.node_id for info in node_set.candidates()] == ["n1", "n2"]
    # A node only known through its tasks is tracked but never a candidate.
    gone = node_set.get("gone")
    assert gone is not None and gone.node is None


def test_node_set_keeps_a_removed_nodes_tasks_until_they_go() -> None:
    node_set = NodeSet.build([node("n1", cpus=4)], [running("t1", "a", "n1", cpus=1)])
    node_set.remove_node("n1")
    assert node_set.candidates() == []
    node_set.set_node(node("n1", cpus=4))
    info = node_set.get("n1")
    assert info is not None and info.available_cpus == 3 * CPU
    node_set.remove_node("n1")
    node_set.remove_task("t1", "n1")
    assert node_set.get("n1") is None
