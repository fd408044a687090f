"""Managers as real processes on lab machines: a raft group over mutual TLS."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import SWARMD, SwarmCluster


@pytest.fixture
def cluster(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    lab = make_lab(3)
    swarm = SwarmCluster(lab, tmp_path)
    try:
        yield swarm
    finally:
        swarm.stop_all()


def _leader_terms(swarm: SwarmCluster) -> list[tuple[str, int]]:
    found = []
    for name, daemon in swarm.daemons.items():
        found += [(name, int(t)) for t in re.findall(r"leader for term (\d+)", daemon.text())]
    return found


def test_three_managers_elect_a_new_leader_and_a_killed_one_rejoins(
    cluster: SwarmCluster,
) -> None:
    one, two, three = cluster.lab.machines
    cluster.init(one)
    cluster.join(two)
    cluster.join(three)
    assert _leader_terms(cluster) == [(one.name, 1)]

    began = time.monotonic()
    cluster.kill(one)
    deadline = time.monotonic() + 10
    while not [t for t in _leader_terms(cluster) if t[0] != one.name]:
        assert time.monotonic() < deadline, "no new leader after the leader was killed"
        time.sleep(0.02)
    failover = time.monotonic() - began
    assert failover < 5.0, failover

    restarted = cluster.restart(one)  # from its state dir: journal, peers, certificates
    assert "error" not in restarted.text().lower()
    key = (cluster.state_dir(one) / "certificates" / "node.key").stat().st_mode & 0o777
    assert key == 0o600


def test_a_wrong_or_rotated_token_cannot_join(cluster: SwarmCluster) -> None:
    one, two, _ = cluster.lab.machines
    cluster.init(one)
    real = cluster.tokens["managers"]
    forged = real[:-5] + ("00000" if not real.endswith("00000") else "11111")
    proc = cluster.lab.run(
        two,
        [
            SWARMD,
            "join",
            "-d",
            str(cluster.state_dir(two)),
            "--advertise-addr",
            two.record.ip,
            "--token",
            forged,
            "--no-run",
            cluster.join_address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert err.startswith("swarmd: error: ") and "Traceback" not in err
    assert "PERMISSION_DENIED" in err or "refused" in err.lower()
    assert not (cluster.state_dir(two) / "node.json").exists()


def test_five_managers_survive_two_leader_kills(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(5)
    swarm = SwarmCluster(lab, tmp_path)
    try:
        first, *others = lab.machines
        swarm.init(first)
        for machine in others:
            swarm.join(machine)
        alive = list(lab.machines)
        for kill in range(2):  # 5 -> 4 -> 3 members up: still a quorum of 5
            leader = _current_leader(swarm, alive)
            swarm.kill(leader)
            alive.remove(leader)
            writer = alive[0]
            name = f"svc{kill}"
            deadline = time.monotonic() + 30
            while not _try_create(swarm, writer, name):
                assert time.monotonic() < deadline, f"no write accepted after kill {kill + 1}"
                time.sleep(0.1)
        for machine in alive:
            deadline = time.monotonic() + 30
            while (names := _services(swarm, machine)) != ["svc0", "svc1"]:
                assert time.monotonic() < deadline, (machine.name, names)
                time.sleep(0.1)
    finally:
        swarm.stop_all()


def _current_leader(swarm: SwarmCluster, alive: list[Machine]) -> Machine:
    """The live manager that most recently became leader (highest term in its log)."""
    deadline = time.monotonic() + 30
    while True:
        terms = [
            (term, machine)
            for machine in alive
            for name, term in _leader_terms(swarm)
            if name == machine.name
        ]
        if terms:
            return max(terms, key=lambda found: found[0])[1]
        assert time.monotonic() < deadline, "no leader among the live managers"
        time.sleep(0.1)


def _try_create(swarm: SwarmCluster, machine: Machine, name: str) -> bool:
    answer = swarm.control(machine, "create", name, "0", "busybox", expect_ok=False)
    return isinstance(answer, dict) and "id" in answer


def _services(swarm: SwarmCluster, machine: Machine) -> object:
    return swarm.control(machine, "services", expect_ok=False)


def test_sigterm_stops_swarmd_cleanly_and_it_starts_again(cluster: SwarmCluster) -> None:
    one = cluster.lab.machines[0]
    daemon = cluster.init(one)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=15) == 0
    assert "stopped" in daemon.text()
    cluster.daemons.pop(one.name)
    again = cluster.restart(one)
    again.wait_for(r"leader for term")
