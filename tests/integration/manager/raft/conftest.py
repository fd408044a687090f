"""Raft clusters of raft_node.py processes, one per lab machine, killed after each test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.raft.cluster import Launcher, RaftCluster, RaftProcess
from tests.integration.manager.raft.raft_node import write_test_ca

RAFT_PORT = 4242


def _launcher(lab: LabHandle, machine: Machine) -> Launcher:
    def launch(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        return lab.run(machine, argv, stdout=log, stderr=subprocess.STDOUT)

    return launch


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """The test cluster's CA (root certificate and key, cluster id), from which each raft
    process issues its own manager certificate."""
    path = tmp_path / "ca"
    write_test_ca(path)
    return path


@pytest.fixture
def make_cluster(
    make_lab: Callable[[int], LabHandle], ca_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., RaftCluster]]:
    """make_cluster(machines, members=machines, compaction_min_entries=5000): a lab with
    one raft process prepared per machine, node ids m1, m2...; the first `members` are
    started as one group (bootstrapped), the others are left for the test to add."""
    made: list[RaftCluster] = []

    def factory(
        machines: int, members: int | None = None, compaction_min_entries: int = 5000
    ) -> RaftCluster:
        lab = make_lab(machines)
        nodes = []
        for number, machine in enumerate(lab.machines, start=1):
            workdir = tmp_path / machine.name
            workdir.mkdir()
            nodes.append(
                RaftProcess(
                    node_id=f"m{number}",
                    address=f"{machine.record.ip}:{RAFT_PORT}",
                    workdir=workdir,
                    launcher=_launcher(lab, machine),
                    ca_dir=ca_dir,
                    compaction_min_entries=compaction_min_entries,
                    netns=machine.name,
                )
            )
        cluster = RaftCluster(nodes)
        made.append(cluster)
        cluster.start(nodes[: members or machines])
        return cluster

    yield factory
    for cluster in made:
        cluster.kill_all()
