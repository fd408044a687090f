"""cgroup v2 limits and accounting, on a fake cgroup tree (this build host runs v1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.container import cgroups, devices
from runtime.container.cgroups import ContainerCgroup, Limits


@pytest.fixture
def v2_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids io\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(cgroups, "_own_cgroups", lambda: {"": "/machine"})
    return tmp_path


def test_limits_written_the_v2_way(v2_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filtered: list[str] = []
    monkeypatch.setattr(devices, "attach_v2_filter", filtered.append)
    cg = ContainerCgroup.plan("c1")
    assert cg.paths == {"": v2_root / "machine" / "shoal" / "c1"}
    for d in (v2_root / "machine", v2_root / "machine" / "shoal"):
        d.mkdir(parents=True)
        (d / "cgroup.controllers").write_text("cpu memory pids\n")
        (d / "cgroup.subtree_control").write_text("")
    cg.paths[""].mkdir()  # the kernel makes the interface files; a plain dir stands in
    cg.create(Limits(memory_bytes=64 << 20, nano_cpus=1_500_000_000, pids=10))
    path = cg.paths[""]
    assert (path / "memory.max").read_text() == str(64 << 20)
    assert (path / "cpu.max").read_text() == "150000 100000"
    assert (path / "pids.max").read_text() == "10"
    assert (v2_root / "machine" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert filtered == [str(path)]  # the device allowlist (tests/integration/security)
    cg.apply(Limits())
    assert (path / "memory.max").read_text() == "max"
    assert (path / "cpu.max").read_text() == "max 100000"


def test_oom_and_usage_from_v2_files(v2_root: Path) -> None:
    cg = ContainerCgroup({"": v2_root / "c"})
    (v2_root / "c").mkdir()
    (v2_root / "c" / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
    (v2_root / "c" / "memory.current").write_text("4096\n")
    (v2_root / "c" / "memory.max").write_text("max\n")
    (v2_root / "c" / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\n")
    (v2_root / "c" / "pids.current").write_text("3\n")
    assert cg.oom_kills() == 2
    usage = cg.usage()
    assert (usage.memory_bytes, usage.memory_limit_bytes, usage.cpu_ns, usage.pids) == (
        4096,
        0,
        1_500_000,
        3,
    )
