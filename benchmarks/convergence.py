"""Service convergence: `swarmctl service create --replicas N` until N tasks run, on a lab.

Three lab machines: one manager (which runs an agent too) and two workers, real containers
(busybox from the lab registry). For N = 1, 10, 50 it measures the time from the create
command until swarmctl reports N/N running (swarmctl waits for convergence), then the RSS of
the manager and of a worker's swarmd with 50 tasks running. Docker Swarm is compared when a
Docker daemon answers here (it does not on this VM: REFERENCE.md's figures, measured on this
kind of machine, are printed beside ours). The last line is key=value figures.

Run as root: `.venv/bin/python benchmarks/convergence.py`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from deploy.demo import BIN, TOKEN, on, sm, start_swarmd, wait_for

LAB = f"conv{os.getpid()}"
DOCKER_REFERENCE_S = {1: 0.5, 10: 1.45, 50: 5.3}  # REFERENCE.md section 6, Docker 20.10


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def swarmd_pid(state_dir: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(b"swarmd" in part for part in cmdline[:2]) and state_dir.encode() in cmdline:
                return int(entry.name)
    raise SystemExit(f"no swarmd for {state_dir}")


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    status = json.loads(sm("lab", "up", "--name", LAB, "--machines", "3", "--format", "json"))
    registry = status["registry"]
    machines = [m["name"] for m in status["machines"]]
    try:
        log = start_swarmd(machines[0], registry, "init")
        wait_for(log, r"serving on")
        tokens = {kind: (token, addr) for kind, token, addr in TOKEN.findall(log.read_text())}
        for worker in machines[1:]:
            token, address = tokens["workers"]
            wait_for(
                start_swarmd(worker, registry, "join", "--token", token, address),
                r"session \S+ open",
            )
        manager_state = json.loads(sm("inspect", machines[0]))["state_dir"]
        socket = f"{manager_state}/swarmd/swarmd.sock"
        image = f"{registry}/busybox:latest"

        def swarmctl(*args: str) -> None:
            on(machines[0], str(BIN / "swarmctl"), "-s", socket, *args)

        swarmctl("service", "create", "--name", "warm", "--replicas", "3", image, "sleep", "86400")
        swarmctl("service", "rm", "warm")  # images pulled on every node before timing
        figures: dict[str, float] = {}
        for n in (1, 10, 50):
            began = time.perf_counter()
            swarmctl(
                "service",
                "create",
                "--name",
                f"s{n}",
                "--replicas",
                str(n),
                image,
                "sleep",
                "86400",
            )
            figures[f"n{n}_s"] = time.perf_counter() - began
            if n != 50:
                swarmctl("service", "rm", f"s{n}")
        worker_state = json.loads(sm("inspect", machines[1]))["state_dir"]
        figures["manager_rss_mib"] = rss_mib(swarmd_pid(f"{manager_state}/swarmd"))
        figures["worker_rss_mib"] = rss_mib(swarmd_pid(f"{worker_state}/swarmd"))
    finally:
        sm("lab", "down", LAB, check=False)
    for n in (1, 10, 50):
        ours, docker = figures[f"n{n}_s"], DOCKER_REFERENCE_S[n]
        print(
            f"N={n:>2}: {ours:.2f} s to {n}/{n} running (Docker Swarm, REFERENCE.md: "
            f"{docker} s; ratio {ours / docker:.2f})"
        )
    print(
        f"RSS with 50 tasks: manager swarmd {figures['manager_rss_mib']:.0f} MiB, "
        f"worker swarmd {figures['worker_rss_mib']:.0f} MiB"
    )
    print(
        " ".join(
            [f"n{n}_s={figures[f'n{n}_s']:.2f}" for n in (1, 10, 50)]
            + [
                f"n{n}_vs_docker={figures[f'n{n}_s'] / DOCKER_REFERENCE_S[n]:.2f}"
                for n in (1, 10, 50)
            ]
            + [
                f"manager_rss_mib={figures['manager_rss_mib']:.0f}",
                f"worker_rss_mib={figures['worker_rss_mib']:.0f}",
            ]
        )
    )


if __name__ == "__main__":
    main()
