"""Drive raft_node.py processes: start, kill -9, restart, and talk to their control sockets.

Shared by the integration tests (processes inside lab machines) and benchmarks/raft.py
(processes on loopback).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.polling import until

NODE_PROGRAM = Path(__file__).with_name("raft_node.py")

Launcher = Callable[[list[str], IO[bytes]], "subprocess.Popen[bytes]"]


class NodeError(Exception):
    """A control request failed; `answer` is the node's JSON answer."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(f"{answer.get('error')}: {answer.get('message')}")
        self.answer = answer


def wait_until(what: str, check: Callable[[], Any], timeout: float, period: float = 0.05) -> Any:
    """`tests.polling.until` for raft nodes: a request that fails meanwhile (the node is
    not up, or refuses) counts as not yet."""
    return until(check, what, timeout_s=timeout, interval_s=period, retry_on=(OSError, NodeError))


@dataclass
class RaftProcess:
    address: str
    workdir: Path
    launcher: Launcher
    key_file: Path
    compaction_min_entries: int = 5000
    connection_timeout: float = 3.5
    # The lab machine (network namespace) it runs in; None on loopback.
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    peers: list[str] = field(default_factory=list)
    _log: IO[bytes] | None = None

    @property
    def control(self) -> Path:
        return self.workdir / "control.sock"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "raft"

    @property
    def log_path(self) -> Path:
        return self.workdir / "node.log"

    def start(self, peers: Iterable[str], join: bool = False) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.peers = list(peers)
        self.control.unlink(missing_ok=True)
        argv = [
            sys.executable,
            str(NODE_PROGRAM),
            "--address", self.address,
            "--peers", ",".join(self.peers),
            "--data-dir", str(self.data_dir),
            "--key-file", str(self.key_file),
            "--control", str(self.control),
            "--compaction-min-entries", str(self.compaction_min_entries),
            "--connection-timeout", str(self.connection_timeout),
        ]  # fmt: skip
        if join:
            argv.append("--join")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (lives as long as the process)
        self.proc = self.launcher(argv, self._log)
        wait_until(f"{self.address} control socket", self._answers, timeout=30)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.address} exited: {self.log_tail()}")
        return self.control.exists() and bool(self.request("status", timeout=2))

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, op: str, timeout: float = 30, **args: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.control))
            sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            reader = sock.makefile("rb")
            line = reader.readline()
        if not line:
            raise OSError(f"{self.address} closed the control connection")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise NodeError(answer)
        return answer

    def status(self) -> dict[str, Any]:
        return self.request("status", timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class RaftCluster:
    def __init__(self, nodes: list[RaftProcess]) -> None:
        self.nodes = nodes

    def start(self) -> None:
        addresses = [n.address for n in self.nodes]
        for node in self.nodes:
            node.start([a for a in addresses if a != node.address])

    def running(self) -> list[RaftProcess]:
        return [n for n in self.nodes if n.running]

    def leader(self, timeout: float = 15) -> RaftProcess:
        """The node whose leadership (barrier of its term committed) is announced."""

        def find() -> RaftProcess | None:
            for node in self.running():
                if node.status()["leadership"]["is_leader"]:
                    return node
            return None

        found: RaftProcess = wait_until("a raft leader", find, timeout)
        return found

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def converged(self, nodes: list[RaftProcess] | None = None, timeout: float = 30) -> str:
        """Wait until every running node has the same store; returns its digest."""

        def same() -> str | None:
            digests = {n.request("digest")["digest"] for n in nodes or self.running()}
            return digests.pop() if len(digests) == 1 else None

        digest: str = wait_until("the stores to converge", same, timeout, period=0.2)
        return digest
