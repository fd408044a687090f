"""A cluster for swarmctl: 3 real managers (init + 2 joins) and fake agents on 2 more machines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import SwarmCluster
from tests.integration.manager.test_cluster import until


@pytest.fixture
def swarm(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    """Ready once both fake agents are READY (managers may run agents of their own too)."""
    lab = make_lab(5)
    cluster = SwarmCluster(lab, tmp_path)
    managers, agents = lab.machines[:3], lab.machines[3:]
    try:
        cluster.init(managers[0])
        cluster.control(managers[0], "heartbeat", "1")  # agents learn it at their first beat
        for machine in managers[1:]:
            cluster.join(machine)
        for machine in agents:
            cluster.start_agent(machine, managers)
        until(
            lambda: (
                sum(
                    n["state"] == "READY" and n["hostname"].startswith("fake-")
                    for n in cluster.control(managers[0], "nodes")
                )
                == 2
            ),
            what="both fake agents READY",
        )
        yield cluster
    finally:
        cluster.stop_all()
