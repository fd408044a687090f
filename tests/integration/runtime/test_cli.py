"""The `shoal` CLI end to end, inside lab machines, against the lab registry."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common import namespaces
from deploy.netns_driver import Machine
from tests.integration.conftest import LabHandle
from tests.polling import until

SHOAL = str(Path(sys.executable).parent / "shoal")


class Node:
    """One lab machine with its own engine root, driven through the real `shoal` program."""

    def __init__(self, lab: LabHandle, machine: Machine) -> None:
        self.lab = lab
        self.machine = machine
        self.registry = lab.registry
        self.env = {
            **lab.env(machine),
            "SHOAL_ROOT": str(machine.state_dir / "shoal"),
            "SHOAL_INSECURE_REGISTRIES": lab.registry,
        }

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return self.machine.popen([SHOAL, *args], self.env, text=True, **kwargs)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = self.popen(
            *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            proc.kill()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def ok(self, *args: str, timeout: float = 60) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def inspect(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.ok("inspect", name))[0]
        return info

    @property
    def busybox(self) -> str:
        return f"{self.registry}/busybox:latest"


@pytest.fixture
def nodes(make_lab: Callable[[int], LabHandle]) -> list[Node]:
    lab = make_lab(2)
    return [Node(lab, m) for m in lab.machines]


def _http_get_from(netns: str, address: str, port: int, timeout_s: float = 10) -> str:
    """GET / from inside `netns`, retried until the server answers or the time is up."""

    def get() -> str:
        holder: list[socket.socket] = []
        namespaces.run_in_netns(netns, lambda: holder.append(socket.socket()))
        with holder[0] as sock:
            sock.settimeout(2)
            sock.connect((address, port))
            sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
            return b"".join(chunks).decode()

    return until(
        get,
        f"an answer from {address}:{port}",
        holds=lambda _: True,  # any answer, even an empty one
        timeout_s=timeout_s,
        retry_on=(OSError,),
    )


def test_pull_run_publish_logs_exec_stats_stop_rm(nodes: list[Node]) -> None:
    one, two = nodes
    assert "latest" in one.ok("pull", "-q", one.busybox)
    cid = one.ok(
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-e",
        "GREETING=hello",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        one.busybox,
        "httpd",
        "-f",
        "-v",
        "-p",
        "80",
        "-h",
        "/var/www",
    ).strip()
    assert len(cid) == 64
    assert "web" in one.ok("ps")
    # Published: reachable from the other machine, by the first machine's address.
    page = _http_get_from(two.machine.name, one.machine.record.ip, 8080)
    assert "200 OK" in page and "hello from shoal's busybox" in page
    # httpd logged the request on stderr, with the client's own address: not masqueraded.
    logs = one.run("logs", "web")
    assert f"{two.machine.record.ip}]" in logs.stderr and "response:200" in logs.stderr
    assert one.ok("exec", "web", "sh", "-c", "echo $GREETING; hostname").split() == [
        "hello",
        cid[:12],
    ]
    info = one.inspect("web")
    assert info["State"]["Running"] and info["HostConfig"]["Memory"] == 64 << 20
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["NetworkSettings"]["ip"].startswith("172.18.")
    stats = one.ok("stats", "--no-stream", "web")
    assert "web" in stats and "64MiB" in stats
    refused = one.run("rm", "web")
    assert refused.returncode == 1 and "stop it or force" in refused.stderr
    assert one.ok("stop", "-t", "1", "web").strip() == "web"
    assert one.inspect("web")["State"]["Status"] == "exited"
    assert "Exited" in one.ok("ps", "-a")
    one.ok("rm", "web")
    assert one.ok("ps", "-a", "-q") == "\n"
    assert one.inspect(one.busybox)["Id"].startswith("sha256:")


def test_foreground_run_streams_output_and_exit_code(nodes: list[Node]) -> None:
    one = nodes[0]
    result = one.run("run", "--rm", "-q", one.busybox, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert one.ok("ps", "-a", "-q") == "\n"  # --rm removed it


def test_oom_is_reported(nodes: list[Node]) -> None:
    one = nodes[0]
    eat = "x=$(dd if=/dev/zero bs=1M count=200 2>/dev/null | tr '\\0' a)"
    result = one.run("run", "--name", "hog", "-q", "-m", "32m", one.busybox, "sh", "-c", eat)
    assert result.returncode == 137
    assert one.inspect("hog")["State"]["OOMKilled"] is True


def test_bad_input_is_refused_clearly(nodes: list[Node]) -> None:
    one = nodes[0]
    cases = {
        ("run", "-q", f"{one.registry}/no-such-image:1", "true"): "not found",
        ("run", "-q", "-p", "99999:80", one.busybox, "true"): "host port",
        ("run", "-q", "--memory", "lots", one.busybox, "true"): "invalid size",
        ("run", "-q", "-e", "NOEQUALS", one.busybox, "true"): "invalid environment variable",
        ("run", "-q", one.busybox, "no-such-command"): "exec no-such-command",
        ("logs", "nope"): "no such container: nope",
        ("stop", "nope"): "no such container: nope",
        ("pull", "UPPER/Case"): "invalid reference",
    }
    for args, message in cases.items():
        result = one.run(*args)
        assert result.returncode != 0, args
        assert message in result.stderr.lower(), (args, result.stderr)
        assert "Traceback" not in result.stderr
    one.ok("run", "-d", "--name", "taken", one.busybox, "sleep", "30")
    clash = one.run("run", "-d", "--name", "taken", one.busybox, "true")
    assert clash.returncode == 1 and "already in use" in clash.stderr
    one.ok("rm", "-f", "taken")


def test_commit_push_and_pull_back_on_another_machine(nodes: list[Node]) -> None:
    one, two = nodes
    one.ok(
        "run",
        "--name",
        "maker",
        "-q",
        one.busybox,
        "sh",
        "-c",
        "echo made-here > /root/made.txt; rm /etc/group",
    )
    changes = one.ok("diff", "maker").splitlines()
    assert "A /root/made.txt" in changes and "D /etc/group" in changes
    target = f"{one.registry}/committed:v1"
    one.ok("commit", "-m", "add made.txt", "-c", 'CMD ["cat", "/root/made.txt"]', "maker", target)
    one.ok("push", target)
    assert two.ok("run", "--rm", "-q", target) == "made-here\n"
    history = two.ok("history", target)
    assert "add made.txt" in history or "shoal commit" in history


def test_container_survives_kill_9_of_the_cli(nodes: list[Node]) -> None:
    one = nodes[0]
    cli = one.popen(
        "run",
        "--name",
        "lasting",
        "-q",
        one.busybox,
        "sh",
        "-c",
        "echo up; while true; do sleep 0.1; done",
        stdout=subprocess.PIPE,
    )
    assert cli.stdout is not None
    assert cli.stdout.readline() == "up\n"
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    assert one.inspect("lasting")["State"]["Running"] is True  # a new process re-attaches
    assert "up" in one.ok("logs", "lasting")
    one.ok("stop", "-t", "1", "lasting")
    info = one.inspect("lasting")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137


def _pty_session(
    node: Node, args: list[str], keys: bytes, timeout_s: float = 20
) -> tuple[int, bytes]:
    """Run `shoal ARGS` on a terminal, type `keys`, return (exit code, what was shown)."""
    master, slave = os.openpty()
    proc = node.popen(*args, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    shown = [b""]
    sent = [False]

    def follow() -> tuple[bool, bytes]:
        """Take what the terminal shows, answer the prompt; (ended, all shown so far)."""
        if select.select([master], [], [], 0.1)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:
                return True, shown[0]
            if not data:
                return True, shown[0]
            shown[0] += data
        if not sent[0] and b"# " in shown[0]:  # the shell's prompt
            os.write(master, keys)
            sent[0] = True
        ended = proc.poll() is not None and not select.select([master], [], [], 0.1)[0]
        return ended, shown[0]

    try:
        until(
            follow,
            "the terminal session to end",
            holds=lambda seen: seen[0],
            timeout_s=timeout_s,
            interval_s=0.001,
        )
        return proc.wait(timeout=10), shown[0]
    finally:
        proc.kill()
        os.close(master)


def test_run_it_and_exec_it_give_a_terminal(nodes: list[Node]) -> None:
    one = nodes[0]
    one.ok("pull", "-q", one.busybox)
    code, shown = _pty_session(
        one, ["run", "-it", "--rm", one.busybox, "sh"], b"tty; echo $((6 * 7))\rexit 5\r"
    )
    assert code == 5, shown
    assert b"42" in shown and b"/dev/console" in shown
    one.ok("run", "-d", "--name", "box", one.busybox, "sleep", "60")
    code, shown = _pty_session(one, ["exec", "-it", "box", "sh"], b"tty; exit 3\r")
    assert code == 3, shown
    assert b"/dev/pts/" in shown
    one.ok("rm", "-f", "box")


def test_detached_rm_container_is_removed_when_it_ends(nodes: list[Node]) -> None:
    one = nodes[0]
    cid = one.ok("run", "-d", "--rm", one.busybox, "sh", "-c", "echo a; echo b; echo c").strip()
    until(  # the shim's clean-up command removes it
        lambda: one.ok("ps", "-a", "-q"),
        "the --rm container removed once its process ended",
        holds=lambda listed: cid[:12] not in listed,
        timeout_s=20,
    )
    kept = one.ok("run", "-d", "--name", "kept", one.busybox, "sh", "-c", "echo a; echo b; echo c")
    assert one.ok("wait", kept.strip()).strip() == "0"
    assert one.ok("logs", "--tail", "2", "kept") == "b\nc\n"
    assert one.ok("logs", "--since", "1h", "kept") == "a\nb\nc\n"
