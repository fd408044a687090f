"""The real `swarmctl` console script inside lab machines, against 3 real managers and two fake
agents: create/ls/ps/scale/update/rollback converge, nodes list and drain, join tokens rotate,
errors are one line, a follower serves writes, and mutual TLS with a manager's identity works."""

from __future__ import annotations

import json

from tests.integration.manager.swarm_cluster import (
    SwarmCluster,
    ok,
    running,
    swarmctl,
    tasks,
)
from tests.polling import until

# Tasks go to the fake agents only: managers may run real agents, which would pull images.
ON_WORKERS = ("--constraint", "node.role==worker")


def test_services_and_nodes_through_swarmctl(swarm: SwarmCluster) -> None:
    leader, follower, third = swarm.lab.machines[:3]

    created = ok(
        swarm,
        follower,
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "4",
        "--restart-delay",
        "0s",
        *ON_WORKERS,
        "busybox:1",
    )
    assert created.err.strip().splitlines()[-1] == "web: 4/4 running"
    service_id = created.out.strip()

    rows = ok(swarm, leader, "service", "ls").out.splitlines()
    assert rows[0].split() == ["NAME", "MODE", "REPLICAS", "IMAGE", "ID"]
    assert rows[1].split() == ["web", "replicated", "4/4", "busybox:1", service_id]
    assert ok(swarm, leader, "service", "ls", "-q").out.split() == [service_id]

    ps = ok(swarm, leader, "service", "ps", "web").out.splitlines()
    assert ps[0].split()[:3] == ["ID", "NAME", "IMAGE"]
    assert sorted(line.split()[1] for line in ps[1:]) == ["web.1", "web.2", "web.3", "web.4"]
    assert all("Running" in line and "fake-" in line for line in ps[1:]), ps

    scaled = ok(swarm, third, "service", "scale", "web=6")
    assert scaled.err.strip().splitlines()[-1] == "web: 6/6 running"
    assert len(running(tasks(swarm, leader, "web"))) == 6

    updated = ok(
        swarm,
        follower,
        "service",
        "update",
        "web",
        "--image",
        "busybox:2",
        "--update-parallelism",
        "2",
        "--update-monitor",
        "500ms",
    )
    assert updated.err.strip().splitlines()[-1] == "web: 6/6 running"
    assert {t["spec"]["container"]["image"] for t in running(tasks(swarm, leader, "web"))} == {
        "busybox:2"
    }

    rolled = ok(swarm, leader, "service", "rollback", "web")
    assert rolled.err.strip().splitlines()[-1] == "web: 6/6 running"
    assert {t["spec"]["container"]["image"] for t in running(tasks(swarm, leader, "web"))} == {
        "busybox:1"
    }

    nodes = ok(swarm, leader, "node", "ls").out.splitlines()[1:]
    roles = sorted((line.split()[1].startswith("fake-"), line.split()[2]) for line in nodes)
    assert roles == [(False, "Manager")] * 3 + [(True, "Worker")] * 2, nodes
    assert sum(line.rstrip().endswith("Leader") for line in nodes) == 1, nodes

    agent_hostname = next(line.split()[1] for line in nodes if line.split()[1].startswith("fake-"))
    agent_id = json.loads(ok(swarm, leader, "node", "inspect", agent_hostname).out)[0]["id"]
    ok(swarm, follower, "node", "drain", agent_hostname)
    until(
        lambda: running(tasks(swarm, leader, "web")),
        "tasks off the drained node",
        holds=lambda live: len(live) == 6 and agent_id not in {t.get("node_id") for t in live},
    )
    drained = json.loads(ok(swarm, leader, "node", "inspect", agent_id).out)[0]
    assert drained["spec"]["availability"] == "DRAIN"


def test_cluster_tokens_errors_and_mutual_tls(swarm: SwarmCluster) -> None:
    leader, follower, third = swarm.lab.machines[:3]

    def worker_token() -> str:
        cluster = json.loads(ok(swarm, leader, "cluster", "inspect").out)
        token: str = cluster["root_ca"]["join_tokens"]["worker"]
        return token

    before = worker_token()
    ok(swarm, follower, "cluster", "update", "--rotate-join-token", "worker")
    after = until(worker_token, "the rotated token", holds=lambda token: token != before)
    assert after.startswith("SWMTKN-1-")

    unknown = swarmctl(swarm, leader, "service", "inspect", "nope")
    assert (unknown.code, unknown.err) == (1, "swarmctl: error: no such service: nope\n")
    ok(swarm, leader, "service", "create", "-d", "--name", "api", *ON_WORKERS, "busybox:1")
    bad = swarmctl(swarm, leader, "service", "update", "api", "--update-delay", "5x")
    assert bad.code == 1
    assert bad.err.startswith("swarmctl: error: invalid duration '5x'")
    assert bad.err.count("\n") == 1
    taken = swarmctl(swarm, follower, "service", "create", "-d", "--name", "api", "busybox:1")
    assert taken.code == 1 and taken.err.count("\n") == 1 and "api" in taken.err, taken

    remote = swarmctl(
        swarm,
        third,
        "--host",
        f"{leader.record.ip}:4242",
        "--tls-dir",
        str(swarm.state_dir(third)),
        "service",
        "ls",
        "-q",
        local=False,
    )
    assert remote.code == 0, remote.err
    assert len(remote.out.split()) == 1
    nowhere = swarmctl(
        swarm, third, "-s", str(swarm.state_dir(third) / "no.sock"), "node", "ls", local=False
    )
    assert nowhere.code == 1 and "cannot reach the manager at unix://" in nowhere.err
