"""Real `swarmd` processes on lab machines: init, join, kill -9, restart, read their logs;
and the real `swarmctl` run inside a machine, as a user there would, to drive them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.polling import until

SWARMD = str(Path(sys.executable).parent / "swarmd")
SHOAL = str(Path(sys.executable).parent / "shoal")
SWARMCTL = str(Path(sys.executable).parent / "swarmctl")
FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
TOKEN = re.compile(r"Join (workers|managers): +swarmd join --token (\S+) (\S+)")
# swarmctl's refusal of a write made on a version that changed meanwhile (the managers write
# nodes, services and the cluster object too): read again and retry, as a user would.
STALE = "update out of sequence"
STALE_RETRIES = 10


@dataclass
class Daemon:
    machine: Machine
    process: subprocess.Popen[Any]
    log: Path

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout_s: float = 30, after: int = 0) -> re.Match[str]:
        """The first match of `pattern` in the log past offset `after`."""

        def search() -> re.Match[str] | None:
            if match := re.search(pattern, self.text()[after:]):
                return match
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(
                    f"swarmd on {self.machine.name} exited ({code}):\n{self.text()}"
                )
            return None

        found = until(
            search,
            f"{pattern!r} in the log of {self.machine.name}",
            timeout_s=timeout_s,
            context=lambda: self.text()[-3000:],
        )
        assert found is not None
        return found


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

    def shoal(self, machine: Machine, *args: str) -> tuple[int, str]:
        """`shoal ARGS` on the engine of the machine's agent: exit code and standard output
        (its errors go to the test's own output)."""
        env = {**self.lab.env(machine), "SHOAL_ROOT": str(self.state_dir(machine) / "engine")}
        proc = machine.popen([SHOAL, *args], env, stdout=-1, text=True)
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out

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

    def _node_args(self, machine: Machine) -> list[str]:
        """What `swarmd init` and `join` take alike: the state dir, address and hostname."""
        return [
            "-d", str(self.state_dir(machine)), "--advertise-addr", machine.record.ip,
            "--hostname", machine.name,
        ]  # fmt: skip

    def init(self, machine: Machine) -> Daemon:
        daemon = self._start(machine, "init", *self._node_args(machine))
        daemon.wait_for(r"serving on")
        for kind, token, address in TOKEN.findall(daemon.text()):
            self.tokens[kind] = token
            self.join_address = address
        return daemon

    def join(self, machine: Machine, role: str = "managers") -> Daemon:
        daemon = self._start(
            machine,
            "join",
            *self._node_args(machine),
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


@dataclass
class Run:
    """A finished swarmctl: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


def swarmctl(cluster: SwarmCluster, machine: Machine, *args: str, local: bool = True) -> Run:
    """Runs swarmctl on `machine`, through its manager's unix socket unless `local` is False."""
    socket = ["-s", str(cluster.state_dir(machine) / "swarmd.sock")] if local else []
    process = cluster.lab.run(
        machine,
        [SWARMCTL, *socket, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    out, err = process.communicate(timeout=180)
    return Run(process.returncode, out, err)


def ok(cluster: SwarmCluster, machine: Machine, *args: str) -> Run:
    """swarmctl that must succeed (a write refused as stale is made again)."""
    for _ in range(STALE_RETRIES):
        run = swarmctl(cluster, machine, *args)
        if STALE not in run.err:
            break
    assert run.code == 0, (args, run.out, run.err)
    return run


def listed(cluster: SwarmCluster, machine: Machine, *args: str) -> list[dict[str, Any]]:
    """What `swarmctl ARGS --format json` (a list or an inspect) prints, as Control returns it:
    the proto's field names, default values (0, "", the first enum value) left out."""
    found: list[dict[str, Any]] = json.loads(ok(cluster, machine, *args).out)
    return found


def tasks(cluster: SwarmCluster, machine: Machine, service: str) -> list[dict[str, Any]]:
    return listed(cluster, machine, "service", "ps", service, "--format", "json")


def running(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks wanted RUNNING that are RUNNING."""
    return [
        t
        for t in found
        if t.get("desired_state") == "RUNNING" and t.get("status", {}).get("state") == "RUNNING"
    ]


def until_running(
    cluster: SwarmCluster, machine: Machine, service: str, count: int, what: str = ""
) -> list[dict[str, Any]]:
    """The `running` tasks of `service` once there are `count` of them."""
    return until(
        lambda: running(tasks(cluster, machine, service)),
        what or f"{count} running tasks",
        holds=lambda found: len(found) == count,
    )


def image(task: dict[str, Any]) -> str:
    found: str = task["spec"]["container"]["image"]
    return found


def node_view(node: dict[str, Any]) -> dict[str, Any]:
    """A node of `swarmctl node ls|inspect --format json`, flat and with its defaults."""
    return {
        "id": node["id"],
        "hostname": node.get("description", {}).get("hostname", ""),
        "role": node.get("role", "WORKER"),
        "desired_role": node.get("spec", {}).get("desired_role", "WORKER"),
        "state": node.get("status", {}).get("state", "UNKNOWN"),
        "message": node.get("status", {}).get("message", ""),
        "availability": node.get("spec", {}).get("availability", "ACTIVE"),
        "raft_addr": node.get("manager_status", {}).get("raft_addr", ""),
        "leader": node.get("manager_status", {}).get("leader", False),
    }


def nodes(cluster: SwarmCluster, machine: Machine) -> list[dict[str, Any]]:
    """Every node, as the manager on `machine` lists them (`node_view`)."""
    return [node_view(n) for n in listed(cluster, machine, "node", "ls", "--format", "json")]


def node(cluster: SwarmCluster, machine: Machine, node_id: str) -> dict[str, Any]:
    (found,) = listed(cluster, machine, "node", "inspect", node_id)
    return node_view(found)


def create(
    cluster: SwarmCluster, machine: Machine, name: str, replicas: int, image: str, *command: str
) -> str:
    """`swarmctl service create` without waiting (the tests follow convergence themselves),
    a restarted task starting again at once; returns the service id."""
    run = ok(
        cluster, machine, "service", "create", "--detach", "--name", name, "--replicas",
        str(replicas), "--restart-delay", "0s", image, *command,
    )  # fmt: skip
    return run.out.strip()


def write_accepted(cluster: SwarmCluster, machine: Machine, name: str) -> bool:
    """Whether the manager on `machine` takes a write now (creates service `name`, no
    replicas): it needs a raft leader with a quorum."""
    run = swarmctl(
        cluster, machine, "service", "create", "--detach", "--name", name, "--replicas", "0",
        "busybox",
    )  # fmt: skip
    return run.code == 0


def service_names(cluster: SwarmCluster, machine: Machine) -> list[str] | None:
    """The names of the services the manager on `machine` lists, or None if it cannot answer."""
    run = swarmctl(cluster, machine, "service", "ls", "--format", "json")
    if run.code != 0:
        return None
    return sorted(s["spec"]["annotations"]["name"] for s in json.loads(run.out))


HEARTBEAT_S = 1  # the heartbeat period of real_swarm's clusters


def real_swarm(cluster: SwarmCluster, managers: int) -> SwarmCluster:
    """swarmd on every machine of the lab: init on the first, heartbeat 1 s, the next
    `managers - 1` join as managers and the rest as workers (every node runs a real agent);
    returns once every node is READY."""
    first, *others = cluster.lab.machines
    cluster.init(first)
    ok(cluster, first, "cluster", "update", "--heartbeat-period", f"{HEARTBEAT_S}s")
    for index, machine in enumerate(others, start=1):
        cluster.join(machine, role="managers" if index < managers else "workers")
    until(
        lambda: [n["state"] for n in nodes(cluster, first)],
        "every node READY",
        holds=lambda states: states == ["READY"] * len(cluster.lab.machines),
    )
    return cluster


def three_managers_two_fake_agents(cluster: SwarmCluster, drain_managers: bool) -> None:
    """init + 2 manager joins on machines 1-3, fake agents on machines 4-5, heartbeat 1 s;
    returns once both fake agents are READY. The managers run real agents of their own:
    `drain_managers` keeps tasks (of images they could not pull) off them."""
    managers, agents = cluster.lab.machines[:3], cluster.lab.machines[3:]
    cluster.init(managers[0])
    # Agents learn the heartbeat period at their first beat.
    ok(cluster, managers[0], "cluster", "update", "--heartbeat-period", "1s")
    for machine in managers[1:]:
        cluster.join(machine)
    for machine in agents:
        cluster.start_agent(machine, managers)
    until(
        lambda: [
            n["state"] for n in nodes(cluster, managers[0]) if n["hostname"].startswith("fake-")
        ],
        "both fake agents READY",
        holds=lambda states: states == ["READY", "READY"],
    )
    if drain_managers:
        for found in nodes(cluster, managers[0]):
            if found["role"] == "MANAGER":
                ok(cluster, managers[0], "node", "drain", found["id"])
