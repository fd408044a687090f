"""The whole stack: swarmd managers and workers with real agents and real containers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import SwarmCluster, real_swarm, until
from tests.integration.runtime.test_cli import SHOAL


@pytest.fixture
def swarm(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    cluster = SwarmCluster(make_lab(3), tmp_path)
    try:
        yield real_swarm(cluster, managers=1)  # a manager (with its own agent), 2 workers
    finally:
        cluster.stop_all()


def containers(swarm: SwarmCluster, machine: Machine) -> dict[str, int]:
    """Running containers of the node's engine: name -> pid."""
    env = {**swarm.lab.env(machine), "SHOAL_ROOT": str(swarm.state_dir(machine) / "engine")}
    proc = machine.popen([SHOAL, "ps", "--format", "json"], env, stdout=-1, text=True)
    out, _ = proc.communicate(timeout=30)
    return {c["Name"]: c["State"]["Pid"] for c in json.loads(out or "[]")}


def test_replicas_run_as_containers_and_survive_a_worker_swarmd_kill(
    swarm: SwarmCluster,
) -> None:
    manager, worker = swarm.lab.machines[0], swarm.lab.machines[1]
    image = f"{swarm.lab.registry}/busybox:latest"
    web = swarm.control(
        manager, "create", "web", "6", image, "httpd", "-f", "-p", "80", "-h", "/var/www"
    )["id"]

    def running() -> list[dict[str, Any]]:
        tasks = swarm.control(manager, "tasks", web)
        return [t for t in tasks if t["desired"] == "RUNNING" and t["state"] == "RUNNING"]

    tasks = until(lambda: len(running()) == 6 and running(), "6 running containers")
    assert sorted(Counter(t["node_id"] for t in tasks).values()) == [2, 2, 2]
    before = containers(swarm, worker)
    assert len(before) == 2 and all(name.startswith("web.") for name in before)

    swarm.kill(worker)  # kill -9 of the worker's swarmd: its containers keep running
    assert containers(swarm, worker) == before
    swarm.restart(worker, ready=r"session \S+ open")
    until(lambda: len(running()) == 6, "6 running after the restart")  # re-adopted, not restarted
    assert containers(swarm, worker) == before

    swarm.control(manager, "scale", web, "2")
    until(lambda: len(running()) == 2, "scaled down to 2")
    until(
        lambda: sum(len(containers(swarm, m)) for m in swarm.lab.machines) == 2,
        "only 2 containers left running",
    )
