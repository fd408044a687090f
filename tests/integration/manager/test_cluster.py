"""A cluster of real manager processes (3 managers) with fake agents on two more machines:
services converge, scale, update, roll back, move off drained and dead nodes; a leader kill
loses no acknowledged write; a full restart keeps everything; roles are enforced."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from deploy.netns_driver import Machine
from shoal.v1 import control_pb2, control_pb2_grpc, specs_pb2
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import (
    SwarmCluster,
    create,
    image,
    nodes,
    ok,
    service_names,
    swarmctl,
    tasks,
    three_managers_two_fake_agents,
    until_running,
)
from tests.integration.manager.swarm_cluster import running as running_of
from tests.polling import until


@pytest.fixture
def swarm(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    cluster = SwarmCluster(make_lab(5), tmp_path)
    try:
        three_managers_two_fake_agents(cluster, drain_managers=True)
        yield cluster
    finally:
        cluster.stop_all()


def running(swarm: SwarmCluster, at: Machine, service_id: str) -> list[dict[str, Any]]:
    return running_of(tasks(swarm, at, service_id))


def node_ids(swarm: SwarmCluster, at: Machine) -> dict[str, str]:
    return {n["hostname"]: n["id"] for n in nodes(swarm, at)}


def update_status(swarm: SwarmCluster, at: Machine, service_id: str) -> str | None:
    (service,) = json.loads(ok(swarm, at, "service", "inspect", service_id).out)
    state: str | None = service.get("update_status", {}).get("state")
    return state


def update_image(swarm: SwarmCluster, at: Machine, service_id: str, to: str, batch: int) -> None:
    """An update to image `to`, `batch` tasks at a time, rolled back if one fails."""
    ok(
        swarm, at, "service", "update", "--detach", service_id, "--image", to,
        "--update-parallelism", str(batch), "--update-failure-action", "rollback",
        "--update-monitor", "500ms",
    )  # fmt: skip


def test_services_converge_scale_update_roll_back_and_leave_drained_nodes(
    swarm: SwarmCluster,
) -> None:
    leader, follower = swarm.lab.machines[0], swarm.lab.machines[1]
    web = create(swarm, follower, "web", 6, "busybox:1")  # via a follower
    tasks_ = until_running(swarm, leader, web, 6)
    assert sorted(Counter(t["node_id"] for t in tasks_).values()) == [3, 3]  # spread
    assert sorted(int(t["slot"]) for t in tasks_) == [1, 2, 3, 4, 5, 6]  # uint64: a JSON string

    ok(swarm, leader, "service", "scale", "--detach", f"{web}=12")
    until_running(swarm, leader, web, 12)
    ok(swarm, leader, "service", "scale", "--detach", f"{web}=2")
    until(
        lambda: tasks(swarm, leader, web),
        "2 running tasks, and no more wanted running",
        holds=lambda found: (
            len(running_of(found)) == 2
            and len([t for t in found if t.get("desired_state") == "RUNNING"]) == 2
        ),
    )

    update_image(swarm, leader, web, "busybox:2", 2)
    until(
        lambda: running(swarm, leader, web),
        "the update",
        holds=lambda found: {image(t) for t in found} == {"busybox:2"} and len(found) == 2,
    )
    ok(swarm, leader, "service", "rollback", "--detach", web)
    until(
        lambda: running(swarm, leader, web),
        "the rollback",
        holds=lambda found: {image(t) for t in found} == {"busybox:1"} and len(found) == 2,
    )
    status = update_status(swarm, leader, web)
    assert status in ("ROLLBACK_COMPLETED", "ROLLBACK_STARTED"), status

    # A rollback requested while the next update is still in its monitor window.
    update_image(swarm, leader, web, "busybox:3", 1)
    ok(swarm, leader, "service", "rollback", "--detach", web)
    until(
        lambda: (
            update_status(swarm, leader, web),
            {image(t) for t in running(swarm, leader, web)},
        ),
        "the rollback of an update in progress",
        holds=lambda seen: seen == ("ROLLBACK_COMPLETED", {"busybox:1"}),
    )

    names = node_ids(swarm, leader)
    first_agent = names[f"fake-{_agent_node(swarm, 3)[:6]}"]
    ok(swarm, leader, "service", "scale", "--detach", f"{web}=4")
    until_running(swarm, leader, web, 4)
    ok(swarm, leader, "node", "drain", first_agent)
    until(
        lambda: running(swarm, leader, web),
        "tasks off the drained node",
        holds=lambda found: (
            len(found) == 4
            and bool({t["node_id"] for t in found} - {first_agent})
            and first_agent not in {t["node_id"] for t in found}
        ),
    )


def test_a_global_service_runs_one_task_on_every_node(swarm: SwarmCluster) -> None:
    """One task per ready node, each preassigned to its node (the managers here run no
    agent, so they are not ready)."""
    leader = swarm.lab.machines[0]
    ok(
        swarm, leader, "service", "create", "--detach", "--name", "everywhere", "--mode",
        "global", "busybox:1",
    )  # fmt: skip
    agents = {_agent_node(swarm, 3), _agent_node(swarm, 4)}
    until(
        lambda: running_of(tasks(swarm, leader, "everywhere")),
        "a running task on each agent's node",
        holds=lambda found: sorted(t["node_id"] for t in found) == sorted(agents),
    )


def test_a_node_with_more_than_4_mib_of_tasks_gets_them_all(swarm: SwarmCluster) -> None:
    """40 tasks of 240 KiB each (specs are at most 256 KiB) over 2 agents: each agent's
    set (about 4.8 MB) is past
    gRPC's default 4 MiB message limit, and so is the task list swarmctl reads. Both go
    through (chunked assignments, 128 MiB limits as SwarmKit's)."""
    leader = swarm.lab.machines[0]
    spec = specs_pb2.ServiceSpec()
    spec.annotations.name = "heavy"
    spec.task.container.image = "busybox:1"
    for part in range(2):  # an env entry is at most 128 Ki characters
        spec.task.container.env.append(f"PAYLOAD{part}=" + "x" * (120 << 10))
    spec.replicated_service.replicas = 40
    with grpc.insecure_channel(f"unix://{swarm.state_dir(leader) / 'swarmd.sock'}") as channel:
        control_pb2_grpc.ControlStub(channel).CreateService(
            control_pb2.CreateServiceRequest(spec=spec), timeout=30
        )
    found = until_running(swarm, leader, "heavy", 40, "40 heavy tasks running")
    assert len({t["node_id"] for t in found}) == 2


def _agent_node(swarm: SwarmCluster, index: int) -> str:
    """The node id of the fake agent on lab machine `index`, from its identity file."""
    state = swarm.lab.machines[index].state_dir / "fake-agent" / "node.json"
    node_id: str = json.loads(state.read_text())["node_id"]
    return node_id


def test_a_dead_node_s_tasks_are_rescheduled(swarm: SwarmCluster) -> None:
    leader = swarm.lab.machines[0]
    web = create(swarm, leader, "web", 4, "busybox:1")
    until_running(swarm, leader, web, 4)
    dead = _agent_node(swarm, 3)
    began = time.monotonic()
    swarm.kill_agent(swarm.lab.machines[3])
    until(
        lambda: {n["id"]: n["state"] for n in nodes(swarm, leader)}.get(dead),
        "the node DOWN",
        holds=lambda state: state == "DOWN",
    )
    down_after = time.monotonic() - began
    assert down_after < 1.0 * 3 + 3.0, down_after  # three missed 1 s periods, and some slack
    until(
        lambda: running(swarm, leader, web),
        "the tasks rescheduled on the live node",
        holds=lambda found: len(found) == 4 and dead not in {t["node_id"] for t in found},
    )


def test_a_worker_certificate_cannot_call_control(swarm: SwarmCluster) -> None:
    leader, agent = swarm.lab.machines[0], swarm.lab.machines[3]
    refused = swarmctl(
        swarm, agent, "--host", f"{leader.record.ip}:4242",
        "--tls-dir", str(agent.state_dir / "fake-agent"), "service", "ls", local=False,
    )  # fmt: skip
    assert refused.code == 1, refused
    assert refused.err.startswith("swarmctl: error: "), refused.err
    assert "is for swarm-manager only" in refused.err and "is a swarm-worker" in refused.err


def test_leader_kill_during_writes_loses_no_acknowledged_write(swarm: SwarmCluster) -> None:
    leader, writer = swarm.lab.machines[0], swarm.lab.machines[1]
    # Services created one after another through a follower's Control socket; the leader is
    # killed once 10 are acknowledged. A write refused or unanswered meanwhile is no loss.
    acked: list[str] = []
    socket_path = swarm.state_dir(writer) / "swarmd.sock"
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        control = control_pb2_grpc.ControlStub(channel)
        for number in range(60):
            spec = specs_pb2.ServiceSpec()
            spec.annotations.name = f"w-{number}"
            spec.task.container.image = "busybox"
            spec.replicated_service.replicas = 0
            try:
                control.CreateService(control_pb2.CreateServiceRequest(spec=spec), timeout=5)
            except grpc.RpcError:
                continue
            acked.append(spec.annotations.name)
            if len(acked) == 10:
                swarm.kill(leader)
    assert len(acked) >= 10

    # A follower's reads catch up once the new leader commits: wait for every acknowledged
    # write to show, however long the failover took (a lost write never shows).
    names = until(
        lambda: service_names(swarm, writer),
        "every acknowledged write listed after the failover",
        holds=lambda found: found is not None and all(name in found for name in acked),
    )
    assert names is not None and len(names) == len(set(names))


def test_full_cluster_restart_keeps_the_state(swarm: SwarmCluster) -> None:
    managers = swarm.lab.machines[:3]
    web = create(swarm, managers[0], "web", 3, "busybox:1")
    until_running(swarm, managers[0], web, 3)
    before = tasks(swarm, managers[0], web)
    for machine in managers:
        swarm.kill(machine)
    for machine in managers:
        swarm.restart(machine)

    def listed_after() -> list[dict[str, Any]] | None:
        run = swarmctl(swarm, managers[1], "service", "ps", web, "--format", "json")
        found: list[dict[str, Any]] | None = json.loads(run.out) if run.code == 0 else None
        return found

    after = until(listed_after, "tasks listed after the restart")
    assert after is not None
    assert {t["id"] for t in before} <= {t["id"] for t in after}
    assert service_names(swarm, managers[2]) == ["web"]
