"""Raft through the API: committed writes per second and leader failover, Shoal's managers
beside a 3-member etcd (when installed: `make bench-peers`), on the same lab topology.

Three lab machines. Shoal: swarmd on each, a 3-manager cluster (mutual TLS between
managers, every raft write fsynced). etcd (the same machines, its defaults: 100 ms
heartbeats, 1 s election timeout, fsync on). One client program (benchmarks/peers/
kv_client.py: Python grpc.aio, unary calls) runs inside a lab machine against either:
Shoal's Control API on the leader (its unix socket: no TLS, as etcd's plain TCP here), etcd's
KV API on its leader. Measures, for each:
- writes_per_s_pipelined: writes committed with 64 in flight (Shoal: service creates),
- writes_per_s_sync: the same, one at a time,
- failover: kill -9 the leader, time until a write lands on a survivor (the client tries
  each in turn); the killed member is restarted from its data before the next round.

    .venv/bin/python benchmarks/raft.py [--kills 10] [--writes 4000]

Last line: failover_median_s=… failover_max_s=… writes_per_s_pipelined=… writes_per_s_sync=…
writes_vs_etcd=… sync_vs_etcd=… failover_vs_etcd=… peer=etcd|none (ratios Shoal over etcd:
above 1 is better for writes, below 1 for failover; `na` without etcd).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from deploy.demo import BIN, TOKEN, program_pid, sm, start_swarmd, wait_for
from shoal.v1 import control_pb2, control_pb2_grpc

LAB = f"raft{os.getpid()}"
CLIENT = Path(__file__).with_name("peers") / "kv_client.py"
INFLIGHT = 64
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380


@dataclass
class Machine:
    name: str
    address: str
    state: Path


@dataclass
class Figures:
    pipelined: float
    sync: float
    failovers: list[float]


def client(machine: Machine, *args: str) -> dict[str, float | str]:
    """kv_client.py inside `machine`; its JSON answer."""
    out = sm("ssh", machine.name, "--", sys.executable, str(CLIENT), *args)
    answer: dict[str, float | str] = json.loads(out.strip().splitlines()[-1])
    return answer


def throughput(machine: Machine, kind: str, target: str, count: int, inflight: int) -> float:
    prefix = f"w{inflight}-{time.monotonic_ns()}"
    answer = client(
        machine, kind, target, "--count", str(count), "--inflight", str(inflight),
        "--prefix", prefix,
    )  # fmt: skip
    return count / float(answer["seconds"])


def first_write_after(killed_at: float, machine: Machine, kind: str, targets: list[str]) -> float:
    name = f"failover-{time.monotonic_ns()}"
    answer = client(machine, kind, ",".join(targets), "--first-write", "--prefix", name)
    return float(answer["landed"]) - killed_at


# -- Shoal --------------------------------------------------------------------------------


def shoal_socket(machine: Machine) -> Path:
    return machine.state / "swarmd" / "swarmd.sock"


async def _shoal_leader(machines: list[Machine]) -> Machine | None:
    for machine in machines:
        async with grpc.aio.insecure_channel(f"unix://{shoal_socket(machine)}") as channel:
            try:
                nodes = await control_pb2_grpc.ControlStub(channel).ListNodes(
                    control_pb2.ListNodesRequest(), timeout=3
                )
            except grpc.aio.AioRpcError:
                continue
        for node in nodes.nodes:
            if node.manager_status.leader:
                return next(m for m in machines if m.name == node.description.hostname)
    return None


def shoal_leader(machines: list[Machine], timeout_s: float = 60) -> Machine:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if (leader := asyncio.run(_shoal_leader(machines))) is not None:
            return leader
        time.sleep(0.1)
    raise SystemExit("no Shoal leader")


def shoal(machines: list[Machine], registry: str, writes: int, kills: int) -> Figures:
    log = start_swarmd(machines[0].name, registry, "init")
    wait_for(log, r"serving on")
    tokens = {kind: (token, address) for kind, token, address in TOKEN.findall(log.read_text())}
    token, address = tokens["managers"]
    for machine in machines[1:]:
        joined = start_swarmd(machine.name, registry, "join", "--token", token, address)
        wait_for(joined, "serving on")
    leader = shoal_leader(machines)
    target = f"unix://{shoal_socket(leader)}"
    pipelined = throughput(leader, "shoal", target, writes, INFLIGHT)
    print(f"shoal: {pipelined:.0f} writes/s with {INFLIGHT} in flight", flush=True)
    sync = throughput(leader, "shoal", target, max(100, writes // 20), 1)
    print(f"shoal: {sync:.0f} writes/s one at a time", flush=True)
    times = []
    for round_number in range(kills):
        leader = shoal_leader(machines)
        os.kill(program_pid("swarmd", str(leader.state / "swarmd")), signal.SIGKILL)
        killed_at = time.time()
        others = [m for m in machines if m is not leader]
        sockets = [f"unix://{shoal_socket(m)}" for m in others]
        times.append(first_write_after(killed_at, others[0], "shoal", sockets))
        print(f"shoal: kill {round_number + 1}: {times[-1]:.3f} s", flush=True)
        wait_for(start_swarmd(leader.name, registry, "run"), "serving on")
    return Figures(pipelined, sync, times)


# -- etcd ---------------------------------------------------------------------------------


def etcd_start(machine: Machine, cluster: str, state: str) -> None:
    data = machine.state / "etcd"
    url = f"http://{machine.address}"
    command = (
        f"exec etcd --name {machine.name} --data-dir {data}"
        f" --listen-peer-urls {url}:{ETCD_PEER_PORT}"
        f" --initial-advertise-peer-urls {url}:{ETCD_PEER_PORT}"
        f" --listen-client-urls {url}:{ETCD_CLIENT_PORT}"
        f" --advertise-client-urls {url}:{ETCD_CLIENT_PORT}"
        f" --initial-cluster {cluster} --initial-cluster-state {state}"
        f" > {machine.state / 'etcd.log'} 2>&1"
    )
    subprocess.Popen(
        [str(BIN / "swarm-machine"), "ssh", machine.name, "--", "sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def etcd_targets(machines: list[Machine]) -> list[str]:
    return [f"{m.address}:{ETCD_CLIENT_PORT}" for m in machines]


def etcd(machines: list[Machine], writes: int, kills: int) -> Figures:
    cluster = ",".join(f"{m.name}=http://{m.address}:{ETCD_PEER_PORT}" for m in machines)
    for machine in machines:
        etcd_start(machine, cluster, "new")
    targets = etcd_targets(machines)
    first_write_after(time.time(), machines[0], "etcd", targets)  # up and electing

    def leader() -> Machine:
        endpoint = str(client(machines[0], "etcd", ",".join(targets), "--leader")["leader"])
        return next(m for m in machines if endpoint.startswith(m.address + ":"))

    target = f"{leader().address}:{ETCD_CLIENT_PORT}"
    pipelined = throughput(leader(), "etcd", target, writes, INFLIGHT)
    print(f"etcd: {pipelined:.0f} writes/s with {INFLIGHT} in flight", flush=True)
    sync = throughput(leader(), "etcd", target, max(100, writes // 20), 1)
    print(f"etcd: {sync:.0f} writes/s one at a time", flush=True)
    times = []
    for round_number in range(kills):
        victim = leader()
        os.kill(program_pid("etcd", f"{victim.state / 'etcd'}"), signal.SIGKILL)
        killed_at = time.time()
        others = [m for m in machines if m is not victim]
        times.append(first_write_after(killed_at, others[0], "etcd", etcd_targets(others)))
        print(f"etcd: kill {round_number + 1}: {times[-1]:.3f} s", flush=True)
        etcd_start(victim, cluster, "existing")
        first_write_after(time.time(), victim, "etcd", [f"{victim.address}:{ETCD_CLIENT_PORT}"])
    return Figures(pipelined, sync, times)


def stop_etcd(machines: list[Machine]) -> None:
    for machine in machines:
        with contextlib.suppress(SystemExit):  # not running
            os.kill(program_pid("etcd", f"{machine.state / 'etcd'}"), signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--keep", action="store_true", help="leave the lab up (to look)")
    args = parser.parse_args()
    status = json.loads(sm("lab", "up", "--name", LAB, "--machines", "3", "--format", "json"))
    machines = []
    for listed in status["machines"]:
        info = json.loads(sm("inspect", listed["name"]))
        machines.append(Machine(listed["name"], info["address"], Path(info["state_dir"])))
    peer = shutil.which("etcd")
    try:
        ours = shoal(machines, status["registry"], args.writes, args.kills)
        theirs = etcd(machines, args.writes, args.kills) if peer else None
    finally:
        stop_etcd(machines)
        if args.keep:
            print(f"lab {LAB} left up: swarm-machine lab down {LAB}")
        else:
            sm("lab", "down", LAB, check=False)
    median, worst = statistics.median(ours.failovers), max(ours.failovers)
    figures = [
        f"failover_median_s={median:.3f}",
        f"failover_max_s={worst:.3f}",
        f"writes_per_s_pipelined={ours.pipelined:.0f}",
        f"writes_per_s_sync={ours.sync:.0f}",
    ]
    if theirs is None:
        print("etcd: not installed (`make bench-peers`): no ratios")
        figures += ["writes_vs_etcd=na", "sync_vs_etcd=na", "failover_vs_etcd=na", "peer=none"]
    else:
        their_median = statistics.median(theirs.failovers)
        print(
            f"etcd: failover median {their_median:.3f} s, max {max(theirs.failovers):.3f} s; "
            f"{theirs.pipelined:.0f} writes/s pipelined, {theirs.sync:.0f} one at a time"
        )
        figures += [
            f"writes_vs_etcd={ours.pipelined / theirs.pipelined:.2f}",
            f"sync_vs_etcd={ours.sync / theirs.sync:.2f}",
            f"failover_vs_etcd={median / their_median:.2f}",
            "peer=etcd",
        ]
    print(" ".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
