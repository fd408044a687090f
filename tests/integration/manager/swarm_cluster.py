"""Real `swarmd` processes on lab machines: init, join, kill -9, restart, read their logs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle

SWARMD = str(Path(sys.executable).parent / "swarmd")
CONTROL_TOOL = Path(__file__).with_name("control_tool.py")
FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
TOKEN = re.compile(r"Join (workers|managers): +swarmd join --token (\S+) (\S+)")


@dataclass
class Daemon:
    machine: Machine
    process: subprocess.Popen[Any]
    log: Path

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, deadline_s: float = 30, after: int = 0) -> re.Match[str]:
        """The first match of `pattern` in the log past offset `after`."""
        deadline = time.monotonic() + deadline_s
        while True:
            if match := re.search(pattern, self.text()[after:]):
                return match
            if self.process.poll() is not None:
                raise AssertionError(f"swarmd on {self.machine.name} exited:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {pattern!r} in the log of {self.machine.name}:\n{self.text()[-3000:]}"
                )
            time.sleep(0.05)


@dataclass
class SwarmCluster:
    lab: LabHandle
    logs: Path
    daemons: dict[str, Daemon] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    agents: dict[str, tuple[subprocess.Popen[Any], Path]] = field(default_factory=dict)
    join_address: str = ""

    def state_dir(self, machine: Machine) -> Path:
        return machine.state_dir / "swarmd"

    def _start(self, machine: Machine, *args: str) -> Daemon:
        log = self.logs / f"{machine.name}-{len(self.daemons)}-{int(time.time() * 1000)}.log"
        out: IO[Any] = open(log, "w")  # noqa: SIM115 - the daemon writes it while it runs
        env = {**self.lab.env(machine), "SHOAL_INSECURE_REGISTRIES": self.lab.registry}
        process = machine.popen(
            [SWARMD, *args], env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        out.close()
        daemon = Daemon(machine, process, log)
        self.daemons[machine.name] = daemon
        return daemon

    def init(self, machine: Machine) -> Daemon:
        daemon = self._start(
            machine,
            "init",
            "-d",
            str(self.state_dir(machine)),
            "--advertise-addr",
            machine.record.ip,
            "--hostname",
            machine.name,
        )
        daemon.wait_for(r"serving on")
        for kind, token, address in TOKEN.findall(daemon.text()):
            self.tokens[kind] = token
            self.join_address = address
        return daemon

    def join(self, machine: Machine, role: str = "managers") -> Daemon:
        daemon = self._start(
            machine,
            "join",
            "-d",
            str(self.state_dir(machine)),
            "--advertise-addr",
            machine.record.ip,
            "--hostname",
            machine.name,
            "--token",
            self.tokens[role],
            self.join_address,
        )
        daemon.wait_for(r"serving on" if role == "managers" else r"session \S+ open")
        return daemon

    def restart(self, machine: Machine, ready: str = r"serving on") -> Daemon:
        daemon = self._start(machine, "run", "-d", str(self.state_dir(machine)))
        daemon.wait_for(ready)
        return daemon

    def control(self, machine: Machine, *args: str, expect_ok: bool = True) -> Any:
        """Run the Control test client on `machine` (its manager's unix socket by default)."""
        target = (
            args[0]
            if args and args[0].startswith("tls:")
            else str(self.state_dir(machine) / "swarmd.sock")
        )
        rest = args[1:] if args and args[0].startswith("tls:") else args
        process = self.lab.run(
            machine,
            [sys.executable, str(CONTROL_TOOL), target, *rest],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = process.communicate(timeout=60)
        if expect_ok:
            assert process.returncode == 0, (args, out, err)
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else None

    def start_agent(self, machine: Machine, managers: list[Machine]) -> subprocess.Popen[Any]:
        """A fake agent on `machine`, joined as a worker, that knows `managers`."""
        log = self.logs / f"agent-{machine.name}-{int(time.time() * 1000)}.log"
        out: IO[Any] = open(log, "w")  # noqa: SIM115 - the agent writes it while it runs
        apis = ",".join(f"{m.record.ip}:4242" for m in managers)
        process = self.lab.run(
            machine,
            [
                sys.executable,
                str(FAKE_AGENT),
                str(machine.state_dir / "fake-agent"),
                self.join_address,
                self.tokens["workers"],
                apis,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        self.agents[machine.name] = (process, log)
        return process

    def kill_agent(self, machine: Machine) -> None:
        process, _ = self.agents.pop(machine.name)
        process.kill()
        process.wait(timeout=10)

    def kill(self, machine: Machine) -> None:
        daemon = self.daemons.pop(machine.name)
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)

    def stop_all(self) -> None:
        for process, _ in self.agents.values():
            process.kill()
            process.wait(timeout=10)
        self.agents.clear()
        for daemon in self.daemons.values():
            daemon.process.kill()
            daemon.process.wait(timeout=10)
        self.daemons.clear()


def until(check: Callable[[], Any], what: str, deadline_s: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy (returned), or fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


HEARTBEAT_S = 1  # the heartbeat period of real_swarm's clusters


def real_swarm(cluster: SwarmCluster, managers: int) -> SwarmCluster:
    """swarmd on every machine of the lab: init on the first, heartbeat 1 s, the next
    `managers - 1` join as managers and the rest as workers (every node runs a real agent);
    returns once every node is READY."""
    first, *others = cluster.lab.machines
    cluster.init(first)
    cluster.control(first, "heartbeat", str(HEARTBEAT_S))
    for index, machine in enumerate(others, start=1):
        cluster.join(machine, role="managers" if index < managers else "workers")

    def all_ready() -> bool:
        nodes = cluster.control(first, "nodes")
        return len(nodes) == len(cluster.lab.machines) and all(n["state"] == "READY" for n in nodes)

    until(all_ready, "every node READY")
    return cluster


def three_managers_two_fake_agents(cluster: SwarmCluster, drain_managers: bool) -> None:
    """init + 2 manager joins on machines 1-3, fake agents on machines 4-5, heartbeat 1 s;
    returns once both fake agents are READY. The managers run real agents of their own:
    `drain_managers` keeps tasks (of images they could not pull) off them."""
    managers, agents = cluster.lab.machines[:3], cluster.lab.machines[3:]
    cluster.init(managers[0])
    cluster.control(managers[0], "heartbeat", "1")  # agents learn it at their first beat
    for machine in managers[1:]:
        cluster.join(machine)
    for machine in agents:
        cluster.start_agent(machine, managers)

    def fake_agents_ready() -> bool:
        nodes = cluster.control(managers[0], "nodes")
        fakes = [n for n in nodes if n["hostname"].startswith("fake-")]
        return len(fakes) == 2 and all(n["state"] == "READY" for n in fakes)

    until(fake_agents_ready, what="both fake agents READY")
    if drain_managers:
        for node in cluster.control(managers[0], "nodes"):
            if node["role"] == "MANAGER":
                cluster.control(managers[0], "drain", node["id"])
