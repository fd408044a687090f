"""Managers as real processes on lab machines: a raft group over mutual TLS."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
