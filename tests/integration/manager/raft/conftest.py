"""Raft clusters of raft_node.py processes, one per lab machine, killed after each test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.raft.cluster import Launcher, RaftCluster, RaftProcess

RAFT_PORT = 4242


def _launcher(lab: LabHandle, machine: Machine) -> Launcher:
    def launch(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        return lab.run(machine, argv, stdout=log, stderr=subprocess.STDOUT)

    return launch


@pytest.fixture
def cluster_key(tmp_path: Path) -> Path:
    path = tmp_path / "raft.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    return path


@pytest.fixture
def make_cluster(
    make_lab: Callable[[int], LabHandle], cluster_key: Path, tmp_path: Path
) -> Iterator[Callable[..., RaftCluster]]:
    """make_cluster(machines, members=machines, compaction_min_entries=5000,
    connection_timeout=3.5): a lab with one raft process prepared per machine; the first
    `members` are started as a group."""
    made: list[RaftCluster] = []

    def factory(
        machines: int,
        members: int | None = None,
        compaction_min_entries: int = 5000,
        connection_timeout: float = 3.5,
    ) -> RaftCluster:
        lab = make_lab(machines)
        nodes = []
        for machine in lab.machines:
            workdir = tmp_path / machine.name
            workdir.mkdir()
            nodes.append(
                RaftProcess(
                    address=f"{machine.record.ip}:{RAFT_PORT}",
                    workdir=workdir,
                    launcher=_launcher(lab, machine),
                    key_file=cluster_key,
                    compaction_min_entries=compaction_min_entries,
                    connection_timeout=connection_timeout,
                    netns=machine.name,
                )
            )
        cluster = RaftCluster(nodes)
        made.append(cluster)
        RaftCluster(nodes[: members or machines]).start()
        return cluster

    yield factory
    for cluster in made:
        cluster.kill_all()
