"""The node description: platform names, and resources from cgroup limits or the host."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.node_description import architecture, describe, resources

GIB = 1 << 30


def fake_proc(tmp_path: Path, cgroups: str, mem_kib: int = 8 * 1024 * 1024) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroups)
    (proc / "meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree:  1 kB\n")
    return proc


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


V1_SELF = "4:memory:/machines/node1\n2:cpu,cpuacct:/machines/node1\n0::/\n"


def test_v1_limits_of_an_ancestor_apply(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory/machines/memory.limit_in_bytes", str(2 * GIB))
    write(root / "memory/machines/node1/memory.limit_in_bytes", str(9223372036854771712))
    write(root / "cpu/machines/node1/cpu.cfs_quota_us", "150000")
    write(root / "cpu/machines/node1/cpu.cfs_period_us", "100000")
    write(root / "cpu/machines/cpu.cfs_quota_us", "-1")
    write(root / "cpu/machines/cpu.cfs_period_us", "100000")
    found = resources(cgroup_root=root, proc=fake_proc(tmp_path, V1_SELF), cpu_count=4)
    assert found.memory_bytes == 2 * GIB
    assert found.nano_cpus == 1_500_000_000


def test_v1_without_limits_is_the_whole_host(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory/machines/node1/memory.limit_in_bytes", str(9223372036854771712))
    write(root / "cpu/machines/node1/cpu.cfs_quota_us", "-1")
    write(root / "cpu/machines/node1/cpu.cfs_period_us", "100000")
    found = resources(cgroup_root=root, proc=fake_proc(tmp_path, V1_SELF, 4096), cpu_count=2)
    assert found.memory_bytes == 4096 * 1024
    assert found.nano_cpus == 2_000_000_000


def test_a_configured_cgroup_parent_is_where_limits_are_read(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory/elsewhere/memory.limit_in_bytes", str(GIB))
    found = resources(
        "/elsewhere/shoal", cgroup_root=root, proc=fake_proc(tmp_path, V1_SELF), cpu_count=2
    )
    assert found.memory_bytes == GIB  # the parent's "shoal" dir need not exist yet


def test_v2_limits(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory pids")
    write(root / "machine.slice/memory.max", str(3 * GIB))
    write(root / "machine.slice/cpu.max", "max 100000")
    write(root / "machine.slice/node1/memory.max", "max")
    write(root / "machine.slice/node1/cpu.max", "50000 100000")
    proc = fake_proc(tmp_path, "0::/machine.slice/node1\n")
    found = resources(cgroup_root=root, proc=proc, cpu_count=8)
    assert found.memory_bytes == 3 * GIB
    assert found.nano_cpus == 500_000_000


def test_limits_above_the_host_are_capped(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory")
    write(root / "big/memory.max", str(64 * GIB))
    write(root / "big/cpu.max", "800000 100000")
    found = resources(cgroup_root=root, proc=fake_proc(tmp_path, "0::/big\n", 1024), cpu_count=2)
    assert found.memory_bytes == 1024 * 1024
    assert found.nano_cpus == 2_000_000_000


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm"), ("riscv64", "riscv64")],
)
def test_architecture_names_as_go_spells_them(machine: str, expected: str) -> None:
    assert architecture(machine) == expected


def test_description_of_this_machine() -> None:
    description = describe("node-a", {"zone": "east"})
    assert description.hostname == "node-a"
    assert description.platform.os == platform.system().lower() == "linux"
    assert description.platform.architecture == architecture()
    assert 0 < description.resources.nano_cpus <= (os.cpu_count() or 1) * 1_000_000_000
    assert description.resources.memory_bytes > 0
    assert dict(description.engine.labels) == {"zone": "east"}
    assert description.engine.engine_version
    assert describe().hostname == os.uname().nodename


@pytest.mark.parametrize("key", ["", " zone"])
def test_bad_label_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="invalid engine label key"):
        describe("n", {key: "x"})
