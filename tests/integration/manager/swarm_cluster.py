"""Real `swarmd` processes on lab machines: init, join, kill -9, restart, read their logs."""

from __future__ import annotations

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

SWARMD = str(Path(sys.executable).parent / "swarmd")
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
    join_address: str = ""

    def state_dir(self, machine: Machine) -> Path:
        return machine.state_dir / "swarmd"

    def _start(self, machine: Machine, *args: str) -> Daemon:
        log = self.logs / f"{machine.name}-{len(self.daemons)}-{int(time.time() * 1000)}.log"
        out: IO[Any] = open(log, "w")  # noqa: SIM115 - the daemon writes it while it runs
        process = self.lab.run(
            machine,
            [SWARMD, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
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
        daemon.wait_for(r"serving on")
        return daemon

    def restart(self, machine: Machine) -> Daemon:
        daemon = self._start(machine, "run", "-d", str(self.state_dir(machine)))
        daemon.wait_for(r"serving on")
        return daemon

    def kill(self, machine: Machine) -> None:
        daemon = self.daemons.pop(machine.name)
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)

    def stop_all(self) -> None:
        for daemon in self.daemons.values():
            daemon.process.kill()
            daemon.process.wait(timeout=10)
        self.daemons.clear()
