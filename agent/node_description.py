"""What the agent tells the dispatcher about its node: hostname, platform, resources, labels.

CPUs and memory are what containers below the node's cgroup parent can use: the tightest
limit set on that cgroup or any of its ancestors (a lab machine's parent, a systemd slice),
else the whole host.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

from agent.errors import ConfigError
from shoal.v1 import types_pb2

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
NANO = 1_000_000_000

# Architectures as Go and OCI spell them.
ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
}


def architecture(machine: str | None = None) -> str:
    """The Go/OCI name of `machine` (uname's, by default): x86_64 -> amd64."""
    name = machine if machine is not None else platform.machine()
    return ARCHITECTURES.get(name, name)


def own_cgroups(proc: Path = PROC) -> dict[str, str]:
    """This process's cgroup path per v1 controller (key "" for the v2 hierarchy)."""
    out: dict[str, str] = {}
    for line in (proc / "self" / "cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            out[controller] = path
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _upwards(top: Path, relpath: str) -> list[Path]:
    """The cgroup `relpath` below hierarchy `top` and its ancestors up to `top`."""
    directory = top / relpath.strip("/")
    return [directory, *(p for p in directory.parents if p == top or top in p.parents)]


def _memory_limit(files: list[Path]) -> int | None:
    limits = [int(text) for f in files if (text := _read(f)) and text.isdigit()]
    return min(limits) if limits else None


def _v1_cpu_limit(directories: list[Path]) -> int | None:
    limits = []
    for d in directories:
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota and period and quota.isdigit() and int(period) > 0:
            limits.append(int(quota) * NANO // int(period))
    return min(limits) if limits else None


def _v2_cpu_limit(directories: list[Path]) -> int | None:
    limits = []
    for d in directories:
        quota, _, period = (_read(d / "cpu.max") or "max").partition(" ")
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            limits.append(int(quota) * NANO // int(period))
    return min(limits) if limits else None


def host_memory(proc: Path = PROC) -> int:
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "MemTotal":
            return int(value.split()[0]) * 1024
    raise ConfigError(f"no MemTotal in {proc / 'meminfo'}")


def resources(
    cgroup_parent: str | None = None,
    *,
    cgroup_root: Path = CGROUP_ROOT,
    proc: Path = PROC,
    cpu_count: int | None = None,
) -> types_pb2.Resources:
    """CPUs and memory for containers below `cgroup_parent` (default: this process's own
    cgroup), capped by the host's."""
    own = own_cgroups(proc)
    cpus = (cpu_count or os.cpu_count() or 1) * NANO
    memory = host_memory(proc)
    if (cgroup_root / "cgroup.controllers").exists():
        dirs = _upwards(cgroup_root, cgroup_parent or own.get("", "/"))
        memory_limit = _memory_limit([d / "memory.max" for d in dirs])
        cpu_limit = _v2_cpu_limit(dirs)
    else:
        mem_dirs = _upwards(cgroup_root / "memory", cgroup_parent or own.get("memory", "/"))
        cpu_dirs = _upwards(cgroup_root / "cpu", cgroup_parent or own.get("cpu", "/"))
        memory_limit = _memory_limit([d / "memory.limit_in_bytes" for d in mem_dirs])
        cpu_limit = _v1_cpu_limit(cpu_dirs)
    return types_pb2.Resources(
        nano_cpus=min(cpus, cpu_limit) if cpu_limit else cpus,
        memory_bytes=min(memory, memory_limit) if memory_limit else memory,
    )


def describe(
    hostname: str = "",
    engine_labels: Mapping[str, str] | None = None,
    cgroup_parent: str | None = None,
) -> types_pb2.NodeDescription:
    """The node's description, as sent at the start of every session."""
    labels = dict(engine_labels or {})
    for key in labels:
        if not key or key != key.strip():
            raise ConfigError(f"invalid engine label key {key!r}: empty or padded with spaces")
    return types_pb2.NodeDescription(
        hostname=hostname or os.uname().nodename,
        platform=types_pb2.Platform(architecture=architecture(), os=platform.system().lower()),
        resources=resources(cgroup_parent),
        engine=types_pb2.EngineDescription(engine_version=version("shoal"), labels=labels),
    )
