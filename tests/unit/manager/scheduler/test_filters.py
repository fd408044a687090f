from __future__ import annotations

import pytest

from manager.scheduler import NodeInfo, TaskUsage
from manager.scheduler.filters import (
    PIPELINE,
    ConstraintsFilter,
    Filter,
    FilterRun,
    HostPortsFilter,
    MaxReplicasFilter,
    PlatformFilter,
    ReadyFilter,
    ResourcesFilter,
)
from manager.scheduler.requirements import TaskRequirements
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

from .builders import GIB, node, running, task


def info(n: objects_pb2.Node, *tasks: objects_pb2.Task) -> NodeInfo:
    result = NodeInfo(n.id)
    result.set_node(n)
    for t in tasks:
        result.add_task(t.id, TaskUsage.of(t))
    return result


def test_pipeline_is_in_swarmkits_order() -> None:
    assert [type(f) for f in PIPELINE] == [
        ReadyFilter,
        ResourcesFilter,
        ConstraintsFilter,
        PlatformFilter,
        HostPortsFilter,
        MaxReplicasFilter,
    ]


@pytest.mark.parametrize(
    ("state", "availability", "ready"),
    [
        (types_pb2.NodeStatus.READY, specs_pb2.NodeSpec.ACTIVE, True),
        (types_pb2.NodeStatus.READY, specs_pb2.NodeSpec.PAUSE, False),
        (types_pb2.NodeStatus.READY, specs_pb2.NodeSpec.DRAIN, False),
        (types_pb2.NodeStatus.DOWN, specs_pb2.NodeSpec.ACTIVE, False),
        (types_pb2.NodeStatus.DISCONNECTED, specs_pb2.NodeSpec.ACTIVE, False),
        (types_pb2.NodeStatus.UNKNOWN, specs_pb2.NodeSpec.ACTIVE, False),
    ],
)
def test_ready_filter(
    state: types_pb2.NodeStatus.State.ValueType,
    availability: specs_pb2.NodeSpec.Availability.ValueType,
    ready: bool,
) -> None:
    req = TaskRequirements.of(task("t"))
    candidate = info(node("n", state=state, availability=availability))
    assert ReadyFilter().check(req, candidate) is ready
    assert ReadyFilter().check(req, NodeInfo("unknown")) is False


def test_resources_filter() -> None:
    f = ResourcesFilter()
    assert not f.applies(TaskRequirements.of(task("t")))
    req = TaskRequirements.of(task("t", cpus=1, memory=GIB))
    assert f.applies(req)
    assert f.check(req, info(node("n", cpus=1, memory=GIB)))
    assert not f.check(req, info(node("n", cpus=0.5, memory=GIB)))
    assert not f.check(req, info(node("n", cpus=1, memory=GIB - 1)))
    busy = info(node("n", cpus=2, memory=2 * GIB), running("r", "other", "n", cpus=1.5))
    assert not f.check(req, busy)
    assert f.applies(TaskRequirements.of(task("t", generic={"gpu": 1})))


def test_constraints_filter() -> None:
    f = ConstraintsFilter()
    assert not f.applies(TaskRequirements.of(task("t")))
    req = TaskRequirements.of(task("t", constraints=["node.labels.zone==a", "node.role==worker"]))
    assert f.check(req, info(node("n", labels={"zone": "a"})))
    assert not f.check(req, info(node("n", labels={"zone": "b"})))
    assert not f.check(req, info(node("n", labels={"zone": "a"}, role=types_pb2.MANAGER)))
    assert not f.check(req, NodeInfo("unknown"))


@pytest.mark.parametrize(
    ("platforms", "os", "arch", "ok"),
    [
        ([("linux", "amd64")], "linux", "amd64", True),
        ([("linux", "amd64")], "linux", "x86_64", True),  # spellings of one architecture
        ([("linux", "arm64")], "linux", "aarch64", True),
        ([("linux", "arm64")], "linux", "amd64", False),
        ([("windows", "")], "linux", "amd64", False),
        ([("", "amd64")], "freebsd", "amd64", True),  # "" matches anything
        ([("Linux", "AMD64")], "linux", "amd64", True),
        ([("windows", "amd64"), ("linux", "arm64")], "linux", "arm64", True),
    ],
)
def test_platform_filter(platforms: list[tuple[str, str]], os: str, arch: str, ok: bool) -> None:
    req = TaskRequirements.of(task("t", platforms=platforms))
    assert PlatformFilter().applies(req)
    assert PlatformFilter().check(req, info(node("n", os=os, arch=arch))) is ok


def test_platform_filter_off_without_platforms() -> None:
    assert not PlatformFilter().applies(TaskRequirements.of(task("t")))


def test_host_ports_filter() -> None:
    f = HostPortsFilter()
    assert not f.applies(TaskRequirements.of(task("t")))
    req = TaskRequirements.of(task("t", host_ports=[8080]))
    assert f.check(req, info(node("n")))
    assert f.check(req, info(node("n"), running("r", "other", "n", host_ports=[9090])))
    assert not f.check(req, info(node("n"), running("r", "other", "n", host_ports=[8080])))
    udp = task("t")
    udp.endpoint.ports.add(
        protocol=types_pb2.PortConfig.UDP,
        published_port=8080,
        publish_mode=types_pb2.PortConfig.HOST,
    )
    assert f.check(
        TaskRequirements.of(udp), info(node("n"), running("r", "o", "n", host_ports=[8080]))
    )


def test_max_replicas_filter() -> None:
    f = MaxReplicasFilter()
    assert not f.applies(TaskRequirements.of(task("t")))
    req = TaskRequirements.of(task("t", "web", max_replicas=2))
    one = running("r1", "web", "n")
    two = running("r2", "web", "n")
    other = running("o1", "db", "n")
    stopping = running("r3", "web", "n", desired=types_pb2.SHUTDOWN)
    assert f.check(req, info(node("n"), one, other, stopping))
    assert not f.check(req, info(node("n"), one, two))


@pytest.mark.parametrize(
    ("f", "one", "three"),
    [
        (
            ReadyFilter(),
            "1 node not available for new tasks",
            "3 nodes not available for new tasks",
        ),
        (
            ResourcesFilter(),
            "insufficient resources on 1 node",
            "insufficient resources on 3 nodes",
        ),
        (
            ConstraintsFilter(),
            "scheduling constraints not satisfied on 1 node",
            "scheduling constraints not satisfied on 3 nodes",
        ),
        (PlatformFilter(), "unsupported platform on 1 node", "unsupported platform on 3 nodes"),
        (
            HostPortsFilter(),
            "host-mode port already in use on 1 node",
            "host-mode port already in use on 3 nodes",
        ),
        (
            MaxReplicasFilter(),
            "max replicas per node limit reached on 1 node",
            "max replicas per node limit reached on 3 nodes",
        ),
    ],
)
def test_explanations(f: Filter, one: str, three: str) -> None:
    assert f.explain(1) == one
    assert f.explain(3) == three


def test_run_counts_each_node_against_its_first_failing_filter() -> None:
    req = TaskRequirements.of(task("t", cpus=2, constraints=["node.labels.zone==a"]))
    run = FilterRun(req)
    nodes = [
        node("down", state=types_pb2.NodeStatus.DOWN, cpus=1),  # fails ready (and resources)
        node("small1", cpus=1, labels={"zone": "b"}),  # fails resources (and constraints)
        node("small2", cpus=1, labels={"zone": "a"}),
        node("small3", cpus=1),
        node("elsewhere", cpus=4, labels={"zone": "b"}),
        node("fits", cpus=4, labels={"zone": "a"}),
    ]
    admitted = [n.id for n in nodes if run.admits(info(n))]
    assert admitted == ["fits"]
    assert run.explain() == (
        "insufficient resources on 3 nodes; "
        "1 node not available for new tasks; "
        "scheduling constraints not satisfied on 1 node"
    )


def test_still_admits_runs_only_the_dynamic_filters() -> None:
    req = TaskRequirements.of(task("t", "web", cpus=1, max_replicas=1, host_ports=[80]))
    run = FilterRun(req)
    candidate = info(node("n", cpus=4))
    assert run.admits(candidate)
    candidate.add_task("t", req.usage)
    assert not run.still_admits(candidate)
    # Counted against the first dynamic filter that fails: the port, before max replicas.
    assert run.explain() == "host-mode port already in use on 1 node"


def test_explain_without_rejections_is_empty() -> None:
    assert FilterRun(TaskRequirements.of(task("t"))).explain() == ""
