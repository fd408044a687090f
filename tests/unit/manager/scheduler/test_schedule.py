"""The decision core: filters, spread, preferences and messages, on protobuf nodes and tasks."""

from __future__ import annotations

import random

import pytest

from manager.scheduler import NodeSet, place_tasks, schedule
from manager.scheduler.requirements import group_key
from manager.scheduler.spread import water_fill
from shoal.v1 import specs_pb2, types_pb2

from .builders import GIB, messages, node, per_node, placements, replicas, running, task


def test_spreads_evenly_in_node_order() -> None:
    decisions = schedule([node("n3"), node("n1"), node("n2")], replicas("web", 7))
    assert placements(decisions) == {
        "web-001": "n1",
        "web-002": "n2",
        "web-003": "n3",
        "web-004": "n1",
        "web-005": "n2",
        "web-006": "n3",
        "web-007": "n1",
    }
    assert decisions.unschedulable == []


def test_prefers_fewest_tasks_of_the_service_then_fewest_tasks() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    existing = [
        running("w1", "web", "n1"),
        running("w2", "web", "n1"),
        running("w3", "web", "n2"),
        *(running(f"db{i}", "db", "n3") for i in range(5)),
    ]
    decisions = schedule(nodes, [*existing, *replicas("web", 4)])
    # web tasks / all tasks: n1 2/2, n2 1/1, n3 0/5. n3 has the fewest web tasks; then n2
    # and n3 have one each and n2 fewer overall; then n3 has the fewest web tasks again;
    # then n1 and n2 tie at 2/2 and the smaller id wins.
    assert [a.node_id for a in decisions.assigned] == ["n3", "n2", "n3", "n1"]


def test_total_tasks_break_ties_between_equal_service_counts() -> None:
    nodes = [node("n1"), node("n2")]
    existing = [running("db1", "db", "n1")]
    decisions = schedule(nodes, [*existing, *replicas("web", 1)])
    assert placements(decisions) == {"web-001": "n2"}


def test_stopping_tasks_do_not_count_for_the_spread() -> None:
    nodes = [node("n1"), node("n2")]
    existing = [running(f"old{i}", "web", "n1", desired=types_pb2.SHUTDOWN) for i in range(3)]
    existing.append(running("w1", "web", "n2"))
    decisions = schedule(nodes, [*existing, *replicas("web", 1)])
    assert placements(decisions) == {"web-001": "n1"}


def test_drained_and_paused_nodes_take_no_new_tasks() -> None:
    nodes = [
        node("active"),
        node("drained", availability=specs_pb2.NodeSpec.DRAIN),
        node("paused", availability=specs_pb2.NodeSpec.PAUSE),
        node("down", state=types_pb2.NodeStatus.DOWN),
    ]
    decisions = schedule(nodes, replicas("web", 5))
    assert per_node(decisions) == {"active": 5}


def test_no_ready_node_leaves_tasks_pending_with_the_reason() -> None:
    nodes = [node("drained", availability=specs_pb2.NodeSpec.DRAIN)]
    decisions = schedule(nodes, replicas("web", 2))
    assert decisions.assigned == []
    assert messages(decisions) == {
        "web-001": "no suitable node (1 node not available for new tasks)",
        "web-002": "no suitable node (1 node not available for new tasks)",
    }


def test_no_nodes_at_all() -> None:
    decisions = schedule([], replicas("web", 1))
    assert messages(decisions) == {"web-001": "no suitable node"}


def test_resources_are_reserved_within_the_batch() -> None:
    nodes = [node("n1", cpus=2, memory=4 * GIB), node("n2", cpus=1, memory=4 * GIB)]
    decisions = schedule(nodes, replicas("web", 5, cpus=1, memory=GIB))
    assert per_node(decisions) == {"n1": 2, "n2": 1}
    assert messages(decisions) == {
        "web-004": "no suitable node (insufficient resources on 2 nodes)",
        "web-005": "no suitable node (insufficient resources on 2 nodes)",
    }


def test_later_groups_see_earlier_groups_reservations() -> None:
    nodes = [node("n1", cpus=2)]
    decisions = schedule(nodes, [*replicas("a", 1, cpus=1.5), *replicas("b", 1, cpus=1)])
    assert placements(decisions) == {"a-001": "n1"}
    assert messages(decisions) == {"b-001": "no suitable node (insufficient resources on 1 node)"}


def test_existing_tasks_hold_resources_until_they_finish() -> None:
    nodes = [node("n1", cpus=2)]
    existing = [
        running("r", "db", "n1", cpus=1),
        task("a", "db", node_id="n1", state=types_pb2.ASSIGNED, cpus=0.5),
        task("done", "db", node_id="n1", state=types_pb2.COMPLETE, cpus=2),
        task("failed", "db", node_id="n1", state=types_pb2.FAILED, cpus=2),
    ]
    assert len(schedule(nodes, [*existing, *replicas("web", 1, cpus=0.5)]).assigned) == 1
    assert schedule(nodes, [*existing, *replicas("web", 1, cpus=0.6)]).unschedulable


def test_message_lists_every_reason_most_common_first() -> None:
    nodes = [
        node("small1", cpus=1, labels={"zone": "a"}),
        node("small2", cpus=1, labels={"zone": "a"}),
        node("small3", cpus=1, labels={"zone": "a"}),
        node("b1", cpus=8, labels={"zone": "b"}),
        node("b2", cpus=8, labels={"zone": "b"}),
        node("drained", cpus=8, labels={"zone": "a"}, availability=specs_pb2.NodeSpec.DRAIN),
    ]
    decisions = schedule(nodes, replicas("web", 1, cpus=2, constraints=["node.labels.zone==a"]))
    assert messages(decisions) == {
        "web-001": "no suitable node (insufficient resources on 3 nodes; "
        "scheduling constraints not satisfied on 2 nodes; 1 node not available for new tasks)"
    }


def test_constraints_select_nodes() -> None:
    nodes = [
        node("m1", role=types_pb2.MANAGER, labels={"zone": "a"}),
        node("w1", labels={"zone": "a"}, addr="10.1.0.5"),
        node("w2", labels={"zone": "b"}, addr="10.1.0.6"),
        node("w3", labels={"zone": "a"}, addr="10.2.0.7"),
    ]
    only_w1 = ["node.role==worker", "node.labels.zone==a", "node.ip==10.1.0.0/16"]
    decisions = schedule(nodes, replicas("web", 3, constraints=only_w1))
    assert per_node(decisions) == {"w1": 3}


def test_invalid_constraint_leaves_the_task_pending_with_the_parse_error() -> None:
    decisions = schedule([node("n1")], replicas("web", 1, constraints=["node.role>=worker"]))
    assert decisions.assigned == []
    assert messages(decisions) == {
        "web-001": "invalid constraint 'node.role>=worker': expected one operator, == or !="
    }


def test_platforms() -> None:
    nodes = [node("x86", arch="x86_64"), node("arm", arch="aarch64"), node("win", os="windows")]
    decisions = schedule(nodes, replicas("web", 2, platforms=[("linux", "arm64")]))
    assert per_node(decisions) == {"arm": 2}
    decisions = schedule(nodes, replicas("web", 1, platforms=[("darwin", "")]))
    assert messages(decisions) == {"web-001": "no suitable node (unsupported platform on 3 nodes)"}


def test_max_replicas_per_node() -> None:
    nodes = [node("n1"), node("n2")]
    existing = [running("w0", "web", "n1")]
    decisions = schedule(nodes, [*existing, *replicas("web", 4, max_replicas=2)])
    assert per_node(decisions) == {"n1": 1, "n2": 2}
    assert messages(decisions) == {
        "web-004": "no suitable node (max replicas per node limit reached on 2 nodes)"
    }


def test_host_port_conflicts() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    existing = [running("other", "proxy", "n2", host_ports=[8080])]
    decisions = schedule(nodes, [*existing, *replicas("web", 3, host_ports=[8080])])
    assert per_node(decisions) == {"n1": 1, "n3": 1}
    assert messages(decisions) == {
        "web-003": "no suitable node (host-mode port already in use on 3 nodes)"
    }


def test_different_host_ports_do_not_conflict() -> None:
    nodes = [node("n1")]
    tasks = [task("a", "web", host_ports=[8080]), task("b", "api", host_ports=[8081])]
    assert per_node(schedule(nodes, tasks)) == {"n1": 2}


def test_generic_resources() -> None:
    nodes = [node("gpu", generic={"gpu": 2}), node("plain")]
    decisions = schedule(nodes, replicas("ml", 3, generic={"gpu": 1}))
    assert per_node(decisions) == {"gpu": 2}
    assert messages(decisions)["ml-003"] == "no suitable node (insufficient resources on 2 nodes)"


def test_tasks_not_awaiting_scheduling_are_ignored() -> None:
    tasks = [
        task("new", state=types_pb2.NEW),
        task("unwanted", desired=types_pb2.SHUTDOWN),
        task("removed", desired=types_pb2.REMOVE),
        task("job", desired=types_pb2.COMPLETE),
    ]
    decisions = schedule([node("n1")], tasks)
    assert placements(decisions) == {"job": "n1"}
    assert decisions.unschedulable == []


class TestPreassigned:
    """Tasks an orchestrator placed itself (global services) are checked on their node."""

    def test_assigned_when_the_node_fits(self) -> None:
        decisions = schedule([node("n1"), node("n2")], [task("g", "global", node_id="n2")])
        assert placements(decisions) == {"g": "n2"}

    def test_pending_when_the_node_does_not(self) -> None:
        nodes = [node("n1", cpus=1), node("n2", availability=specs_pb2.NodeSpec.DRAIN)]
        tasks = [
            task("big", "global", node_id="n1", cpus=2),
            task("drained", "global", node_id="n2"),
            task("unknown", "global", node_id="n9"),
        ]
        assert messages(schedule(nodes, tasks)) == {
            "big": "no suitable node (insufficient resources on 1 node)",
            "drained": "no suitable node (1 node not available for new tasks)",
            "unknown": "no suitable node (1 node not available for new tasks)",
        }

    def test_checked_before_other_tasks(self) -> None:
        tasks = [*replicas("a-web", 1, cpus=1), task("z-global", "global", node_id="n1", cpus=1)]
        decisions = schedule([node("n1", cpus=1)], tasks)
        assert placements(decisions) == {"z-global": "n1"}
        assert set(messages(decisions)) == {"a-web-001"}


class TestPreferences:
    def test_spread_over_label_values_and_nodes_without_the_label(self) -> None:
        nodes = [
            node("a1", labels={"zone": "a"}),
            node("a2", labels={"zone": "a"}),
            node("a3", labels={"zone": "a"}),
            node("b1", labels={"zone": "b"}),
            node("x1"),
            node("x2", labels={"rack": "1"}),
        ]
        decisions = schedule(nodes, replicas("web", 6, spread=["node.labels.zone"]))
        # Three branches (a, b and "no zone") take 2 tasks each, spread inside each branch.
        assert per_node(decisions) == {"a1": 1, "a2": 1, "b1": 2, "x1": 1, "x2": 1}

    def test_existing_tasks_count_in_their_branch(self) -> None:
        nodes = [node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"})]
        nodes.append(node("c1", labels={"zone": "c"}))
        existing = [running(f"w{i}", "web", "a1") for i in range(3)]
        decisions = schedule(nodes, [*existing, *replicas("web", 7, spread=["node.labels.zone"])])
        # a already has 3: b and c come up to 3 each, then the last task goes to the first zone.
        assert per_node(decisions) == {"a1": 1, "b1": 3, "c1": 3}

    def test_a_full_branch_passes_its_share_on(self) -> None:
        nodes = [
            node("a1", cpus=8, labels={"zone": "a"}),
            node("b1", cpus=1, labels={"zone": "b"}),
            node("c1", cpus=8, labels={"zone": "c"}),
        ]
        decisions = schedule(nodes, replicas("web", 6, cpus=1, spread=["node.labels.zone"]))
        assert per_node(decisions) == {"a1": 3, "b1": 1, "c1": 2}

    def test_branches_without_a_usable_node_get_nothing(self) -> None:
        nodes = [
            node("a1", labels={"zone": "a"}),
            node("b1", labels={"zone": "b"}, availability=specs_pb2.NodeSpec.DRAIN),
        ]
        decisions = schedule(nodes, replicas("web", 4, spread=["node.labels.zone"]))
        assert per_node(decisions) == {"a1": 4}

    def test_nested_preferences_balance_at_each_level(self) -> None:
        nodes = [
            node("a-r1", labels={"zone": "a", "rack": "1"}),
            node("a-r2-x", labels={"zone": "a", "rack": "2"}),
            node("a-r2-y", labels={"zone": "a", "rack": "2"}),
            node("b-r1", labels={"zone": "b", "rack": "1"}),
        ]
        spread = ["node.labels.zone", "node.labels.rack"]
        decisions = schedule(nodes, replicas("web", 8, spread=spread))
        assert per_node(decisions) == {"b-r1": 4, "a-r1": 2, "a-r2-x": 1, "a-r2-y": 1}

    def test_engine_label_spread(self) -> None:
        nodes = [
            node("s1", engine_labels={"disk": "ssd"}),
            node("s2", engine_labels={"disk": "ssd"}),
            node("h1", engine_labels={"disk": "hdd"}),
        ]
        decisions = schedule(nodes, replicas("web", 4, spread=["engine.labels.disk"]))
        assert per_node(decisions) == {"h1": 2, "s1": 1, "s2": 1}

    def test_constraints_apply_inside_the_tree(self) -> None:
        nodes = [
            node("a1", labels={"zone": "a"}),
            node("a2", labels={"zone": "a"}, role=types_pb2.MANAGER),
            node("b1", labels={"zone": "b"}, role=types_pb2.MANAGER),
        ]
        tasks = replicas("web", 4, spread=["node.labels.zone"], constraints=["node.role==worker"])
        assert per_node(schedule(nodes, tasks)) == {"a1": 4}

    def test_invalid_preference_leaves_tasks_pending(self) -> None:
        decisions = schedule([node("n1")], replicas("web", 1, spread=["node.ip"]))
        assert decisions.assigned == []
        assert messages(decisions)["web-001"].startswith(
            "invalid placement preference 'spread=node.ip'"
        )


class TestFailureBackOff:
    @staticmethod
    def nodes_with_failures(failures: dict[str, int], version: int = 1) -> NodeSet:
        node_set = NodeSet.build([node(n) for n in ("n1", "n2", "n3")], [])
        for node_id, count in failures.items():
            info = node_set.get(node_id)
            assert info is not None
            for i in range(count):
                info.record_failure(("web", version), 100.0 + i)
        return node_set

    def test_a_node_with_recent_failures_goes_last(self) -> None:
        node_set = self.nodes_with_failures({"n1": 5})
        decisions = place_tasks(node_set, replicas("web", 3), now=110.0)
        assert [a.node_id for a in decisions.assigned] == ["n2", "n3", "n2"]

    def test_more_failures_go_further_back(self) -> None:
        node_set = self.nodes_with_failures({"n1": 6, "n2": 5})
        decisions = place_tasks(node_set, replicas("web", 3, max_replicas=1), now=110.0)
        assert [a.node_id for a in decisions.assigned] == ["n3", "n2", "n1"]

    def test_fewer_than_five_failures_change_nothing(self) -> None:
        node_set = self.nodes_with_failures({"n1": 4})
        decisions = place_tasks(node_set, replicas("web", 3), now=110.0)
        assert [a.node_id for a in decisions.assigned] == ["n1", "n2", "n3"]

    def test_failures_expire(self) -> None:
        node_set = self.nodes_with_failures({"n1": 5})
        decisions = place_tasks(node_set, replicas("web", 1), now=100.0 + 301.0)
        assert [a.node_id for a in decisions.assigned] == ["n1"]

    def test_failures_of_another_spec_version_do_not_count(self) -> None:
        node_set = self.nodes_with_failures({"n1": 5}, version=1)
        decisions = place_tasks(node_set, replicas("web", 1, version=2), now=110.0)
        assert [a.node_id for a in decisions.assigned] == ["n1"]


def test_decisions_do_not_depend_on_input_order() -> None:
    nodes = [
        node(f"n{i}", cpus=2, labels={"zone": "abc"[i % 3]} if i % 4 else {}) for i in range(12)
    ]
    tasks = [
        *replicas("web", 40, cpus=0.5, spread=["node.labels.zone"]),
        *replicas("api", 15, max_replicas=2),
        *replicas("db", 5, cpus=1, constraints=["node.labels.zone!=a"]),
        running("r1", "web", "n3", cpus=1),
        running("r2", "api", "n5"),
    ]
    expected = schedule(nodes, tasks)
    assert expected.assigned and expected.unschedulable
    rng = random.Random(1)
    for _ in range(5):
        rng.shuffle(nodes)
        rng.shuffle(tasks)
        assert schedule(nodes, tasks) == expected


def test_group_key() -> None:
    first, second = task("a", "web", version=3), task("b", "web", version=3)
    assert group_key(first) == group_key(second)
    assert group_key(first) != group_key(task("c", "web", version=4))
    assert group_key(first) != group_key(task("d", "web", version=3, host_ports=[80]))
    # Without a spec version, tasks group by their spec.
    bare = [task("e", "web", version=None), task("f", "web", version=None)]
    assert group_key(bare[0]) == group_key(bare[1])
    assert group_key(bare[0]) != group_key(task("g", "web", version=None, cpus=1))


@pytest.mark.parametrize(
    ("counts", "n", "shares"),
    [
        ([0, 0, 0], 6, [2, 2, 2]),
        ([0, 0, 0], 7, [3, 2, 2]),
        ([3, 0, 0], 7, [1, 3, 3]),
        ([10, 0, 0], 3, [0, 2, 1]),
        ([2, 0], 1, [0, 1]),
        ([5, 1, 3], 4, [0, 3, 1]),
        ([0], 9, [9]),
        ([4, 4], 0, [0, 0]),
    ],
)
def test_water_fill(counts: list[int], n: int, shares: list[int]) -> None:
    assert water_fill(counts, n) == shares
