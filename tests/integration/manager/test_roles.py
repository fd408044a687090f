"""Demote, remove and renew on three real managers (swarmd processes in lab machines)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import (
    SwarmCluster,
    node,
    nodes,
    ok,
    swarmctl,
    write_accepted,
)
from tests.polling import until

RENEW_TOOL = Path(__file__).with_name("renew_tool.py")


@pytest.fixture
def cluster(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    lab = make_lab(3)
    swarm = SwarmCluster(lab, tmp_path)
    try:
        one, two, three = lab.machines
        swarm.init(one)
        swarm.join(two)
        swarm.join(three)
        until(lambda: _raft_members(swarm, one), "three raft members", holds=_count(3))
        yield swarm
    finally:
        swarm.stop_all()


def _count(wanted: int) -> Callable[[list[str]], bool]:
    return lambda found: len(found) == wanted


def _renew(swarm: SwarmCluster, machine: Machine, *managers: Machine) -> Any:
    """One certificate renewal by `machine`'s node (not saved): its node id and role."""
    process = swarm.lab.run(
        machine,
        [sys.executable, str(RENEW_TOOL), str(swarm.state_dir(machine))]
        + [_api(m) for m in managers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=60)
    assert out.strip(), err
    return json.loads(out.strip().splitlines()[-1])


def _role(swarm: SwarmCluster, machine: Machine, node_id: str) -> str:
    found: str = node(swarm, machine, node_id)["role"]
    return found


def _demoted(swarm: SwarmCluster, machine: Machine, node_id: str) -> bool:
    """A worker, and out of raft, as the manager on `machine` sees the node."""
    found = node(swarm, machine, node_id)
    return found["role"] == "WORKER" and not found["raft_addr"]


def _raft_members(swarm: SwarmCluster, machine: Machine) -> list[str]:
    return sorted(n["raft_addr"] for n in nodes(swarm, machine) if n["raft_addr"])


def _node_ids(swarm: SwarmCluster) -> dict[str, str]:
    """Machine name -> node id, while every machine is a raft member (joined nodes are
    known by their raft address)."""
    first = swarm.lab.machines[0]
    by_address = {n["raft_addr"]: n["id"] for n in nodes(swarm, first)}
    return {m.name: by_address[f"{m.record.ip}:4243"] for m in swarm.lab.machines}


def _api(machine: Machine) -> str:
    return f"{machine.record.ip}:4242"


def test_demoting_one_of_three_managers(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)
    before = _renew(cluster, three, one, two)
    assert before == {"node_id": ids[three.name], "role": "swarm-manager"}

    ok(cluster, one, "node", "demote", ids[three.name])
    until(
        lambda: _demoted(cluster, one, ids[three.name]),
        "three demoted to a worker and out of raft",
    )
    assert _raft_members(cluster, one) == sorted(f"{m.record.ip}:4243" for m in (one, two))
    until(lambda: write_accepted(cluster, two, "after-demotion"), "a write after demotion")

    renewed = _renew(cluster, three, one, two)
    assert renewed == {"node_id": ids[three.name], "role": "swarm-worker"}

    # Raft really has two members: with three stopped, removing two leaves one alone, which
    # raft refuses only if three (unreachable) were still a member.
    cluster.kill(three)
    ok(cluster, one, "node", "demote", ids[two.name])
    until(
        lambda: _role(cluster, one, ids[two.name]),
        "two demoted: raft had {one, two} only",
        holds=lambda role: role == "WORKER",
    )
    until(lambda: write_accepted(cluster, one, "one-alone"), "a write on one alone")


def test_demoting_below_quorum_is_refused_with_a_clear_message(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)
    cluster.kill(three)

    ok(cluster, one, "node", "demote", ids[two.name])

    refused = until(
        lambda: node(cluster, one, ids[two.name]),
        "a refusal message",
        holds=lambda found: found["message"],
    )
    assert refused["message"].startswith("demotion to worker is waiting: ")
    assert "would lose quorum" in refused["message"]
    assert refused["role"] == "MANAGER" and refused["raft_addr"]
    assert len(_raft_members(cluster, one)) == 3
    until(lambda: write_accepted(cluster, one, "still-writable"), "writes with quorum kept")


def test_removing_a_manager_through_control_removes_it_from_raft(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)

    running = swarmctl(cluster, two, "node", "rm", ids[three.name])
    assert running.code == 1
    assert "demote it to a worker before removing it" in running.err
    assert len(_raft_members(cluster, one)) == 3

    cluster.kill(three)
    until(
        lambda: swarmctl(cluster, two, "node", "rm", ids[three.name]),
        "the stopped manager removed (through a follower)",
        holds=lambda removed: removed.code == 0,
    )
    assert ids[three.name] not in {n["id"] for n in nodes(cluster, one)}
    # Raft has {one, two}: demoting two leaves one alone, a quorum of one.
    ok(cluster, one, "node", "demote", ids[two.name])
    until(
        lambda: _role(cluster, one, ids[two.name]),
        "two demoted once three left raft",
        holds=lambda role: role == "WORKER",
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
        two_id = next(n["id"] for n in nodes(swarm, one) if n["hostname"] == two.name)
        socket = swarm.state_dir(two) / "swarmd.sock"
        assert not socket.exists()

        ok(swarm, one, "node", "promote", two.name)
        daemon.wait_for(r"serving on", timeout_s=30)
        until(lambda: _raft_members(swarm, one), "two is a raft member", holds=_count(2))
        # Its manager answers Control on its own socket, and writes there reach the leader.
        assert {n["hostname"] for n in nodes(swarm, two)} == {one.name, two.name}
        until(lambda: write_accepted(swarm, two, "via-promoted"), "a write via two")
        assert (swarm.state_dir(two) / "raft").is_dir()

        ok(swarm, one, "node", "demote", two.name)
        until(lambda: not socket.exists(), "two's manager stopped")
        until(lambda: not (swarm.state_dir(two) / "raft").exists(), "two's raft state gone")
        assert _raft_members(swarm, one) == [f"{one.record.ip}:4243"]
        assert _demoted(swarm, one, two_id)
        # The same process goes on as a worker whose agent keeps its session; one alone
        # (raft of one) accepts writes.
        assert daemon.process.poll() is None
        until(
            lambda: node(swarm, one, two_id)["state"],
            "two ready as a worker",
            holds=lambda state: state == "READY",
        )
        until(lambda: write_accepted(swarm, one, "after-demotion"), "a write on one alone")
    finally:
        swarm.stop_all()


def test_the_demoted_leader_hands_over_and_goes_on_as_a_worker(cluster: SwarmCluster) -> None:
    one, two, three = cluster.lab.machines
    ids = _node_ids(cluster)
    leader = next(
        m
        for m in (one, two, three)
        if any(n["leader"] and n["hostname"] == m.name for n in nodes(cluster, one))
    )
    others = [m for m in (one, two, three) if m is not leader]
    daemon = cluster.daemons[leader.name]

    ok(cluster, others[0], "node", "demote", leader.name)
    until(
        lambda: _demoted(cluster, others[0], ids[leader.name]),
        "the old leader demoted and out of raft",
    )
    until(
        lambda: not (cluster.state_dir(leader) / "swarmd.sock").exists(),
        "the old leader's manager stopped",
    )
    assert daemon.process.poll() is None  # the same swarmd goes on, as a worker
    assert _raft_members(cluster, others[0]) == sorted(f"{m.record.ip}:4243" for m in others)
    until(lambda: write_accepted(cluster, others[1], "after-leader-demotion"), "a write")
    until(
        lambda: node(cluster, others[0], ids[leader.name])["state"],
        "the old leader READY as a worker",
        holds=lambda state: state == "READY",
    )


def test_an_old_certificate_of_a_demoted_then_removed_manager_is_refused(
    cluster: SwarmCluster, tmp_path: Path
) -> None:
    """A certificate stays valid for 90 days; the store decides: a demoted manager's old
    manager certificate no longer reaches Control, and once the node is removed from the
    cluster it reaches nothing at all."""
    one, _two, three = cluster.lab.machines
    ids = _node_ids(cluster)
    saved = tmp_path / "three-as-manager"
    shutil.copytree(cluster.state_dir(three) / "certificates", saved / "certificates")

    def control_with_saved() -> Any:
        return swarmctl(
            cluster, three, "--host", _api(one), "--tls-dir", str(saved), "node", "ls",
            local=False,
        )  # fmt: skip

    assert control_with_saved().code == 0  # a manager's certificate, while it is one

    ok(cluster, one, "node", "demote", ids[three.name])
    until(lambda: _demoted(cluster, one, ids[three.name]), "three demoted")
    demoted = control_with_saved()
    assert demoted.code == 1 and "is to be a swarm-worker now" in demoted.err, demoted

    cluster.kill(three)
    ok(cluster, one, "node", "rm", "--force", ids[three.name])
    removed = control_with_saved()
    assert removed.code == 1 and "was removed from the cluster" in removed.err, removed
