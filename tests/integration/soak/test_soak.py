"""The soak run (`make soak`, SHOAL_SOAK_MINUTES long; never in `make test`): three managers
with real agents, service churn with real containers and random faults for the whole time,
clients reading and writing registers through Control throughout. It must end with:
- every service converged, then all removed and no container left on any engine,
- the register history linearizable (tests/linearizability.py),
- the one manager never killed (faults spare it; partitions do not) flat in memory and
  descriptors: after the churn it holds no more than after its first minute, give or take
  (`RSS_GROWTH_MIB`, `FD_GROWTH`),
- nothing left on the host (the lab fixture's host snapshot: namespaces, mounts, cgroups).

Each run prints its seed (SHOAL_FAULT_SEED replays the same schedule) and history size.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from deploy.demo import program_pid
from deploy.netns_driver import Machine
from tests.integration.faults import faults
from tests.integration.faults.test_faults import running, seed, sockets, verdict
from tests.integration.faults.workload import Workload
from tests.integration.manager.swarm_cluster import (
    SwarmCluster,
    create,
    ok,
    real_swarm,
    swarmctl,
    tasks,
    write_accepted,
)
from tests.integration.manager.swarm_cluster import (
    running as running_tasks,
)
from tests.polling import until

MINUTES = float(os.environ.get("SHOAL_SOAK_MINUTES") or 0)
pytestmark = [
    pytest.mark.skipif(not MINUTES, reason="the soak runs with `make soak` only"),
    # The churn, then up to some 10 minutes to heal, converge and clear.
    pytest.mark.timeout(MINUTES * 60 + 900),
]

RSS_GROWTH_MIB = 40
FD_GROWTH = 40
MAX_SERVICES = 6


def usage(cluster: SwarmCluster, machine: Machine) -> tuple[float, int]:
    """RSS (MiB) and open descriptors of the swarmd on `machine`."""
    pid = program_pid("swarmd", str(cluster.state_dir(machine)))
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Churn:
    """Service changes and faults, one at a time, chosen by `rng`."""

    def __init__(self, cluster: SwarmCluster, rng: random.Random, spared: Machine) -> None:
        self.cluster = cluster
        self.rng = rng
        self.spared = spared
        self.machines = list(cluster.lab.machines)
        self.image = f"{cluster.lab.registry}/busybox:latest"
        self.services: set[str] = set()
        self.made = 0
        self.counts: dict[str, int] = {}

    def step(self) -> None:
        actions = ["create", "scale", "update", "remove", "kill", "partition", "lossy"]
        weights = [3, 3, 2, 2, 1, 1, 1]
        action = self.rng.choices(actions, weights)[0]
        self.counts[action] = self.counts.get(action, 0) + 1
        getattr(self, action)()

    def _via(self) -> Machine:
        return self.rng.choice([m for m in self.machines if m.name in self.cluster.daemons])

    def _try(self, *args: str) -> None:
        """A change through some manager; refused during a fault, it is simply not made."""
        swarmctl(self.cluster, self._via(), *args)

    def create(self) -> None:
        if len(self.services) >= MAX_SERVICES:
            return self.remove()
        self.made += 1
        name = f"soak-{self.made}"
        replicas = str(self.rng.randint(1, 3))
        self._try(
            "service", "create", "--detach", "--name", name, "--replicas", replicas,
            "--restart-delay", "0s", self.image, "sleep", "3600",
        )  # fmt: skip
        self.services.add(name)

    def scale(self) -> None:
        if self.services:
            name = self.rng.choice(sorted(self.services))
            self._try("service", "scale", "--detach", f"{name}={self.rng.randint(0, 4)}")

    def update(self) -> None:
        if self.services:
            name = self.rng.choice(sorted(self.services))
            self._try("service", "update", "--detach", "--env", f"ROUND={self.rng.random()}", name)

    def remove(self) -> None:
        if self.services:
            name = self.rng.choice(sorted(self.services))
            self._try("service", "rm", name)

    def kill(self) -> None:
        victim = self.rng.choice([m for m in self.machines if m is not self.spared])
        self.cluster.kill(victim)
        time.sleep(self.rng.uniform(0.5, 3))
        self.cluster.restart(victim)

    def partition(self) -> None:
        one = self.rng.choice(self.machines)
        faults.isolate(one, self.machines)
        time.sleep(self.rng.uniform(1, 3))
        faults.heal(self.machines)

    def lossy(self) -> None:
        for one in self.machines:
            for other in self.machines:
                if one is not other:
                    faults.drop(one, other, percent=30)
        time.sleep(self.rng.uniform(1, 3))
        faults.heal(self.machines)


def test_churn_and_faults_end_converged_with_nothing_leaked(cluster: SwarmCluster) -> None:
    rng = random.Random(seed())
    real_swarm(cluster, managers=3)
    spared = cluster.lab.machines[0]
    asyncio.run(_soak(cluster, rng, spared))


async def _soak(cluster: SwarmCluster, rng: random.Random, spared: Machine) -> None:
    machines = list(cluster.lab.machines)
    churn = Churn(cluster, rng, spared)
    workload = Workload(sockets(cluster, machines), keys=3, clients=3, rng=rng)
    try:
        await workload.create_registers()
        warm = create(cluster, spared, "soak-warm", 3, churn.image, "sleep", "3600")
        churn.services.add("soak-warm")
        assert warm
        await asyncio.sleep(min(60, MINUTES * 60 / 5))  # a first minute of ordinary work
        before = usage(cluster, spared)
        print(f"spared manager after warm-up: {before[0]:.0f} MiB, {before[1]} fds")
        end = time.monotonic() + MINUTES * 60
        async with running(workload):
            while time.monotonic() < end:
                await asyncio.to_thread(churn.step)
        print(f"churn: {churn.counts}")
        faults.heal(machines)
        for machine in machines:
            if machine.name not in cluster.daemons:
                cluster.restart(machine)
        await asyncio.to_thread(
            until,
            lambda: all(
                write_accepted(cluster, m, f"healed-{m.name}-{time.monotonic_ns()}")
                for m in machines
            ),
            "every manager takes writes again",
            timeout_s=120,
        )
        verdict(workload, await workload.final_values())
        await asyncio.to_thread(_converge_then_clear, cluster, spared)
        after = usage(cluster, spared)
        print(f"spared manager at the end: {after[0]:.0f} MiB, {after[1]} fds")
        assert after[0] <= before[0] + RSS_GROWTH_MIB, (before, after)
        assert after[1] <= before[1] + FD_GROWTH, (before, after)
    finally:
        await workload.close()


def _converge_then_clear(cluster: SwarmCluster, via: Machine) -> None:
    """Every churned service at 2 replicas, all running; then all removed, and every
    engine empty."""
    names = [
        s["spec"]["annotations"]["name"]
        for s in _services(cluster, via)
        if s["spec"]["annotations"]["name"].startswith("soak-")
    ]
    for name in names:
        ok(cluster, via, "service", "scale", "--detach", f"{name}=2")
    for name in names:
        until(
            functools.partial(_running_tasks, cluster, via, name),
            f"{name} converged at 2 running tasks",
            holds=lambda found: len(found) == 2,
            timeout_s=180,
        )
    for name in names:
        ok(cluster, via, "service", "rm", name)
    for machine in cluster.lab.machines:
        until(
            functools.partial(_containers, cluster, machine),
            f"no container left on {machine.name}",
            holds=lambda ids: ids == [],
            timeout_s=180,
        )


def _running_tasks(cluster: SwarmCluster, via: Machine, name: str) -> list[dict[str, Any]]:
    return running_tasks(tasks(cluster, via, name))


def _containers(cluster: SwarmCluster, machine: Machine) -> list[str]:
    return cluster.shoal(machine, "ps", "-a", "-q")[1].split()


def _services(cluster: SwarmCluster, via: Machine) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        ok(cluster, via, "service", "ls", "--format", "json").out
    )
    return found
