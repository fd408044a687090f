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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.integration.manager.raft.raft_node import format_peers
from tests.polling import Bounds, until

NODE_PROGRAM = Path(__file__).with_name("raft_node.py")

Launcher = Callable[[list[str], IO[bytes]], "subprocess.Popen[bytes]"]


class NodeError(Exception):
    """A control request failed; `answer` is the node's JSON answer."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(f"{answer.get('error')}: {answer.get('message')}")
        self.answer = answer


def wait_until(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    period: float = 0.05,
    context: Callable[[], str] | None = None,
) -> Any:
    """`tests.polling.until` for raft nodes: a request that fails meanwhile (the node is
    not up, or refuses) counts as not yet. `context`: what to add on failure."""
    bounds: Bounds = {"timeout_s": timeout, "interval_s": period, "retry_on": (OSError, NodeError)}
    if context is not None:
        bounds["context"] = context
    return until(check, what, **bounds)


@dataclass
class RaftProcess:
    node_id: str
    address: str
    workdir: Path
    launcher: Launcher
    # The test CA (raft_node.write_test_ca) the process issues its certificate from.
    ca_dir: Path
    compaction_min_entries: int = 5000
    # The lab machine (network namespace) it runs in; None on loopback.
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    # As last started: the other managers by node id, whether it founds a group, and where
    # every node of the harness listens (the store's Node objects in a real manager).
    peers: dict[str, str] = field(default_factory=dict)
    bootstrap: bool = False
    address_book: dict[str, str] = field(default_factory=dict)
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

    def start(
        self,
        peers: Mapping[str, str],
        bootstrap: bool = False,
        address_book: Mapping[str, str] | None = None,
    ) -> None:
        """Start the process. With an empty data dir, `bootstrap` founds a group of this
        node and `peers` (each founder given the same set); without it, the node waits for
        a leader that has added it (a join). With data, it carries on from it."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.peers = {k: v for k, v in peers.items() if k != self.node_id}
        self.bootstrap = bootstrap
        self.address_book = dict(address_book or {})
        self.control.unlink(missing_ok=True)
        argv = [
            sys.executable,
            str(NODE_PROGRAM),
            "--node-id", self.node_id,
            "--address", self.address,
            "--ca-dir", str(self.ca_dir),
            "--peers", format_peers(self.peers),
            "--address-book", format_peers(self.address_book),
            "--data-dir", str(self.data_dir),
            "--control", str(self.control),
            "--compaction-min-entries", str(self.compaction_min_entries),
        ]  # fmt: skip
        if bootstrap:
            argv.append("--bootstrap")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (lives as long as the process)
        self.proc = self.launcher(argv, self._log)
        wait_until(f"{self.node_id} control socket", self._answers, timeout=30)

    def restart(self) -> None:
        """Start again as last started (after `kill`), from its data."""
        self.start(self.peers, self.bootstrap, self.address_book)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.node_id} exited: {self.log_tail()}")
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
            raise OSError(f"{self.node_id} closed the control connection")
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

    @property
    def address_book(self) -> dict[str, str]:
        return {n.node_id: n.address for n in self.nodes}

    def start(self, nodes: list[RaftProcess] | None = None) -> None:
        """Start `nodes` (by default all) as one group: each bootstraps with the others as
        its peers (with data already, each carries on from it)."""
        founders = nodes if nodes is not None else self.nodes
        peers = {n.node_id: n.address for n in founders}
        for node in founders:
            node.start(peers, bootstrap=True, address_book=self.address_book)

    def join(self, node: RaftProcess) -> None:
        """Start `node` with an empty data dir and no bootstrap, once a leader has added it
        (`leader.request("add_member", node_id=..., address=...)`): it waits for the
        leader to bring it the group."""
        assert not node.data_dir.exists() or not any(node.data_dir.iterdir()), (
            f"{node.node_id} has data: a joiner starts empty"
        )
        others = {n.node_id: n.address for n in self.nodes if n is not node}
        node.start(others, bootstrap=False, address_book=self.address_book)

    def running(self) -> list[RaftProcess]:
        return [n for n in self.nodes if n.running]

    def leader(self, timeout: float = 15) -> RaftProcess:
        """The node whose leadership (barrier of its term committed) is announced."""

        def find() -> RaftProcess | None:
            for node in self.running():
                if node.status()["leadership"]["is_leader"]:
                    return node
            return None

        found: RaftProcess = wait_until("a raft leader", find, timeout, context=self.describe)
        return found

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def converged(self, nodes: list[RaftProcess] | None = None, timeout: float = 30) -> str:
        """Wait until every running node has the same store; returns its digest."""

        def same() -> str | None:
            digests = {n.request("digest")["digest"] for n in nodes or self.running()}
            return digests.pop() if len(digests) == 1 else None

        digest: str = wait_until(
            "the stores to converge", same, timeout, period=0.2, context=self.describe
        )
        return digest

    def describe(self) -> str:
        """Each node's status (or why there is none) and the end of its log."""
        lines = []
        for node in self.nodes:
            if node.proc is None:
                lines.append(f"{node.node_id}: never started")
                continue
            try:
                found: Any = {k: v for k, v in node.status().items() if k != "address"}
            except (OSError, NodeError) as exc:
                found = f"no status ({exc})"
            lines += [f"{node.node_id}: {found}", node.log_tail(15), ""]
        return "\n".join(lines)
