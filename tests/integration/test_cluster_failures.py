"""Failures on the whole stack (swarmd managers and workers, real containers, real swarmctl):
a failing update rolls back, a worker cut off the network has its tasks rescheduled and stops
its extra replicas when it returns, and a leader killed during an update does not stop it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.netns_driver import Machine, netlink
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import HEARTBEAT_S, SwarmCluster, real_swarm, until
from tests.integration.swarmctl.test_swarmctl import ok, running, swarmctl, tasks
from tests.integration.test_cluster_e2e import containers


@pytest.fixture
def cluster_of(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> Iterator[Callable[[int, int], SwarmCluster]]:
    """cluster_of(machines, managers): the first `managers` machines managers (each with its
    agent), the others workers; all stopped after the test."""
    made: list[SwarmCluster] = []

    def make(machines: int, managers: int) -> SwarmCluster:
        made.append(SwarmCluster(make_lab(machines), tmp_path))
        return real_swarm(made[-1], managers)

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop_all()


def _service(cluster: SwarmCluster, machine: Machine, name: str) -> dict[str, Any]:
    (found,) = json.loads(ok(cluster, machine, "service", "inspect", name).out)
    assert isinstance(found, dict)
    return found


def _all_containers(cluster: SwarmCluster, prefix: str) -> int:
    """Running containers of service `prefix` on every machine (whatever the managers say)."""
    return sum(
        1
        for machine in cluster.lab.machines
        for name in containers(cluster, machine)
        if name.startswith(f"{prefix}.")
    )


def _create(cluster: SwarmCluster, machine: Machine, name: str, replicas: int) -> None:
    image = f"{cluster.lab.registry}/busybox:latest"
    ok(
        cluster, machine, "service", "create", "--name", name, "--replicas", str(replicas),
        "--stop-grace-period", "1s", image, "sleep", "3600",
    )  # fmt: skip


def test_a_failing_image_rolls_back_automatically(
    cluster_of: Callable[[int, int], SwarmCluster],
) -> None:
    cluster = cluster_of(3, 1)
    manager = cluster.lab.machines[0]
    _create(cluster, manager, "web", 6)
    before = {t["id"] for t in running(tasks(cluster, manager, "web"))}
    assert len(before) == 6

    update = swarmctl(
        cluster, manager, "service", "update", "--image",
        f"{cluster.lab.registry}/busybox:no-such-tag", "--update-parallelism", "2",
        "--update-failure-action", "rollback", "--update-monitor", "2s", "web",
    )  # fmt: skip

    assert update.code != 0, update.out
    last = update.err.strip().splitlines()[-1]
    assert last.startswith("swarmctl: error: web: 6/6 running; update rolled back due to"), last
    service = until(
        lambda: (
            (s := _service(cluster, manager, "web"))["update_status"]["state"]
            == "ROLLBACK_COMPLETED"
            and s
        ),
        "the update rolled back",
    )
    assert service["spec"]["task"]["container"]["image"].endswith("/busybox:latest")
    found = until(lambda: len(r := running(tasks(cluster, manager, "web"))) == 6 and r, "6/6")
    assert all(t["spec"]["container"]["image"].endswith("/busybox:latest") for t in found)
    failed = [t for t in tasks(cluster, manager, "web") if "no-such-tag" in json.dumps(t)]
    # The bad image failed where it was tried; none of its tasks is wanted running any more.
    assert any(t["status"].get("state") in ("REJECTED", "FAILED") for t in failed)
    assert all(t.get("desired_state") != "RUNNING" for t in failed)
    # At most `parallelism` tasks were replaced by the failing image before the rollback.
    assert len({t["slot"] for t in failed}) <= 2
    until(lambda: _all_containers(cluster, "web") == 6, "6 containers running")


def _set_link(machine: Machine, state: str) -> None:
    with netlink(machine.name) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state=state)


def test_a_worker_cut_off_is_replaced_and_stops_its_extra_replicas(
    cluster_of: Callable[[int, int], SwarmCluster],
) -> None:
    cluster = cluster_of(3, 1)
    manager, worker = cluster.lab.machines[0], cluster.lab.machines[2]
    worker_id = next(
        n["id"] for n in cluster.control(manager, "nodes") if n["hostname"] == worker.name
    )
    _create(cluster, manager, "web", 6)
    on_worker = len(containers(cluster, worker))
    assert on_worker == 2

    _set_link(worker, "down")
    try:
        cut = time.monotonic()
        until(
            lambda: (
                len(r := running(tasks(cluster, manager, "web"))) == 6
                and all(t["node_id"] != worker_id for t in r)
            ),
            "6 running away from the cut-off worker",
        )
        # DOWN after 3 missed heartbeats, then rescheduled and started: allow the start too.
        assert time.monotonic() - cut < 3 * HEARTBEAT_S + 6
        assert len(containers(cluster, worker)) == 2  # still running there, unreachable
    finally:
        _set_link(worker, "up")

    until(lambda: len(containers(cluster, worker)) == 0, "the worker stops its old replicas")
    until(lambda: _all_containers(cluster, "web") == 6, "exactly 6 containers in the cluster")
    until(
        lambda: any(
            n["id"] == worker_id and n["state"] == "READY"
            for n in cluster.control(manager, "nodes")
        ),
        "the worker READY again",
    )
    assert len(running(tasks(cluster, manager, "web"))) == 6


def test_spread_update_through_a_leader_kill_and_scale(
    cluster_of: Callable[[int, int], SwarmCluster],
) -> None:
    cluster = cluster_of(5, 3)
    managers = cluster.lab.machines[:3]
    leader_name = until(
        lambda: next(
            (n["hostname"] for n in cluster.control(managers[0], "nodes") if n["leader"]), None
        ),
        "a leader recorded",
    )
    leader = next(m for m in managers if m.name == leader_name)
    follower = next(m for m in managers if m is not leader)
    _create(cluster, follower, "web", 6)  # through a follower
    assert len({t["node_id"] for t in running(tasks(cluster, follower, "web"))}) >= 4

    ok(
        cluster, follower, "service", "update", "--env", "VERSION=2", "--update-parallelism",
        "2", "--update-delay", "1s", "--detach", "web",
    )  # fmt: skip

    def updated() -> int:
        return sum(
            "VERSION=2" in t["spec"]["container"].get("env", [])
            for t in running(tasks(cluster, follower, "web"))
        )

    until(lambda: updated() >= 1, "the update under way")
    assert updated() < 6
    cluster.kill(leader)  # kill -9 of the leader's swarmd, mid-update

    until(lambda: updated() == 6, "all 6 tasks updated under the new leader", deadline_s=90)
    until(
        lambda: _service(cluster, follower, "web")["update_status"].get("state") == "COMPLETED",
        "the update recorded as completed",
    )
    # The old leader comes back as a follower; its agent stops the replicas moved elsewhere.
    cluster.restart(leader)
    until(lambda: _all_containers(cluster, "web") == 6, "6 containers in the cluster")

    ok(cluster, follower, "service", "scale", "web=12")
    assert len(running(tasks(cluster, follower, "web"))) == 12
    worker = cluster.lab.machines[4]
    assert containers(cluster, worker)
    ok(cluster, follower, "node", "drain", worker.name)
    until(lambda: not containers(cluster, worker), "the drained worker's containers gone")
    until(lambda: _all_containers(cluster, "web") == 12, "12 containers on the other nodes")
    ok(cluster, leader, "service", "scale", "web=2")
    assert len(running(tasks(cluster, leader, "web"))) == 2
    until(lambda: _all_containers(cluster, "web") == 2, "2 containers left in the cluster")
