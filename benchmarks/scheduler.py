"""Placements per second of Shoal's scheduler decision core, beside SwarmKit's published figure.

1,000 nodes (3 managers, 3 zones, 16 CPUs and 64 GiB each) and 100,000 PENDING tasks
(100 services x 1,000 replicas, each reserving 0.05 CPU and 64 MiB). Timed end to end:
building the node infos from the protobuf nodes, grouping the tasks, filtering and spreading.
Runs: unconstrained; half the services constrained to node.labels.zone==a and
node.role==worker; and (for information) every service spread over node.labels.zone.
SwarmKit's Go scheduler places 100k tasks on 1k nodes in 22.6 s (~4,425 tasks/s, published).

    .venv/bin/python benchmarks/scheduler.py [--nodes N] [--services S] [--replicas R] [--runs K]

Last line: placements_per_s=… placements_per_s_constrained=… vs_swarmkit=… (the ratio is
Shoal's unconstrained rate over SwarmKit's).
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import time
from collections import Counter

from manager.scheduler import Decisions, schedule
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

SWARMKIT_TASKS_PER_S = 100_000 / 22.6
ZONES = ("a", "b", "c")
MANAGERS = 3
GIB = 1 << 30
MIB = 1 << 20


def new_id(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=25))


def make_nodes(count: int, rng: random.Random) -> list[objects_pb2.Node]:
    nodes = []
    for i in range(count):
        node = objects_pb2.Node(id=new_id(rng))
        node.spec.annotations.name = f"node-{i}"
        node.spec.annotations.labels.update({"zone": ZONES[i % 3], "rack": f"r{i % 40}"})
        node.spec.availability = specs_pb2.NodeSpec.ACTIVE
        node.spec.membership = specs_pb2.NodeSpec.ACCEPTED
        node.role = types_pb2.MANAGER if i < MANAGERS else types_pb2.WORKER
        description = node.description
        description.hostname = f"node-{i}.cluster.example"
        description.platform.os = "linux"
        description.platform.architecture = "amd64"
        description.resources.nano_cpus = 16 * 10**9
        description.resources.memory_bytes = 64 * GIB
        description.engine.engine_version = "0.1.0"
        description.engine.labels.update({"storage": "ssd", "kernel": "6.1"})
        node.status.state = types_pb2.NodeStatus.READY
        node.status.addr = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        nodes.append(node)
    return nodes


def make_tasks(
    services: int, replicas: int, constrained: bool, spread: bool, rng: random.Random
) -> list[objects_pb2.Task]:
    tasks = []
    for s in range(services):
        service_id = new_id(rng)
        spec = specs_pb2.TaskSpec()
        spec.container.image = f"registry.example:5000/app{s}:1.{s % 7}"
        spec.container.args.extend(["serve", "--port", "8080"])
        spec.container.env.extend([f"SERVICE={s}", "LOG_LEVEL=info"])
        spec.resources.reservations.nano_cpus = 50_000_000
        spec.resources.reservations.memory_bytes = 64 * MIB
        spec.resources.limits.nano_cpus = 500_000_000
        spec.resources.limits.memory_bytes = 256 * MIB
        if constrained and s % 2 == 0:
            spec.placement.constraints.extend(["node.labels.zone==a", "node.role==worker"])
        if spread:
            spec.placement.preferences.add().spread.spread_descriptor = "node.labels.zone"
        for slot in range(1, replicas + 1):
            task = objects_pb2.Task(id=new_id(rng), service_id=service_id, slot=slot)
            task.spec.CopyFrom(spec)
            task.spec_version.index = 1000 + s
            task.meta.version = 2000 + s
            task.desired_state = types_pb2.RUNNING
            task.status.state = types_pb2.PENDING
            task.annotations.name = f"app{s}.{slot}"
            task.service_annotations.name = f"app{s}"
            tasks.append(task)
    return tasks


def check(decisions: Decisions, expected: int, nodes: int) -> Counter[str]:
    if decisions.unschedulable or len(decisions.assigned) != expected:
        raise SystemExit(
            f"expected {expected} placements, got {len(decisions.assigned)} "
            f"and {len(decisions.unschedulable)} unschedulable"
        )
    per_node = Counter(a.node_id for a in decisions.assigned)
    if len(per_node) > nodes:
        raise SystemExit("placements on unknown nodes")
    return per_node


def measure(label: str, args: argparse.Namespace, constrained: bool, spread: bool) -> float:
    rng = random.Random(7)
    nodes = make_nodes(args.nodes, rng)
    tasks = make_tasks(args.services, args.replicas, constrained, spread, rng)
    rates = []
    for _ in range(args.runs):
        started = time.perf_counter()
        decisions = schedule(nodes, tasks)
        elapsed = time.perf_counter() - started
        per_node = check(decisions, len(tasks), args.nodes)
        rates.append(len(tasks) / elapsed)
    rate = statistics.median(rates)
    print(
        f"{label:>13}: {len(tasks):,} tasks on {args.nodes:,} nodes: "
        f"{len(tasks) / rate:.2f} s, {rate:,.0f} placements/s "
        f"(median of {args.runs}; tasks per node {min(per_node.values())}.."
        f"{max(per_node.values())}; {rate / SWARMKIT_TASKS_PER_S:.1f}x SwarmKit)"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"SwarmKit (published): 100,000 tasks on 1,000 nodes in 22.6 s, "
        f"{SWARMKIT_TASKS_PER_S:,.0f} placements/s"
    )
    plain = measure("unconstrained", args, constrained=False, spread=False)
    constrained = measure("constrained", args, constrained=True, spread=False)
    measure("spread zone", args, constrained=False, spread=True)
    print(
        f"placements_per_s={plain:.0f} placements_per_s_constrained={constrained:.0f} "
        f"vs_swarmkit={plain / SWARMKIT_TASKS_PER_S:.2f}"
    )


if __name__ == "__main__":
    main()
