"""Service convergence: `swarmctl service create --replicas N` until N tasks run, on a lab.

Three lab machines: one manager (which runs an agent too) and two workers, real containers
(busybox from the lab registry). For N = 1, 10, 50 it measures, several times, the time a
fresh swarmctl process takes from its start to reporting N/N running (it waits for
convergence), then the RSS of the manager and of a worker's swarmd with 50 tasks running.

The clock runs inside the manager's machine, around the swarmctl process alone, as a user
logged in there would see it: the start-up of `swarm-machine ssh` (the lab's way in, some
200 ms of Python of its own) is not part of what is measured. Each figure is the median of
the runs; the phases of each N (medians) come from the store's own timestamps (the same host
clock): swarmctl start-up and the create call, the orchestrator making the tasks, scheduling
to the last task RUNNING on its agent, and the status report until swarmctl noticed and
exited. Docker Swarm is compared when a Docker daemon answers here (it does not on this VM:
REFERENCE.md's figures, measured on this kind of machine, are printed beside ours). The last
line is key=value figures.

Run as root: `.venv/bin/python benchmarks/convergence.py [--runs K]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from deploy.demo import BIN, TOKEN, on, program_pid, sm, start_swarmd, wait_for

LAB = f"conv{os.getpid()}"
DOCKER_REFERENCE_S = {1: 0.5, 10: 1.45, 50: 5.3}  # REFERENCE.md section 6, Docker 20.10
SIZES = (1, 10, 50)
REMOVAL_TIMEOUT_S = 60.0
# Runs inside the machine: starts the command, prints wall-clock start and end (seconds).
TIMER = (
    "import subprocess, sys, time\n"
    "began = time.time()\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print(began, time.time())\n"
    "sys.exit(done.returncode)\n"
)
PHASES = ("start + create call", "tasks made", "scheduled .. last RUNNING", "reported + noticed")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def seconds(stamp: str) -> float:
    """An RFC 3339 timestamp of the store's JSON as POSIX seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Lab:
    def __init__(self, machine: str, socket: str) -> None:
        self.machine = machine
        self.socket = socket

    def swarmctl(self, *args: str) -> str:
        return on(self.machine, str(BIN / "swarmctl"), "-s", self.socket, *args)

    def timed_create(self, name: str, replicas: int, image: str) -> tuple[float, float]:
        """Wall-clock start and end of a `service create` that waits for convergence."""
        argv = [str(BIN / "swarmctl"), "-s", self.socket, "service", "create", "--name", name]
        argv += ["--replicas", str(replicas), "--stop-grace-period", "1s"]
        out = on(self.machine, sys.executable, "-c", TIMER, *argv, image, "sleep", "86400")
        began, ended = (float(word) for word in out.split()[-2:])
        return began, ended

    def phases(self, name: str, began: float, ended: float) -> tuple[float, ...]:
        """Seconds of each of PHASES for the converged service `name`."""
        service = json.loads(self.swarmctl("service", "inspect", name))[0]
        tasks = json.loads(self.swarmctl("service", "ps", name, "--format", "json"))
        created = seconds(service["meta"]["created_at"])
        tasks_made = max(seconds(t["meta"]["created_at"]) for t in tasks)
        last_running = max(seconds(t["status"]["timestamp"]) for t in tasks)
        return (
            created - began,
            tasks_made - created,
            last_running - tasks_made,
            ended - last_running,
        )

    def remove(self, name: str) -> None:
        """Remove the service and wait until its tasks are gone (their stops load the CPU)."""
        self.swarmctl("service", "rm", name)
        deadline = time.monotonic() + REMOVAL_TIMEOUT_S
        while self.swarmctl("task", "ls", "-q").strip():
            if time.monotonic() > deadline:
                raise SystemExit(f"the tasks of {name} were not removed in {REMOVAL_TIMEOUT_S} s")
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per N (the median counts)")
    runs = parser.parse_args().runs
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    status = json.loads(sm("lab", "up", "--name", LAB, "--machines", "3", "--format", "json"))
    registry = status["registry"]
    machines = [m["name"] for m in status["machines"]]
    totals: dict[int, list[float]] = {n: [] for n in SIZES}
    phases: dict[int, list[tuple[float, ...]]] = {n: [] for n in SIZES}
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
        lab = Lab(machines[0], f"{manager_state}/swarmd/swarmd.sock")
        image = f"{registry}/busybox:latest"
        lab.swarmctl(
            "service",
            "create",
            "--name",
            "warm",
            "--replicas",
            "3",
            "--stop-grace-period",
            "1s",
            image,
            "sleep",
            "86400",
        )
        lab.remove("warm")  # images pulled on every node before timing
        for run in range(runs):
            for n in SIZES:
                name = f"s{n}-{run}"
                began, ended = lab.timed_create(name, n, image)
                totals[n].append(ended - began)
                phases[n].append(lab.phases(name, began, ended))
                print(f"run {run + 1}, N={n}: {ended - began:.3f} s", flush=True)
                if not (n == SIZES[-1] and run == runs - 1):
                    lab.remove(name)
        worker_state = json.loads(sm("inspect", machines[1]))["state_dir"]
        manager_rss = rss_mib(program_pid("swarmd", f"{manager_state}/swarmd"))
        worker_rss = rss_mib(program_pid("swarmd", f"{worker_state}/swarmd"))
    finally:
        sm("lab", "down", LAB, check=False)
    figures = {n: statistics.median(totals[n]) for n in SIZES}
    for n in SIZES:
        ours, docker = figures[n], DOCKER_REFERENCE_S[n]
        spread = ", ".join(f"{t:.2f}" for t in totals[n])
        print(
            f"N={n:>2}: {ours:.2f} s to {n}/{n} running, median of {spread} (Docker Swarm, "
            f"REFERENCE.md: {docker} s; ratio {ours / docker:.2f})"
        )
        medians = [statistics.median(column) for column in zip(*phases[n], strict=True)]
        print("       " + "; ".join(f"{p} {m:.3f} s" for p, m in zip(PHASES, medians, strict=True)))
    print(
        f"RSS with 50 tasks: manager swarmd {manager_rss:.0f} MiB, "
        f"worker swarmd {worker_rss:.0f} MiB"
    )
    print(
        " ".join(
            [f"n{n}_s={figures[n]:.2f}" for n in SIZES]
            + [f"n{n}_vs_docker={figures[n] / DOCKER_REFERENCE_S[n]:.2f}" for n in SIZES]
            + [f"manager_rss_mib={manager_rss:.0f}", f"worker_rss_mib={worker_rss:.0f}"]
        )
    )


if __name__ == "__main__":
    main()
