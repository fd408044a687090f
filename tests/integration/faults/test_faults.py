"""Raft under faults, on real swarmd managers in lab machines: clients read and write through
the Control API of every manager while managers are killed, cut off (both ways, one way, a
share of packets), flooded on their raft port, or run out of disk; the recorded history
must be linearizable (no acknowledged write lost, none applied twice, no stale read) and
every manager must end with the same registers.

Each run prints its seed (SHOAL_FAULT_SEED replays the same fault schedule) and the size of
its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from common import libc
from deploy.netns_driver import Machine
from shoal.v1 import control_pb2, control_pb2_grpc
from tests.integration.faults import faults
from tests.integration.faults.workload import Workload
from tests.integration.manager.swarm_cluster import SwarmCluster, write_accepted
from tests.linearizability import Operation, check
from tests.polling import until

RAFT_PORT = 4243
PAD_WRITES = 200


def seed() -> int:
    value = int(os.environ.get("SHOAL_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"fault seed: {value} (SHOAL_FAULT_SEED={value} replays it)")
    return value


def three_managers(cluster: SwarmCluster) -> list[Machine]:
    machines = list(cluster.lab.machines)
    cluster.init(machines[0])
    for machine in machines[1:]:
        cluster.join(machine)
    return machines


def sockets(cluster: SwarmCluster, machines: list[Machine]) -> list[Path]:
    return [cluster.state_dir(m) / "swarmd.sock" for m in machines]


async def leader_of(cluster: SwarmCluster, machines: list[Machine]) -> Machine | None:
    """The machine whose manager leads, as some manager that answers sees it."""
    for machine in machines:
        if machine.name not in cluster.daemons:
            continue
        path = cluster.state_dir(machine) / "swarmd.sock"
        async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
            try:
                listed = await control_pb2_grpc.ControlStub(channel).ListNodes(
                    control_pb2.ListNodesRequest(), timeout=3
                )
            except grpc.aio.AioRpcError:
                continue
        for node in listed.nodes:
            if node.manager_status.leader:
                return next((m for m in machines if m.name == node.description.hostname), None)
    return None


def verdict(workload: Workload, finals: list[dict[str, str | None]]) -> None:
    """The history, with each manager's final reading appended, must be linearizable."""
    history = list(workload.history)
    now = time.monotonic()
    for number, values in enumerate(finals):
        for key, value in values.items():
            history.append(Operation(f"final-{number}", key, "read", value, now, now, True))
            now += 1e-6
    writes = sum(1 for op in history if op.kind == "write")
    acknowledged = sum(1 for op in history if op.kind == "write" and op.ok)
    print(
        f"history: {len(history)} operations, {writes} writes ({acknowledged} acknowledged), "
        f"{len(workload.services)} registers"
    )
    result = check(history)
    assert result.ok, result.explanation
    assert all(values == finals[0] for values in finals), finals
    assert acknowledged > 0


@contextlib.asynccontextmanager
async def running(workload: Workload) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    clients = asyncio.create_task(workload.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await clients


async def _kills_and_partitions(cluster: SwarmCluster, rng: random.Random, rounds: int) -> None:
    machines = three_managers(cluster)
    workload = Workload(sockets(cluster, machines), keys=4, clients=6, rng=rng)
    try:
        await workload.create_registers()
        async with running(workload):
            for number in range(rounds):
                await asyncio.sleep(rng.uniform(0.5, 1.5))  # clients work between faults
                leader = await leader_of(cluster, machines) or rng.choice(machines)
                followers = [m for m in machines if m is not leader]
                fault = rng.choice(
                    ["kill-leader", "kill-follower", "isolate-leader", "one-way", "lossy",
                     "flood"]
                )  # fmt: skip
                print(f"round {number}: {fault} (leader {leader.name})")
                await asyncio.to_thread(_inject, cluster, fault, leader, followers, machines, rng)
        faults.heal(machines)
        await asyncio.to_thread(
            until,
            # A fresh name each try: a try that timed out may have created its service.
            lambda: all(
                write_accepted(cluster, m, f"healed-{m.name}-{time.monotonic_ns()}")
                for m in machines
            ),
            "every manager takes writes again",
            timeout_s=60,
        )
        verdict(workload, await workload.final_values())
    finally:
        await workload.close()


def _inject(
    cluster: SwarmCluster,
    fault: str,
    leader: Machine,
    followers: list[Machine],
    machines: list[Machine],
    rng: random.Random,
) -> None:
    """One fault, held for a moment, then healed (a killed manager restarted)."""
    hold = rng.uniform(1.0, 3.0)
    if fault.startswith("kill"):
        victim = leader if fault == "kill-leader" else rng.choice(followers)
        cluster.kill(victim)
        time.sleep(hold)  # the others carry on without it meanwhile
        cluster.restart(victim)
        return
    if fault == "isolate-leader":
        faults.isolate(leader, machines)
    elif fault == "one-way":
        faults.drop(leader, rng.choice(followers))
    elif fault == "lossy":
        for one in machines:
            for other in machines:
                if one is not other:
                    faults.drop(one, other, percent=30)
    if fault == "flood":
        with faults.flood(rng.choice(followers), f"{leader.record.ip}:{RAFT_PORT}", 64):
            time.sleep(hold)
        return
    time.sleep(hold)
    faults.heal(machines)


def test_kills_partitions_loss_and_floods_keep_the_history_linearizable(
    cluster: SwarmCluster,
) -> None:
    rng = random.Random(seed())
    asyncio.run(_kills_and_partitions(cluster, rng, rounds=10))


def test_a_full_disk_stops_one_manager_and_loses_nothing(cluster: SwarmCluster) -> None:
    """A manager whose raft disk fills stops with a clear error (never acknowledging what it
    could not write); the other two go on; given room again, it restarts from its log and
    catches up."""
    rng = random.Random(seed())
    one, two, three = cluster.lab.machines
    cluster.init(one)
    cluster.join(two)
    raft_dir = cluster.state_dir(three) / "raft"
    raft_dir.mkdir(parents=True)
    libc.mount("tmpfs", str(raft_dir), "tmpfs", 0, "size=1m,mode=0700")
    try:
        cluster.join(three)
        asyncio.run(_fill_then_recover(cluster, [one, two, three], three, raft_dir, rng))
    finally:
        with contextlib.suppress(OSError):
            libc.umount(str(raft_dir))


async def _fill_then_recover(
    cluster: SwarmCluster,
    machines: list[Machine],
    small: Machine,
    raft_dir: Path,
    rng: random.Random,
) -> None:
    workload = Workload(sockets(cluster, machines[:2]), keys=2, clients=4, rng=rng)
    try:
        await workload.create_registers()
        daemon = cluster.daemons[small.name]
        stub = control_pb2_grpc.ControlStub(workload._channels[0])
        for _ in range(PAD_WRITES):  # 32 KB each: the 1 MiB disk is full long before
            await _pad(stub, workload)
            if daemon.process.poll() is not None:
                break
        until(lambda: daemon.process.poll() is not None, "the full manager stops", timeout_s=30)
        assert "No space left on device" in daemon.text()
        cluster.daemons.pop(small.name)
        async with running(workload):
            await asyncio.sleep(3)  # writes go on with two managers
        libc.mount("tmpfs", str(raft_dir), "tmpfs", libc.MS_REMOUNT, "size=256m,mode=0700")
        cluster.restart(small)
        finals = Workload(sockets(cluster, machines), keys=0, clients=0, rng=rng)
        finals.services = workload.services
        try:
            await asyncio.to_thread(
                until,
                lambda: write_accepted(cluster, small, f"after-disk-full-{time.monotonic_ns()}"),
                "the restarted manager takes writes",
                timeout_s=60,
            )
            verdict(workload, await finals.final_values())
        finally:
            await finals.close()
    finally:
        await workload.close()


async def _pad(stub: control_pb2_grpc.ControlStub, workload: Workload) -> None:
    """Big labels on one register (not the checked label): a big raft entry."""
    key = sorted(workload.services)[0]
    found = await stub.GetService(
        control_pb2.GetServiceRequest(service_id=workload.services[key]), timeout=10
    )
    spec = found.service.spec
    for number in range(8):
        spec.annotations.labels[f"pad-{number}"] = os.urandom(2000).hex()
    await stub.UpdateService(
        control_pb2.UpdateServiceRequest(
            service_id=found.service.id, service_version=found.service.meta.version, spec=spec
        ),
        timeout=10,
    )
