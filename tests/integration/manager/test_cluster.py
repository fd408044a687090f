"""A cluster of real manager processes (3 managers) with fake agents on two more machines:
services converge, scale, update, roll back, move off drained and dead nodes; a leader kill
loses no acknowledged write; a full restart keeps everything; roles are enforced."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import (
    SwarmCluster,
    three_managers_two_fake_agents,
    until,
)


@pytest.fixture
def swarm(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    cluster = SwarmCluster(make_lab(5), tmp_path)
    try:
        three_managers_two_fake_agents(cluster, drain_managers=True)
        yield cluster
    finally:
        cluster.stop_all()


def running(swarm: SwarmCluster, at: Machine, service_id: str) -> list[dict[str, Any]]:
    return [
        t
        for t in swarm.control(at, "tasks", service_id)
        if t["desired"] == "RUNNING" and t["state"] == "RUNNING"
    ]


def node_ids(swarm: SwarmCluster, at: Machine) -> dict[str, str]:
    return {n["hostname"]: n["id"] for n in swarm.control(at, "nodes")}


def test_services_converge_scale_update_roll_back_and_leave_drained_nodes(
    swarm: SwarmCluster,
) -> None:
    leader, follower = swarm.lab.machines[0], swarm.lab.machines[1]
    web = swarm.control(follower, "create", "web", "6", "busybox:1")["id"]  # via a follower
    tasks = until(
        lambda: len(running(swarm, leader, web)) == 6 and running(swarm, leader, web),
        "6 running tasks",
    )
    assert sorted(Counter(t["node_id"] for t in tasks).values()) == [3, 3]  # spread
    assert sorted(t["slot"] for t in tasks) == [1, 2, 3, 4, 5, 6]

    swarm.control(leader, "scale", web, "12")
    until(lambda: len(running(swarm, leader, web)) == 12, "12 running tasks")
    swarm.control(leader, "scale", web, "2")
    until(
        lambda: (
            len(running(swarm, leader, web)) == 2
            and len([t for t in swarm.control(leader, "tasks", web) if t["desired"] == "RUNNING"])
            == 2
        ),
        "2 running tasks",
    )

    swarm.control(leader, "update-image", web, "busybox:2", "2")
    until(
        lambda: (
            {t["image"] for t in running(swarm, leader, web)} == {"busybox:2"}
            and len(running(swarm, leader, web)) == 2
        ),
        "the update",
    )
    swarm.control(leader, "rollback", web)
    until(
        lambda: (
            {t["image"] for t in running(swarm, leader, web)} == {"busybox:1"}
            and len(running(swarm, leader, web)) == 2
        ),
        "the rollback",
    )
    status = swarm.control(leader, "service", web).get("updateStatus", {})
    assert status.get("state") in ("ROLLBACK_COMPLETED", "ROLLBACK_STARTED"), status

    # A rollback requested while the next update is still in its monitor window.
    swarm.control(leader, "update-image", web, "busybox:3", "1")
    swarm.control(leader, "rollback", web)
    until(
        lambda: (
            swarm.control(leader, "service", web).get("updateStatus", {}).get("state")
            == "ROLLBACK_COMPLETED"
            and {t["image"] for t in running(swarm, leader, web)} == {"busybox:1"}
        ),
        "the rollback of an update in progress",
    )

    names = node_ids(swarm, leader)
    first_agent = names[f"fake-{_agent_node(swarm, 3)[:6]}"]
    swarm.control(leader, "scale", web, "4")
    until(lambda: len(running(swarm, leader, web)) == 4, "4 running tasks")
    swarm.control(leader, "drain", first_agent)
    until(
        lambda: (
            {t["node_id"] for t in running(swarm, leader, web)} - {first_agent}
            and first_agent not in {t["node_id"] for t in running(swarm, leader, web)}
            and len(running(swarm, leader, web)) == 4
        ),
        "tasks off the drained node",
    )


def _agent_node(swarm: SwarmCluster, index: int) -> str:
    """The node id of the fake agent on lab machine `index`, from its identity file."""
    state = swarm.lab.machines[index].state_dir / "fake-agent" / "node.json"
    node_id: str = json.loads(state.read_text())["node_id"]
    return node_id


def test_a_dead_node_s_tasks_are_rescheduled(swarm: SwarmCluster) -> None:
    leader = swarm.lab.machines[0]
    web = swarm.control(leader, "create", "web", "4", "busybox:1")["id"]
    until(lambda: len(running(swarm, leader, web)) == 4, "4 running tasks")
    dead = _agent_node(swarm, 3)
    began = time.monotonic()
    swarm.kill_agent(swarm.lab.machines[3])
    until(
        lambda: any(
            n["id"] == dead and n["state"] == "DOWN" for n in swarm.control(leader, "nodes")
        ),
        "the node DOWN",
    )
    down_after = time.monotonic() - began
    assert down_after < 1.0 * 3 + 3.0, down_after  # three missed 1 s periods, and some slack
    until(
        lambda: (
            len(running(swarm, leader, web)) == 4
            and dead not in {t["node_id"] for t in running(swarm, leader, web)}
        ),
        "the tasks rescheduled on the live node",
    )


def test_a_worker_certificate_cannot_call_control(swarm: SwarmCluster) -> None:
    leader, agent = swarm.lab.machines[0], swarm.lab.machines[3]
    target = f"tls:{agent.state_dir / 'fake-agent'}@{leader.record.ip}:4242"
    refused = swarm.control(agent, target, "services", expect_ok=False)
    assert refused["error"] == "PERMISSION_DENIED", refused


def test_leader_kill_during_writes_loses_no_acknowledged_write(swarm: SwarmCluster) -> None:
    leader, writer = swarm.lab.machines[0], swarm.lab.machines[1]
    tool = Path(__file__).with_name("control_tool.py")
    socket_path = swarm.state_dir(writer) / "swarmd.sock"
    burst = swarm.lab.run(
        writer,
        [sys.executable, str(tool), str(socket_path), "burst", "w", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert burst.stdout is not None
    acked: list[str] = []
    for line in burst.stdout:
        event = json.loads(line)
        if "acked" in event:
            acked.append(event["acked"])
            if len(acked) == 10:
                swarm.kill(leader)
    burst.wait(timeout=120)
    assert len(acked) >= 10

    # A follower's reads catch up once the new leader commits: wait for every acknowledged
    # write to show, however long the failover took (a lost write never shows).
    def listed() -> list[str] | None:
        names = swarm.control(writer, "services", expect_ok=False)
        if isinstance(names, list) and all(name in names for name in acked):
            return names
        return None

    names = until(listed, "every acknowledged write listed after the failover")
    assert len(names) == len(set(names))


def test_full_cluster_restart_keeps_the_state(swarm: SwarmCluster) -> None:
    managers = swarm.lab.machines[:3]
    web = swarm.control(managers[0], "create", "web", "3", "busybox:1")["id"]
    until(lambda: len(running(swarm, managers[0], web)) == 3, "3 running tasks")
    before = swarm.control(managers[0], "tasks", web)
    for machine in managers:
        swarm.kill(machine)
    for machine in managers:
        swarm.restart(machine)
    after = until(
        lambda: swarm.control(managers[1], "tasks", web, expect_ok=False),
        "tasks listed after the restart",
    )
    assert isinstance(after, list)
    assert {t["id"] for t in before} <= {t["id"] for t in after}
    assert swarm.control(managers[2], "services") == ["web"]
