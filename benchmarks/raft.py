"""Committed store writes per second on 3 managers and leader failover time.

Three manager processes (raft + store, tests/integration/manager/raft/raft_node.py) on
loopback ports, founding one group (node ids m1-m3, manager certificates from a throwaway
test CA, messages on mutual-TLS gRPC streams), each with its own log and snapshot on disk,
fsync on. Measures:
- writes_per_s_pipelined: store transactions committed at the leader with 256 in flight,
- writes_per_s_sync: the same, one at a time,
- failover: kill -9 the leader, time until a survivor acknowledges the next committed
  write; the killed manager is restarted from its data before the next round.

    .venv/bin/python benchmarks/raft.py [--kills 10] [--writes 20000]

Last line: failover_median_s=… failover_max_s=… writes_per_s_pipelined=…
writes_per_s_sync=…. etcd is not driven (it is not installed on these machines);
REFERENCE.md section 6 has its figures from this kind of machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.manager.raft.cluster import (
    NodeError,
    RaftCluster,
    RaftProcess,
    wait_until,
)
from tests.integration.manager.raft.raft_node import write_test_ca

BASE_PORT = 26100


def launch(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def writes_per_second(cluster: RaftCluster, count: int, inflight: int) -> float:
    def run() -> dict[str, float]:
        answer: dict[str, float] = cluster.leader().request(
            "bench", count=count, inflight=inflight, timeout=300
        )
        return answer

    answer = wait_until("a benchmark run", run, timeout=600)
    return count / float(answer["seconds"])


def time_to_next_write(cluster: RaftCluster, killed_at: float, key: str) -> float:
    """Poll the survivors with a write until one commits it."""
    deadline = killed_at + 30
    while time.monotonic() < deadline:
        for node in cluster.running():
            try:
                node.request("put", key=key, timeout=2)
            except (OSError, NodeError):
                continue
            return time.monotonic() - killed_at
        time.sleep(0.005)
    raise SystemExit("no write committed within 30 s of killing the leader")


def failovers(cluster: RaftCluster, kills: int) -> list[float]:
    times = []
    for round_number in range(kills):
        leader = cluster.leader()
        leader.kill()
        times.append(time_to_next_write(cluster, time.monotonic(), f"failover-{round_number}"))
        leader.restart()
        cluster.converged(timeout=60)
        print(f"  kill {round_number + 1}: {times[-1]:.3f} s", flush=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--writes", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-raft-bench-") as tmp:
        root = Path(tmp)
        ca_dir = root / "ca"
        write_test_ca(ca_dir)
        nodes = []
        for i in range(3):
            workdir = root / f"manager{i + 1}"
            workdir.mkdir()
            nodes.append(
                RaftProcess(f"m{i + 1}", f"127.0.0.1:{BASE_PORT + i}", workdir, launch, ca_dir)
            )
        cluster = RaftCluster(nodes)
        try:
            cluster.start()
            pipelined = writes_per_second(cluster, args.writes, inflight=256)
            print(f"pipelined (256 in flight): {pipelined:.0f} writes/s", flush=True)
            sync = writes_per_second(cluster, max(200, args.writes // 20), inflight=1)
            print(f"one at a time: {sync:.0f} writes/s", flush=True)
            print(f"failover over {args.kills} leader kills (kill -9 -> next committed write):")
            times = failovers(cluster, args.kills)
        finally:
            cluster.kill_all()
    figures = (
        f"failover_median_s={statistics.median(times):.3f} failover_max_s={max(times):.3f} "
        f"writes_per_s_pipelined={pipelined:.0f} writes_per_s_sync={sync:.0f}"
    )
    etcd = shutil.which("etcd")
    print(f"etcd: {etcd or 'not installed'}; this script measures Shoal only, no etcd ratios")
    print(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
