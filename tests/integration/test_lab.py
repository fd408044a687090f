"""The lab: machines that reach each other and the registry, and leave no trace."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from pyroute2 import IPRoute

from common import libc, namespaces
from deploy import cgroups
from tests.integration.conftest import (
    SWARM_MACHINE,
    LabHandle,
    swarm_machine,
    unique_name,
)
from tests.integration.host_snapshot import HostSnapshot
from tests.polling import until

ECHO_SERVER = (
    "import socket\n"
    "s = socket.create_server(('0.0.0.0', 7000))\n"
    "print('listening', flush=True)\n"
    "c, _ = s.accept()\n"
    "c.sendall(c.recv(100).upper())\n"
)


def _connect_from(netns: str, address: str, port: int, deadline_s: float = 5.0) -> socket.socket:
    """A TCP connection made from inside `netns` (the socket stays in that namespace)."""
    holder: list[socket.socket] = []
    namespaces.run_in_netns(netns, lambda: holder.append(socket.socket()))
    sock = holder[0]
    sock.settimeout(deadline_s)
    sock.connect((address, port))
    return sock


def test_machines_reach_each_other_and_the_registry(
    make_lab: Callable[[int], LabHandle],
) -> None:
    lab = make_lab(3)
    node1, node2, node3 = lab.machines
    assert len({m.record.ip for m in lab.machines}) == 3

    # A TCP connection from node2 to a server on node1.
    server = subprocess.Popen(
        [SWARM_MACHINE, "ssh", node1.name, "--", "python3", "-c", ECHO_SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "listening\n"
        with _connect_from(node2.name, node1.record.ip, 7000) as conn:
            conn.sendall(b"hello")
            assert conn.recv(100) == b"HELLO"
        assert server.wait(timeout=10) == 0
    finally:
        server.kill()
        server.wait()

    # The registry answers GET /v2/ and holds the seeded busybox, asked from inside node3.
    result = swarm_machine(
        "ssh",
        node3.name,
        "--",
        "sh",
        "-c",
        'busybox wget -qO- "http://$SWARM_MACHINE_REGISTRY/v2/" && '
        'busybox wget -qO- "http://$SWARM_MACHINE_REGISTRY/v2/busybox/tags/list"',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{}")
    assert sorted(json.loads(result.stdout[2:])["tags"]) == ["index", "latest"]

    # No lab address appears in the host's own namespace.
    with IPRoute() as ipr:
        host_addresses = {str(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()}
    lab_addresses = {m.record.ip for m in lab.machines} | {lab.registry.split(":")[0]}
    assert not host_addresses & lab_addresses


def test_machine_identity_state_dir_and_cgroup(make_lab: Callable[[int], LabHandle]) -> None:
    lab = make_lab(1)
    (machine,) = lab.machines
    info = json.loads(swarm_machine("inspect", machine.name).stdout)
    assert info["address"] == machine.record.ip
    assert info["registry"] == lab.registry
    assert Path(info["state_dir"]).is_dir()
    assert info["cgroup_parent"] == f"/swarm-machine/{machine.name}"

    result = swarm_machine(
        "ssh",
        machine.name,
        "--",
        "sh",
        "-c",
        "hostname; echo $SWARM_MACHINE_STATE_DIR; cat /proc/self/cgroup; cat /proc/net/dev",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == machine.name
    assert lines[1] == info["state_dir"]
    memory_line = next(line for line in lines if ":memory:" in line or line.startswith("0::"))
    assert memory_line.endswith(info["cgroup_parent"])
    devices = {line.split(":")[0].strip() for line in lines if ":" in line and "|" not in line}
    assert {"lo", "eth0"} <= devices

    # ssh passes the command's exit status through.
    assert swarm_machine("ssh", machine.name, "--", "sh", "-c", "exit 7").returncode == 7


def test_lab_down_removes_processes_mounts_and_cgroups(
    host_unchanged: HostSnapshot,
) -> None:
    name = unique_name("d")
    up = swarm_machine("lab", "up", "--name", name, "--machines", "2", "--format", "json")
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        assert status["state"] == "up"
        assert [m["state"] for m in status["machines"]] == ["running", "running"]
        machine = status["machines"][0]["name"]

        # Leave things behind inside a machine, as swarmd and the runtime will: a process
        # in its own session, a mount in the state dir, a child cgroup with a process in it.
        info = json.loads(swarm_machine("inspect", machine).stdout)
        sleeper = subprocess.Popen(
            [SWARM_MACHINE, "ssh", machine, "--", "sleep", "1000"], start_new_session=True
        )
        # `ssh` enters the machine, then execs: once the sleep runs, it is inside.
        until(
            lambda: Path(f"/proc/{sleeper.pid}/cmdline").read_bytes(),
            "the ssh'd sleep to run inside the machine",
            holds=lambda cmdline: cmdline.startswith(b"sleep\0"),
            retry_on=(FileNotFoundError,),
            timeout_s=30,
        )
        mnt = Path(info["state_dir"]) / "mnt"
        mnt.mkdir()
        libc.mount("/tmp", str(mnt), None, libc.MS_BIND)
        child_cgroup = f"{info['cgroup_parent']}/container1"
        cgroups.create(child_cgroup)
        in_cgroup = subprocess.Popen(["sleep", "1000"])
        cgroups.join(child_cgroup, in_cgroup.pid)
        assert in_cgroup.pid in cgroups.pids(info["cgroup_parent"])
    finally:
        down = swarm_machine("lab", "down", name)
    assert down.returncode == 0, down.stderr
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    assert in_cgroup.wait(timeout=10) == -signal.SIGTERM
    assert (
        json.loads(swarm_machine("lab", "status", name, "--format", "json").stdout)["state"]
        == "down"
    )
    # Repeating is harmless.
    again = swarm_machine("lab", "down", name)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_teardown_after_the_creator_is_killed(host_unchanged: HostSnapshot) -> None:
    name = unique_name("k")
    creator = subprocess.Popen(
        [SWARM_MACHINE, "lab", "up", "--name", name, "--machines", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    registry_ns = namespaces.netns_path(f"{name}-registry")

    def registry_bound() -> bool:
        assert creator.poll() is None, "lab up ended before it could be killed"
        return namespaces.is_bound(registry_ns)

    try:
        until(
            registry_bound,
            "lab up to bind its registry's namespace",
            timeout_s=30,
            interval_s=0.005,
        )
    finally:
        creator.kill()
        creator.wait()
    assert namespaces.is_bound(registry_ns), "the killed lab up left nothing to clean"
    down = swarm_machine("lab", "down", name)
    assert down.returncode == 0, down.stderr
    assert "removed" in down.stdout


def test_create_and_rm_machines_on_demand_lab(host_unchanged: HostSnapshot) -> None:
    lab = unique_name("o")
    a, b = unique_name("a"), unique_name("b")
    created = swarm_machine("create", "--lab", lab, a, b)
    try:
        assert created.returncode == 0, created.stderr
        listed = json.loads(swarm_machine("ls", "--format", "json").stdout)
        assert {m["name"] for m in listed} >= {a, b}
        assert swarm_machine("rm", a).returncode == 0
        # b still works after a is gone, and can reach nothing that was a.
        ping_b = swarm_machine("ssh", b, "--", "hostname")
        assert ping_b.stdout.strip() == b
        assert (
            json.loads(swarm_machine("lab", "status", lab, "--format", "json").stdout)["state"]
            == "up"
        )
    finally:
        swarm_machine("rm", a, b)
        swarm_machine("rm", b)
    # The on-demand lab went with its last machine.
    assert (
        json.loads(swarm_machine("lab", "status", lab, "--format", "json").stdout)["state"]
        == "down"
    )


def test_bad_input_is_refused_and_creates_nothing(
    make_lab: Callable[[int], LabHandle],
) -> None:
    lab = make_lab(1)
    (existing,) = lab.machines
    before = HostSnapshot.take()

    cases = {
        ("rm", "no-such-machine"): "no such machine: no-such-machine",
        ("rm", existing.name, "no-such-machine"): "no such machine: no-such-machine",
        ("inspect", "no-such-machine"): "no such machine",
        ("ssh", "no-such-machine", "--", "true"): "no such machine",
        ("create", "--lab", lab.name, "dup1", "dup1"): "duplicate machine name: dup1",
        ("create", "--lab", lab.name, "fresh1", existing.name): "already exists",
        ("create", "Bad_Name"): "invalid machine name",
        ("lab", "up", "--name", lab.name, "--machines", "1"): "already up",
        ("lab", "up", "--name", unique_name("z"), "--machines", "0"): "between 1 and 250",
        ("lab", "up", "--name", unique_name("z"), "--subnet", "10.1.2.0/30"): "large enough",
        ("lab", "up", "--name", unique_name("z"), "--subnet", "nonsense"): "invalid subnet",
    }
    for args, message in cases.items():
        result = swarm_machine(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr

    # A machine cannot be removed from inside itself (that would kill the caller midway).
    inside = swarm_machine("ssh", existing.name, "--", SWARM_MACHINE, "rm", existing.name)
    assert inside.returncode == 1
    assert "from inside it" in inside.stderr

    # The rm that named an unknown machine removed nothing.
    assert swarm_machine("ssh", existing.name, "--", "true").returncode == 0

    def as_nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    nonroot = swarm_machine("create", "x1", preexec_fn=as_nobody)
    assert nonroot.returncode == 1
    assert "must run as root" in nonroot.stderr

    assert HostSnapshot.take().difference(before) == {}
