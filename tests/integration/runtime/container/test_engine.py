"""The container engine with real namespaces, overlayfs and cgroups, inside a lab machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from runtime.container.cgroups import Limits
from runtime.container.engine import Engine
from runtime.container.spec import ContainerSpec, Mount, OverlayAttachment
from runtime.errors import ContainerError
from runtime.network.errors import NetworkError
from tests.integration.local_image import LocalImage
from tests.polling import until


def _spec(*command: str, **kwargs: object) -> ContainerSpec:
    kwargs.setdefault("network", "none")
    return ContainerSpec(image="busybox", command=command, **kwargs)  # type: ignore[arg-type]


def _logs(engine: Engine, cid: str) -> list[dict[str, str]]:
    path = Path(engine.inspect(cid)["LogPath"])
    return [json.loads(line) for line in path.read_text().splitlines()]


def _out(engine: Engine, cid: str, stream: str = "stdout") -> str:
    return "".join(r["log"] for r in _logs(engine, cid) if r["stream"] == stream)


def test_output_exit_code_and_identity(
    engine_on: Callable[[], Engine], busybox: LocalImage
) -> None:
    engine = engine_on()
    cid = engine.run(
        _spec(
            "sh",
            "-c",
            "echo out; echo err >&2; hostname; echo $GREETING; pwd; exit 3",
            env=("GREETING=hi",),
            hostname="box1",
            workdir="/tmp",
        ),
        busybox,
    )
    record = engine.wait(cid, timeout=10)
    assert record["exit_code"] == 3 and not record["oom_killed"]
    assert _out(engine, cid) == "out\nbox1\nhi\n/tmp\n"
    assert _out(engine, cid, "stderr") == "err\n"
    info = engine.inspect(cid)
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3


def test_unknown_command_is_a_clear_error(
    engine_on: Callable[[], Engine], busybox: LocalImage
) -> None:
    engine = engine_on()
    with pytest.raises(ContainerError, match="exec no-such-cmd: No such file or directory"):
        engine.run(_spec("no-such-cmd"), busybox)
    (info,) = engine.list(all=True)
    # The failed start's shim records the exit on its own, a moment after the error.
    until(
        lambda: engine.status(info["Id"]),
        "the failed start's exit on record",
        holds=lambda status: status == "exited",
        timeout_s=10,
    )
    assert engine.wait(info["Id"], timeout=10)["exit_code"] == 127


def test_isolation(engine_on: Callable[[], Engine], busybox: LocalImage) -> None:
    engine = engine_on()
    script = """
        echo "maxpid:$(ls /proc | grep '^[0-9]' | sort -n | tail -1)"
        echo "pid1:$(cat /proc/1/cmdline | tr '\\0' ' ')"
        mount -t tmpfs none /mnt 2>/dev/null && echo "mount:yes" || echo "mount:no"
        echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo "procsys:yes" || echo "procsys:no"
        echo "kcore:$(cat /proc/kcore 2>/dev/null | wc -c)"
        echo "timer_list:$(cat /proc/timer_list 2>/dev/null | wc -c)"
        touch /sys/x 2>/dev/null && echo "sys:yes" || echo "sys:no"
        head -c 64 /dev/urandom > /tmp/m.ko
        insmod /tmp/m.ko 2>&1 | grep -q 'Operation not permitted' && echo "module:no"
        echo "caps:$(grep CapEff /proc/self/status | cut -f2)"
        echo "nnp:$(grep NoNewPrivs /proc/self/status | cut -f2)"
        echo "seccomp:$(grep '^Seccomp:' /proc/self/status | cut -f2)"
        ls /dev
    """
    cid = engine.run(_spec("sh", "-c", script), busybox)
    assert engine.wait(cid, timeout=10)["exit_code"] == 0
    out = _out(engine, cid)
    facts = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    assert int(facts["maxpid"]) < 10  # only the container's own few processes are visible
    assert facts["pid1"].startswith("sh -c")
    assert facts["mount"] == "no"
    assert facts["procsys"] == "no"
    assert facts["kcore"].strip() == "0"
    # Masked: the host's timer_list has content, the container's copy reads empty.
    assert Path("/proc/timer_list").read_bytes()
    assert facts["timer_list"].strip() == "0"
    assert facts["sys"] == "no"
    assert facts["module"] == "no"
    assert facts["caps"] == "00000000a00425fb"  # Docker's default set without CAP_MKNOD
    assert facts["nnp"] == "1"
    assert facts["seccomp"] == "2"
    devices = set(out.split())
    assert {"null", "zero", "random", "urandom", "tty", "pts", "shm"} <= devices


def test_limits_are_in_the_cgroup(engine_on: Callable[[], Engine], busybox: LocalImage) -> None:
    engine = engine_on()
    limits = Limits(memory_bytes=64 * 1024 * 1024, nano_cpus=500_000_000, pids=50)
    cid = engine.run(_spec("sleep", "30", limits=limits), busybox)
    try:
        paths = {k: Path(v) for k, v in engine.inspect(cid)["HostConfig"]["CgroupPaths"].items()}
        if "" in paths:
            assert (paths[""] / "memory.max").read_text().strip() == str(64 * 1024 * 1024)
            assert (paths[""] / "cpu.max").read_text().split() == ["50000", "100000"]
            assert (paths[""] / "pids.max").read_text().strip() == "50"
        else:
            memory = paths["memory"] / "memory.limit_in_bytes"
            assert memory.read_text().strip() == str(64 * 1024 * 1024)
            assert (paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (paths["pids"] / "pids.max").read_text().strip() == "50"
        pid = engine.inspect(cid)["State"]["Pid"]
        assert pid in {int(p) for p in (paths["pids"] / "cgroup.procs").read_text().split()} or (
            "" in paths
        )
        usage = engine.usage(cid)
        assert usage["pids"] >= 1 and usage["memory_bytes"] > 0
    finally:
        engine.remove(cid, force=True)


def test_oom_kill_is_reported(engine_on: Callable[[], Engine], busybox: LocalImage) -> None:
    engine = engine_on()
    eat = "x=$(dd if=/dev/zero bs=1M count=200 2>/dev/null | tr '\\0' a); echo survived"
    cid = engine.run(_spec("sh", "-c", eat, limits=Limits(memory_bytes=32 * 1024 * 1024)), busybox)
    record = engine.wait(cid, timeout=60)
    assert record["exit_code"] == 137
    assert record["oom_killed"] is True
    assert engine.inspect(cid)["State"]["OOMKilled"] is True
    assert "survived" not in _out(engine, cid)


def test_stop_honours_the_grace_period(
    engine_on: Callable[[], Engine], busybox: LocalImage
) -> None:
    engine = engine_on()
    polite = engine.run(
        _spec(
            "sh",
            "-c",
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
        ),
        busybox,
    )
    _wait_for_output(engine, polite, "ready\n")
    record = engine.stop(polite, timeout=10)
    assert record is not None and record["exit_code"] == 0
    assert "got TERM" in _out(engine, polite)

    stubborn = engine.run(_spec("sleep", "60"), busybox)  # PID 1 ignores SIGTERM
    began = time.monotonic()
    record = engine.stop(stubborn, timeout=1)
    waited = time.monotonic() - began
    assert record is not None and record["exit_code"] == 137 and record["signal"] == 9
    assert 1.0 <= waited < 5.0


def test_kill_with_a_signal(engine_on: Callable[[], Engine], busybox: LocalImage) -> None:
    engine = engine_on()
    cid = engine.run(
        _spec("sh", "-c", "trap 'exit 42' USR1; echo ready; while true; do sleep 0.05; done"),
        busybox,
    )
    _wait_for_output(engine, cid, "ready\n")
    engine.kill(cid, signal.SIGUSR1)
    assert engine.wait(cid, timeout=10)["exit_code"] == 42
    with pytest.raises(ContainerError, match="is not running"):
        engine.kill(cid)


def test_user_and_mounts(
    engine_on: Callable[[], Engine], busybox: LocalImage, tmp_path: Path
) -> None:
    engine = engine_on()
    (tmp_path / "data.txt").write_text("from the host\n")
    mounts = (
        Mount("bind", "/host", str(tmp_path), readonly=True),
        Mount("volume", "/vol", "shared"),
        Mount("tmpfs", "/scratch", tmpfs_size=1 << 20),
    )
    tmp_path.chmod(0o755)  # readable by the container's unprivileged user
    script = (
        "id -u; cat /host/data.txt; touch /host/x 2>/dev/null || echo ro; "
        "grep CapEff /proc/self/status | cut -f2"
    )
    cid = engine.run(_spec("sh", "-c", script, user="nobody", mounts=mounts[:1]), busybox)
    assert engine.wait(cid, timeout=10)["exit_code"] == 0
    out = _out(engine, cid).splitlines()
    assert out[:3] == ["65534", "from the host", "ro"]
    assert out[-1] == "0000000000000000"  # a non-root user has no capabilities

    script = "echo kept > /vol/file; df /scratch | tail -1 | grep -q tmpfs && echo tmpfs"
    writer = engine.run(_spec("sh", "-c", script, mounts=mounts[1:]), busybox)
    assert engine.wait(writer, timeout=10)["exit_code"] == 0
    assert "tmpfs" in _out(engine, writer)
    reader = engine.run(_spec("cat", "/vol/file", mounts=mounts[1:2]), busybox)
    assert engine.wait(reader, timeout=10)["exit_code"] == 0
    assert _out(engine, reader) == "kept\n"
    assert not (tmp_path / "x").exists()


def test_container_outlives_the_process_that_started_it(
    engine_on: Callable[[], Engine], busybox: LocalImage
) -> None:
    engine = engine_on()
    layer = busybox.lower_dirs()[0]
    starter = f"""
import sys
from pathlib import Path
from runtime.config import EngineConfig
from runtime.container.engine import Engine
from runtime.container.spec import ContainerSpec
from tests.integration.local_image import LocalImage
image = LocalImage([Path({str(layer)!r})], {{"config": {{"Cmd": ["sh"]}}}})
engine = Engine(EngineConfig(root=Path({str(engine.config.root)!r}),
                             cgroup_parent={engine.config.cgroup_parent!r}),
                cleanup_on_exit=False)
cid = engine.run(ContainerSpec(image="busybox", network="none", command=("sh", "-c",
    "echo started; while true; do sleep 0.05; done")), image)
print(cid, flush=True)
sys.stdin.read()
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", starter],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[4],
    )
    assert proc.stdout is not None
    cid = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait_for_output(engine, cid, "started\n")
    assert engine.status(cid) == "running"
    record = engine.stop(cid, timeout=0.5)  # a new engine re-attaches: stop, wait, exit code
    assert record is not None and record["exit_code"] == 137


def _wait_for_output(engine: Engine, cid: str, text: str, timeout_s: float = 10) -> None:
    until(
        lambda: _out(engine, cid),
        f"{text!r} in the log of {cid[:12]}",
        holds=lambda out: text in out,
        timeout_s=timeout_s,
        interval_s=0.02,
    )


class RecordingNetwork:
    """The engine's Network, recording what the engine asks of it and what this process's
    children were at the time. It makes no links: the subject is the start handshake."""

    def __init__(self, fail_prepare: bool = False) -> None:
        self.fail_prepare = fail_prepare
        self.calls: list[tuple[str, Any]] = []

    def prepare(self) -> None:
        children = Path(f"/proc/self/task/{threading.get_native_id()}/children").read_text()
        self.calls.append(("prepare", {int(pid) for pid in children.split()}))
        if self.fail_prepare:
            raise NetworkError("the network could not get ready (on purpose)")

    def attach(
        self, container_id: str, netns_path: str, ports: Sequence[str], ifname: str
    ) -> dict[str, Any]:
        self.calls.append(("attach", netns_path))
        return {"ip": "192.0.2.7"}  # TEST-NET-1: written to the container's /etc/hosts only

    def detach(self, container_id: str) -> None:
        self.calls.append(("detach", container_id))

    def attach_overlay(
        self, container_id: str, netns_path: str, overlay: OverlayAttachment, ifname: str
    ) -> dict[str, Any]:
        raise AssertionError("no overlay was asked for")

    def detach_overlay(self, container_id: str, overlay: OverlayAttachment) -> None:
        raise AssertionError("no overlay was asked for")

    def set_overlay_peers(
        self, overlay: OverlayAttachment, peers: Sequence[tuple[str, str]]
    ) -> None:
        raise AssertionError("no overlay was asked for")

    def serve_dns(
        self, container_id: str, netns_path: str, overlays: Sequence[OverlayAttachment]
    ) -> None:
        raise AssertionError("no overlay was asked for")

    def stop_dns(self, container_id: str) -> None:
        raise AssertionError("no overlay was asked for")

    def join_cluster(
        self, container_id: str, container_name: str, networks: Sequence[str]
    ) -> list[OverlayAttachment]:
        raise AssertionError("no overlay was asked for")

    def leave_cluster(self, container_id: str) -> None:
        raise AssertionError("no overlay was asked for")


def test_the_network_gets_ready_while_the_container_is_being_set_up(
    engine_on: Callable[[], Engine], busybox: LocalImage
) -> None:
    network = RecordingNetwork()
    engine = Engine(engine_on().config, network=network, cleanup_on_exit=False)
    cid = engine.run(_spec("cat", "/etc/hosts", network="bridge"), busybox)
    state = engine.store.find(cid).state()
    assert engine.wait(cid, timeout=10)["exit_code"] == 0
    assert "192.0.2.7\t" in _out(engine, cid)
    engine.remove(cid)  # detaches, unless the wait did (it does when the exit comes after it)
    (step, children), attach, detach = network.calls
    assert step == "prepare" and state.shim_pid in children  # the shim was already forked
    assert attach == ("attach", f"/proc/{state.pid}/ns/net")
    assert detach == ("detach", cid)


def test_a_network_that_cannot_get_ready_fails_the_start_and_leaves_nothing(
    engine_on: Callable[[], Engine], busybox: LocalImage
) -> None:
    network = RecordingNetwork(fail_prepare=True)
    engine = Engine(engine_on().config, network=network, cleanup_on_exit=False)
    with pytest.raises(NetworkError, match=r"could not get ready \(on purpose\)"):
        engine.run(_spec("true", network="bridge"), busybox)
    assert [call for call, _ in network.calls] == ["prepare"]  # never attached
    (info,) = engine.list(all=True)
    assert not info["State"]["Running"]
    assert info["State"]["Error"] == "the network could not get ready (on purpose)"
    for path in info["HostConfig"]["CgroupPaths"].values():
        assert not Path(path).exists()  # removed, so no process of it is left either
