"""Demote, remove and renew on three real managers (swarmd processes in lab machines)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import SwarmCluster
from tests.integration.swarmctl.test_swarmctl import ok

ROLE_TOOL = Path(__file__).with_name("role_tool.py")


@pytest.fixture
def cluster(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    lab = make_lab(3)
    swarm = SwarmCluster(lab, tmp_path)
    try:
        one, two, three = lab.machines
        swarm.init(one)
        swarm.join(two)
        swarm.join(three)
        _until(lambda: len(_raft_members(swarm, one)) == 3, "three raft members recorded")
        yield swarm
    finally:
        swarm.stop_all()


def _until(condition: Callable[[], object], what: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.1)


def _tool(swarm: SwarmCluster, machine: Machine, target: str, *args: str) -> Any:
    process = swarm.lab.run(
        machine,
        [sys.executable, str(ROLE_TOOL), target, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=60)
    assert out.strip(), err
    return json.loads(out.strip().splitlines()[-1])


def _on(swarm: SwarmCluster, machine: Machine, *args: str) -> Any:
    """role_tool through `machine`'s Control socket."""
    return _tool(swarm, machine, str(swarm.state_dir(machine) / "swarmd.sock"), *args)


def _nodes(swarm: SwarmCluster, machine: Machine) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = swarm.control(machine, "nodes")
    return nodes


def _raft_members(swarm: SwarmCluster, machine: Machine) -> list[str]:
    return sorted(n["raft_addr"] for n in _nodes(swarm, machine) if n["raft_addr"])


def _node_ids(swarm: SwarmCluster) -> dict[str, str]:
    """Machine name -> node id, while every machine is a raft member (joined nodes are
    known by their raft address)."""
    first = swarm.lab.machines[0]
    by_address = {n["raft_addr"]: n["id"] for n in _nodes(swarm, first)}
    return {m.name: by_address[f"{m.record.ip}:4243"] for m in swarm.lab.machines}


def _api(machine: Machine) -> str:
    return f"{machine.record.ip}:4242"


def _write_accepted(swarm: SwarmCluster, machine: Machine, name: str) -> bool:
    answer = swarm.control(machine, "create", name, "0", "busybox", expect_ok=False)
    return isinstance(answer, dict) and "id" in answer


def test_demoting_one_of_three_managers(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)
    before = _tool(cluster, three, str(cluster.state_dir(three)), "renew", _api(one), _api(two))
    assert before == {"node_id": ids[three.name], "role": "swarm-manager"}

    assert _on(cluster, one, "demote", ids[three.name]) == {"ok": True}

    def demoted() -> bool:
        node = _on(cluster, one, "node", ids[three.name])
        return bool(node["role"] == "WORKER" and not node["raft_addr"])

    _until(demoted, "three demoted to a worker and out of raft")
    assert _raft_members(cluster, one) == sorted(f"{m.record.ip}:4243" for m in (one, two))
    _until(lambda: _write_accepted(cluster, two, "after-demotion"), "a write after demotion")

    renewed = _tool(cluster, three, str(cluster.state_dir(three)), "renew", _api(one), _api(two))
    assert renewed == {"node_id": ids[three.name], "role": "swarm-worker"}

    # Raft really has two members: with three stopped, removing two leaves one alone, which
    # raft refuses only if three (unreachable) were still a member.
    cluster.kill(three)
    assert _on(cluster, one, "demote", ids[two.name]) == {"ok": True}
    _until(
        lambda: _on(cluster, one, "node", ids[two.name])["role"] == "WORKER",
        "two demoted: raft had {one, two} only",
    )
    _until(lambda: _write_accepted(cluster, one, "one-alone"), "a write on one alone")


def test_demoting_below_quorum_is_refused_with_a_clear_message(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)
    cluster.kill(three)

    assert _on(cluster, one, "demote", ids[two.name]) == {"ok": True}

    _until(lambda: _on(cluster, one, "node", ids[two.name])["message"], "a refusal message")
    node = _on(cluster, one, "node", ids[two.name])
    assert node["message"].startswith("demotion to worker is waiting: ")
    assert "would lose quorum" in node["message"]
    assert node["role"] == "MANAGER" and node["raft_addr"]
    assert len(_raft_members(cluster, one)) == 3
    _until(lambda: _write_accepted(cluster, one, "still-writable"), "writes with quorum kept")


def test_removing_a_manager_through_control_removes_it_from_raft(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)

    running = _on(cluster, two, "remove", ids[three.name])
    assert running["error"] == "FAILED_PRECONDITION"
    assert "demote it to a worker before removing it" in running["details"]
    assert len(_raft_members(cluster, one)) == 3

    cluster.kill(three)
    _until(
        lambda: _on(cluster, two, "remove", ids[three.name]) == {"ok": True},
        "the stopped manager removed (through a follower)",
    )
    assert ids[three.name] not in {n["id"] for n in _nodes(cluster, one)}
    # Raft has {one, two}: demoting two leaves one alone, a quorum of one.
    assert _on(cluster, one, "demote", ids[two.name]) == {"ok": True}
    _until(
        lambda: _on(cluster, one, "node", ids[two.name])["role"] == "WORKER",
        "two demoted once three left raft",
    )


def test_a_worker_is_promoted_and_demoted_again_without_a_restart(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(2)
    swarm = SwarmCluster(lab, tmp_path)
    try:
        one, two = lab.machines
        swarm.init(one)
        daemon = swarm.join(two, role="workers")
        two_id = next(n["id"] for n in _nodes(swarm, one) if n["hostname"] == two.name)
        socket = swarm.state_dir(two) / "swarmd.sock"
        assert not socket.exists()

        ok(swarm, one, "node", "promote", two.name)  # the real swarmctl
        daemon.wait_for(r"serving on", deadline_s=30)
        _until(lambda: len(_raft_members(swarm, one)) == 2, "two is a raft member")
        # Its manager answers Control on its own socket, and writes there reach the leader.
        assert {n["hostname"] for n in _nodes(swarm, two)} == {one.name, two.name}
        _until(lambda: _write_accepted(swarm, two, "via-promoted"), "a write via two")
        assert (swarm.state_dir(two) / "raft").is_dir()

        ok(swarm, one, "node", "demote", two.name)
        _until(lambda: not socket.exists(), "two's manager stopped")
        _until(lambda: not (swarm.state_dir(two) / "raft").exists(), "two's raft state gone")
        assert _raft_members(swarm, one) == [f"{one.record.ip}:4243"]
        node = _on(swarm, one, "node", two_id)
        assert node["role"] == "WORKER" and not node["raft_addr"]
        # The same process goes on as a worker whose agent keeps its session; one alone
        # (raft of one) accepts writes.
        assert daemon.process.poll() is None
        _until(
            lambda: next(n for n in _nodes(swarm, one) if n["id"] == two_id)["state"] == "READY",
            "two ready as a worker",
        )
        _until(lambda: _write_accepted(swarm, one, "after-demotion"), "a write on one alone")
    finally:
        swarm.stop_all()


def test_the_demoted_leader_hands_over_and_goes_on_as_a_worker(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)
    leader = next(
        m
        for m in (one, two, three)
        if any(n["leader"] and n["hostname"] == m.name for n in cluster.control(one, "nodes"))
    )
    others = [m for m in (one, two, three) if m is not leader]
    daemon = cluster.daemons[leader.name]

    ok(cluster, others[0], "node", "demote", leader.name)

    def demoted() -> bool:
        node = _on(cluster, others[0], "node", ids[leader.name])
        return bool(node["role"] == "WORKER" and not node["raft_addr"])

    _until(demoted, "the old leader demoted and out of raft")
    _until(
        lambda: not (cluster.state_dir(leader) / "swarmd.sock").exists(),
        "the old leader's manager stopped",
    )
    assert daemon.process.poll() is None  # the same swarmd goes on, as a worker
    assert _raft_members(cluster, others[0]) == sorted(f"{m.record.ip}:4243" for m in others)
    _until(lambda: _write_accepted(cluster, others[1], "after-leader-demotion"), "a write")
    _until(
        lambda: any(
            n["id"] == ids[leader.name] and n["state"] == "READY"
            for n in cluster.control(others[0], "nodes")
        ),
        "the old leader READY as a worker",
    )
