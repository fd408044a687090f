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
from tests.integration.manager.swarm_cluster import (
    HEARTBEAT_S,
    SwarmCluster,
    image,
    listed,
    nodes,
    ok,
    real_swarm,
    running,
    swarmctl,
    tasks,
    until_running,
)
from tests.integration.test_cluster_e2e import containers
from tests.polling import until


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
    (found,) = listed(cluster, machine, "service", "inspect", name)
    return found


def _node_state(cluster: SwarmCluster, machine: Machine, node_id: str) -> str | None:
    return {n["id"]: n["state"] for n in nodes(cluster, machine)}.get(node_id)


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
        lambda: _service(cluster, manager, "web"),
        "the update rolled back",
        holds=lambda s: s.get("update_status", {}).get("state") == "ROLLBACK_COMPLETED",
    )
    assert service["spec"]["task"]["container"]["image"].endswith("/busybox:latest")
    found = until_running(cluster, manager, "web", 6, "6/6")
    assert all(image(t).endswith("/busybox:latest") for t in found)
    failed = [t for t in tasks(cluster, manager, "web") if "no-such-tag" in json.dumps(t)]
    # The bad image failed where it was tried; none of its tasks is wanted running any more.
    assert any(t["status"].get("state") in ("REJECTED", "FAILED") for t in failed)
    assert all(t.get("desired_state") != "RUNNING" for t in failed)
    # At most `parallelism` tasks were replaced by the failing image before the rollback.
    assert len({t["slot"] for t in failed}) <= 2
    until(lambda: _all_containers(cluster, "web"), "6 containers running", holds=_equals(6))


def _equals(wanted: object) -> Callable[[object], bool]:
    return lambda seen: seen == wanted


def _set_link(machine: Machine, state: str) -> None:
    with netlink(machine.name) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state=state)


def test_a_worker_cut_off_is_replaced_and_stops_its_extra_replicas(
    cluster_of: Callable[[int, int], SwarmCluster],
) -> None:
    cluster = cluster_of(3, 1)
    manager, worker = cluster.lab.machines[0], cluster.lab.machines[2]
    worker_id = next(n["id"] for n in nodes(cluster, manager) if n["hostname"] == worker.name)
    _create(cluster, manager, "web", 6)
    on_worker = len(containers(cluster, worker))
    assert on_worker == 2

    _set_link(worker, "down")
    try:
        cut = time.monotonic()
        until(
            lambda: running(tasks(cluster, manager, "web")),
            "6 running away from the cut-off worker",
            holds=lambda r: len(r) == 6 and all(t["node_id"] != worker_id for t in r),
        )
        # DOWN after 3 missed heartbeats, then rescheduled and started: allow the start too.
        assert time.monotonic() - cut < 3 * HEARTBEAT_S + 6
        assert len(containers(cluster, worker)) == 2  # still running there, unreachable
    finally:
        _set_link(worker, "up")

    until(
        lambda: containers(cluster, worker), "the worker stops its old replicas", holds=_equals({})
    )
    until(lambda: _all_containers(cluster, "web"), "exactly 6 containers", holds=_equals(6))
    until(
        lambda: _node_state(cluster, manager, worker_id),
        "the worker READY again",
        holds=_equals("READY"),
    )
    assert len(running(tasks(cluster, manager, "web"))) == 6


def test_spread_update_through_a_leader_kill_and_scale(
    cluster_of: Callable[[int, int], SwarmCluster],
) -> None:
    cluster = cluster_of(5, 3)
    managers = cluster.lab.machines[:3]
    leader_name = until(
        lambda: next((n["hostname"] for n in nodes(cluster, managers[0]) if n["leader"]), None),
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

    until(updated, "the update under way", holds=lambda count: count >= 1)
    assert updated() < 6
    cluster.kill(leader)  # kill -9 of the leader's swarmd, mid-update

    until(updated, "all 6 tasks updated under the new leader", holds=_equals(6), timeout_s=90)
    until(
        lambda: _service(cluster, follower, "web").get("update_status", {}).get("state"),
        "the update recorded as completed",
        holds=_equals("COMPLETED"),
    )
    # The old leader comes back as a follower; its agent stops the replicas moved elsewhere.
    cluster.restart(leader)
    until(lambda: _all_containers(cluster, "web"), "6 containers in the cluster", holds=_equals(6))

    ok(cluster, follower, "service", "scale", "web=12")
    assert len(running(tasks(cluster, follower, "web"))) == 12
    worker = cluster.lab.machines[4]
    assert containers(cluster, worker)
    ok(cluster, follower, "node", "drain", worker.name)
    until(
        lambda: containers(cluster, worker),
        "the drained worker's containers gone",
        holds=_equals({}),
    )
    until(lambda: _all_containers(cluster, "web"), "12 containers elsewhere", holds=_equals(12))
    ok(cluster, leader, "service", "scale", "web=2")
    assert len(running(tasks(cluster, leader, "web"))) == 2
    until(lambda: _all_containers(cluster, "web"), "2 containers left", holds=_equals(2))
