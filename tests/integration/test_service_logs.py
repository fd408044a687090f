"""`swarmctl service logs` on a real cluster: two managers (the second a raft follower) and a
worker, each running a real agent, and a 3-replica busybox service printing lines. The logs
are gathered from every machine by the leader's broker, through the follower too; --tail,
-f (with Ctrl-C) and an unknown service are checked."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.integration.manager.swarm_cluster import (
    SWARMCTL,
    SwarmCluster,
    create,
    nodes,
    real_swarm,
    until_running,
)
from tests.polling import until

# One "hello" line, then a numbered tick every second.
PROGRAM = "echo hello-$HOSTNAME; i=0; while :; do i=$((i+1)); echo tick-$i; sleep 1; done"
# `logs.2.abc123def456@machine    | hello-...`
LINE = re.compile(r"^logs\.(\d)\.([0-9a-z]{12})@(\S+) +\| (.*)$")


@pytest.fixture
def swarm(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[SwarmCluster]:
    cluster = SwarmCluster(make_lab(3), tmp_path)
    try:
        yield real_swarm(cluster, managers=2)
    finally:
        cluster.stop_all()


def swarmctl(swarm: SwarmCluster, machine: Machine, *args: str) -> subprocess.Popen[str]:
    socket = str(swarm.state_dir(machine) / "swarmd.sock")
    return swarm.lab.run(
        machine,
        [SWARMCTL, "-s", socket, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finished(swarm: SwarmCluster, machine: Machine, *args: str) -> tuple[int, str, str]:
    process = swarmctl(swarm, machine, *args)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def parsed(out: str) -> list[tuple[int, str, str, str]]:
    """(slot, short task id, node, text) of every line; any other line fails the test."""
    lines = []
    for line in out.splitlines():
        match = LINE.match(line)
        assert match, f"not a log line: {line!r} in\n{out}"
        lines.append((int(match[1]), match[2], match[3], match[4]))
    return lines


def read_lines_until(
    process: subprocess.Popen[str], done: Callable[[list[str]], bool], timeout_s: float
) -> list[str]:
    """Lines of the process's stdout until `done(lines)`, or fail after `timeout_s`."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    buffered, lines = [""], list[str]()

    def read() -> list[str]:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536).decode()
            assert chunk or process.poll() is None, f"swarmctl exited early: {lines}"
            *complete, buffered[0] = (buffered[0] + chunk).split("\n")
            lines.extend(complete)
        return lines

    return until(read, "the lines awaited", holds=done, timeout_s=timeout_s, interval_s=0.001)


def test_service_logs_from_every_machine(swarm: SwarmCluster) -> None:
    leader, follower = swarm.lab.machines[:2]
    until(
        lambda: [n["state"] for n in nodes(swarm, leader)],
        "3 nodes ready",
        holds=lambda states: states == ["READY"] * 3,
    )
    image = f"{swarm.lab.registry}/busybox:latest"
    service_id = create(swarm, leader, "logs", 3, image, "sh", "-c", PROGRAM)
    found = until_running(swarm, leader, service_id, 3)
    hosts = {n["id"]: n["hostname"] for n in nodes(swarm, leader)}
    expected = {(int(t["slot"]), t["id"][:12], hosts[t["node_id"]]) for t in found}
    assert {node for _, _, node in expected} == {m.name for m in swarm.lab.machines}

    # Every task's first line, prefixed by its name and node, from the leader and a follower.
    for machine in (leader, follower):

        def hellos(machine: Machine = machine) -> set[tuple[int, str, str]]:
            code, out, err = finished(swarm, machine, "service", "logs", "logs")
            assert code == 0, err
            return {(s, t, n) for s, t, n, text in parsed(out) if text.startswith("hello-")}

        until(
            hellos,
            f"every task's hello line through {machine.name}",
            holds=lambda hello: hello == expected,
            timeout_s=20,
        )

    # --tail 1: one line per task, its latest tick.
    until(
        lambda: ticks_of(swarm, leader),
        "a second tick from every task",
        holds=lambda ticks: bool(ticks) and all(t > 1 for t in ticks),
    )
    code, out, err = finished(swarm, leader, "service", "logs", "--tail", "1", "logs")
    assert code == 0, err
    tail = parsed(out)
    assert sorted((s, t, n) for s, t, n, _ in tail) == sorted(expected)
    assert all(text.startswith("tick-") for *_, text in tail)

    # -f --tail 0 (on the follower): only lines written after it started, from every task,
    # until Ctrl-C, which ends it cleanly.
    process = swarmctl(swarm, follower, "service", "logs", "-f", "--tail", "0", "logs")
    try:

        def every_task(lines: list[str]) -> bool:
            return {(s, t, n) for s, t, n, _ in parsed("\n".join(lines))} == expected

        followed = parsed("\n".join(read_lines_until(process, every_task, timeout_s=20)))
        assert all(text.startswith("tick-") for *_, text in followed)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    code, out, err = finished(swarm, leader, "service", "logs", "nope")
    assert (code, out) == (1, "")
    assert err.strip() == "swarmctl: error: no such service: nope"


def ticks_of(swarm: SwarmCluster, machine: Machine) -> list[int]:
    """The latest tick number of each task (empty until every task has ticked)."""
    code, out, err = finished(swarm, machine, "service", "logs", "--tail", "1", "logs")
    assert code == 0, err
    ticks = [text for *_, text in parsed(out) if text.startswith("tick-")]
    return [int(t.removeprefix("tick-")) for t in ticks] if len(ticks) == 3 else []
