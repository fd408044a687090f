"""Prometheus inside a lab machine: its namespaces and cgroup, its storage under the
machine's state dir, so removing the machine (or `swarm-machine lab down`) removes it too.

It runs in a session of its own and outlives the process that started it (`make demo`
leaves it running); `stop` finds it again through its pid file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy import processes
from deploy.netns_driver import Machine
from deploy.prometheus.api import DEFAULT_PORT, PrometheusAPI
from deploy.prometheus.errors import PrometheusError
from deploy.prometheus.targets import file_sd_groups, write_targets

PROMETHEUS_BIN = "/usr/bin/prometheus"
CONFIG = Path(__file__).with_name("prometheus.yml")
READY_POLL_S = 0.1


def _live_thread(task: Path) -> bool:
    try:
        return (task / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:  # exited while we looked
        return False


def _running(pid: int) -> bool:
    """True until every thread of `pid` has exited (a Go program's leader turns zombie
    before its other threads are gone); a child of this process is reaped then."""
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    if any(_live_thread(thread) for thread in threads):
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


class LabPrometheus:
    """Prometheus serving 0.0.0.0:`port` inside `machine` (loopback and its lab address)."""

    def __init__(self, machine: Machine, port: int = DEFAULT_PORT) -> None:
        self.machine = machine
        self.port = port
        self.api = PrometheusAPI(machine.name, port)
        self._process: subprocess.Popen[Any] | None = None

    @property
    def run_dir(self) -> Path:
        return self.machine.state_dir / "prometheus"

    @property
    def config_file(self) -> Path:
        return self.run_dir / "prometheus.yml"

    @property
    def targets_file(self) -> Path:
        """Rewrite it with `targets.write_targets` to change what is scraped."""
        return self.run_dir / "targets.json"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "prometheus.log"

    @property
    def _pid_file(self) -> Path:
        return self.run_dir / "prometheus.pid"

    def pid(self) -> int | None:
        """The pid of this machine's Prometheus when it runs, else None."""
        try:
            pid = int(self._pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        started_here = f"--config.file={self.config_file}".encode() in cmdline
        return pid if started_here and _running(pid) else None

    def start(self, targets: Mapping[str, str], ready_within: float = 30.0) -> None:
        """Start scraping `targets` (machine name -> "address:port") and return once
        Prometheus answers queries; on failure nothing is left running."""
        file_sd_groups(targets)  # invalid targets fail before anything is made
        if not os.access(PROMETHEUS_BIN, os.X_OK):
            raise PrometheusError(
                f"{PROMETHEUS_BIN} is missing: run `make setup` (apt: prometheus)"
            )
        if not self.machine.running:
            raise PrometheusError(f"machine {self.machine.name} is not running")
        if (pid := self.pid()) is not None:
            raise PrometheusError(
                f"Prometheus already runs in machine {self.machine.name} (pid {pid})"
            )
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(CONFIG, self.config_file)
        write_targets(self.targets_file, targets)
        argv = [
            PROMETHEUS_BIN,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.run_dir / 'data'}",
            f"--web.listen-address=0.0.0.0:{self.port}",
        ]
        with open(self.log_file, "ab") as log:
            self._process = self.machine.popen(
                argv,
                {},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pid_file.write_text(f"{self._process.pid}\n")
        try:
            self._wait_ready(ready_within)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, within: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + within
        while not self.api.ready():
            if self._process.poll() is not None:
                raise PrometheusError(
                    f"Prometheus in {self.machine.name} exited with status "
                    f"{self._process.returncode}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"Prometheus in {self.machine.name} was not ready within {within}s:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(READY_POLL_S)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL) and remove its run dir with all it stored;
        safe to repeat, and from another process than the one that started it."""
        pid = self.pid()  # known by its command line only while it runs: look once
        if pid is not None:
            processes.stop_all(lambda: [pid] if _running(pid) else [])
        if self._process is not None:
            self._process.wait(timeout=10)  # reap our child
            self._process = None
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
