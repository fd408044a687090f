"""Managers as real processes on lab machines: a raft group over mutual TLS."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc

from deploy.netns_driver import Machine
from shoal.v1 import control_pb2, control_pb2_grpc, specs_pb2
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import (
    SWARMD,
    SwarmCluster,
    service_names,
    write_accepted,
)
from tests.polling import until


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
    # Term 1 holds the new group's first entries; the first manager's election is term 2,
    # and the joins (learners, then promoted) never needed another.
    assert _leader_terms(cluster) == [(one.name, 2)]

    began = time.monotonic()
    cluster.kill(one)
    until(
        lambda: [t for t in _leader_terms(cluster) if t[0] != one.name],
        "a new leader after the leader was killed",
        timeout_s=10,
        interval_s=0.02,
    )
    failover = time.monotonic() - began
    assert failover < 5.0, failover

    restarted = cluster.restart(one)  # from its state dir: journal, peers, certificates
    assert "error" not in restarted.text().lower()
    key = (cluster.state_dir(one) / "certificates" / "node.key").stat().st_mode & 0o777
    assert key == 0o600


def test_a_write_through_one_manager_is_read_back_at_once_on_another(
    cluster: SwarmCluster,
) -> None:
    """Read-your-writes across managers: a service created through one manager (the leader,
    or a follower that forwards to it) is there when another manager is asked right after
    the create returns (Control's reads go through a raft read barrier; a follower would
    otherwise answer from a store that has not applied the write yet)."""
    one, two, three = cluster.lab.machines
    cluster.init(one)  # the leader
    cluster.join(two)
    cluster.join(three)
    asyncio.run(_write_then_read_elsewhere(cluster, one, two, three))


async def _write_then_read_elsewhere(
    cluster: SwarmCluster, leader: Machine, *followers: Machine
) -> None:
    sockets = [cluster.state_dir(m) / "swarmd.sock" for m in (leader, *followers)]
    channels = [grpc.aio.insecure_channel(f"unix://{path}") for path in sockets]
    try:
        on_leader, *on_followers = [control_pb2_grpc.ControlStub(c) for c in channels]
        # (writer, reader): leader -> follower, follower -> the other follower (the write
        # forwarded to the leader), follower -> leader.
        pairs = [
            (on_leader, on_followers[0]),
            (on_followers[0], on_followers[1]),
            (on_followers[1], on_leader),
        ]
        for round_ in range(10):
            for number, (writer, reader) in enumerate(pairs):
                spec = specs_pb2.ServiceSpec()
                spec.annotations.name = f"rw-{round_}-{number}"
                spec.task.container.image = "busybox"
                spec.replicated_service.replicas = 0  # no tasks: the service is all we read
                created = await writer.CreateService(
                    control_pb2.CreateServiceRequest(spec=spec), timeout=30
                )
                found = await reader.GetService(
                    control_pb2.GetServiceRequest(service_id=created.service.id), timeout=30
                )
                assert found.service.meta.version == created.service.meta.version
                listed = await reader.ListServices(control_pb2.ListServicesRequest(), timeout=30)
                assert spec.annotations.name in {s.spec.annotations.name for s in listed.services}
    finally:
        for channel in channels:
            await channel.close()


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


def test_five_managers_survive_two_leader_kills(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(5)
    swarm = SwarmCluster(lab, tmp_path)
    try:
        first, *others = lab.machines
        swarm.init(first)
        for machine in others:
            swarm.join(machine)
        alive = list(lab.machines)
        for kill in range(2):  # 5 -> 4 -> 3 members up: still a quorum of 5
            leader = _current_leader(swarm, alive)
            swarm.kill(leader)
            alive.remove(leader)
            writer = alive[0]
            until(
                partial(write_accepted, swarm, writer, f"svc{kill}"),
                f"a write accepted after kill {kill + 1}",
                timeout_s=30,
                interval_s=0.1,
            )
        for machine in alive:
            until(
                partial(service_names, swarm, machine),
                f"both services listed on {machine.name}",
                holds=lambda names: names == ["svc0", "svc1"],
                timeout_s=30,
                interval_s=0.1,
            )
    finally:
        swarm.stop_all()


def _current_leader(swarm: SwarmCluster, alive: list[Machine]) -> Machine:
    """The live manager that most recently became leader (highest term in its log)."""
    terms = until(
        lambda: [
            (term, machine)
            for machine in alive
            for name, term in _leader_terms(swarm)
            if name == machine.name
        ],
        "a leader among the live managers",
        timeout_s=30,
        interval_s=0.1,
    )
    return max(terms, key=lambda found: found[0])[1]


def test_sigterm_stops_swarmd_cleanly_and_it_starts_again(cluster: SwarmCluster) -> None:
    one = cluster.lab.machines[0]
    daemon = cluster.init(one)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=15) == 0
    assert "stopped" in daemon.text()
    cluster.daemons.pop(one.name)
    again = cluster.restart(one)
    again.wait_for(r"leader for term")


def test_force_new_cluster_recovers_a_lost_quorum_keeping_the_store(
    cluster: SwarmCluster,
) -> None:
    """Two of three managers lost for good: the survivor cannot write (no quorum). Stopped,
    `swarmd init --force-new-cluster` makes it the only member; it leads again with every
    service it had, takes writes, and a new manager joins it."""
    one, two, three = cluster.lab.machines
    cluster.init(one)
    cluster.join(two)
    cluster.join(three)
    until(lambda: write_accepted(cluster, one, "before"), "a write with three managers")
    cluster.kill(two)
    cluster.kill(three)
    assert not write_accepted(cluster, one, "no-quorum")
    cluster.kill(one)

    forced = subprocess.run(
        [SWARMD, "init", "-d", str(cluster.state_dir(one)), "--force-new-cluster", "--no-run"],
        env=cluster.lab.env(one),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert forced.returncode == 0, forced.stderr
    assert "only raft member" in forced.stdout
    restarted = cluster.restart(one)
    restarted.wait_for(r"leader for term")
    # The write refused for want of a quorum may be there: it was in the survivor's log,
    # and every entry it holds counts as committed now (never acknowledged, never lost).
    kept = service_names(cluster, one)
    assert kept is not None and "before" in kept and set(kept) <= {"before", "no-quorum"}
    until(lambda: write_accepted(cluster, one, "after"), "a write on the forced cluster")

    # Old members are out of raft; demoted and removed, a fresh manager joins the survivor.
    shutil.rmtree(cluster.state_dir(two))
    cluster.join(two)
    until(lambda: write_accepted(cluster, two, "with-a-new-manager"), "a write through two")
    assert service_names(cluster, two) == sorted([*kept, "after", "with-a-new-manager"])
