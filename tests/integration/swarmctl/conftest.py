"""A cluster for swarmctl: 3 real managers (init + 2 joins) and fake agents on 2 more machines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import SwarmCluster, three_managers_two_fake_agents


@pytest.fixture
def swarm(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    """Ready once both fake agents are READY (managers run agents of their own too)."""
    cluster = SwarmCluster(make_lab(5), tmp_path)
    try:
        three_managers_two_fake_agents(cluster, drain_managers=False)
        yield cluster
    finally:
        cluster.stop_all()
