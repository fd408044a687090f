"""Container cgroups on v1 (one hierarchy per controller) and v2 (unified), detected at start.

A container's cgroup sits below a parent, by default `<the engine's own cgroup>/shoal`, so an
engine running inside a lab machine keeps its containers inside that machine's cgroup parent.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from runtime.container import devices
from runtime.errors import ContainerError

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "cpuset", "freezer", "devices", "blkio")
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    """A container's resource limits."""

    memory_bytes: int = 0  # 0 = unlimited
    nano_cpus: int = 0  # 1e9 = one CPU
    pids: int = 0


class Usage(NamedTuple):
    memory_bytes: int
    memory_limit_bytes: int
    cpu_ns: int
    pids: int


def is_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller (key "" for the v2 hierarchy)."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            out[controller] = path
    return out


class ContainerCgroup:
    """The cgroup(s) of one container; the paths are stored so a later process finds them."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths  # controller ("" for v2) -> directory

    @classmethod
    def plan(cls, container_id: str, parent: str | None = None) -> ContainerCgroup:
        own = _own_cgroups()
        if is_v2():
            base = parent if parent is not None else f"{own.get('', '/')}/shoal"
            return cls({"": CGROUP_ROOT / base.strip("/") / container_id})
        paths = {}
        for controller in V1_CONTROLLERS:
            hierarchy = CGROUP_ROOT / controller
            if not hierarchy.is_dir():
                continue
            base = parent if parent is not None else f"{own.get(controller, '/')}/shoal"
            paths[controller] = hierarchy / base.strip("/") / container_id
        return cls(paths)

    @classmethod
    def from_json(cls, data: dict[str, str]) -> ContainerCgroup:
        return cls({k: Path(v) for k, v in data.items()})

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.paths.items()}

    @property
    def procs_files(self) -> list[str]:
        """The cgroup.procs files a process writes "0" to in order to join."""
        return [str(p / "cgroup.procs") for p in dict.fromkeys(self.paths.values())]

    def create(self, limits: Limits) -> None:
        for controller, path in self.paths.items():
            missing = [d for d in (path, *path.parents) if not d.exists()]
            for d in reversed(missing):
                d.mkdir()
                if controller == "cpuset":
                    for name in ("cpuset.cpus", "cpuset.mems"):
                        (d / name).write_text((d.parent / name).read_text())
        if "" in self.paths:
            self._enable_v2_controllers()
        self._allow_devices()
        self.apply(limits)

    def _allow_devices(self) -> None:
        """Only the default devices: the kernel refuses any other open or mknod."""
        if "" in self.paths:
            try:
                devices.attach_v2_filter(str(self.paths[""]))
            except OSError as exc:
                raise ContainerError(
                    f"cannot attach the device filter to {self.paths[''].name}: {exc.strerror}"
                ) from None
        elif "devices" in self.paths:
            for name, line in devices.v1_rules():
                self._write(self.paths["devices"] / name, line)
        else:
            raise ContainerError("no devices cgroup: containers could open any host device")

    def _enable_v2_controllers(self) -> None:
        path = self.paths[""]
        for d in reversed(path.parents):
            if d == CGROUP_ROOT or CGROUP_ROOT in d.parents:
                control = d / "cgroup.subtree_control"
                wanted = {"cpu", "memory", "pids"} & set(
                    (d / "cgroup.controllers").read_text().split()
                )
                enabled = set(control.read_text().split())
                if wanted - enabled:
                    try:
                        control.write_text(" ".join(f"+{c}" for c in sorted(wanted - enabled)))
                    except OSError as exc:
                        raise ContainerError(
                            f"cannot enable cgroup controllers in {d}: {exc.strerror} "
                            "(a cgroup v2 parent with processes in it cannot delegate; "
                            "set a cgroup parent of its own)"
                        ) from None

    def apply(self, limits: Limits) -> None:
        quota = limits.nano_cpus * CFS_PERIOD_US // 1_000_000_000 if limits.nano_cpus else 0
        if "" in self.paths:
            p = self.paths[""]
            self._write(p / "memory.max", str(limits.memory_bytes or "max"))
            if limits.memory_bytes and (p / "memory.swap.max").exists():
                self._write(p / "memory.swap.max", "0")
            self._write(p / "cpu.max", f"{quota or 'max'} {CFS_PERIOD_US}")
            self._write(p / "pids.max", str(limits.pids or "max"))
            return
        if "memory" in self.paths:
            p = self.paths["memory"]
            self._write(p / "memory.limit_in_bytes", str(limits.memory_bytes or -1))
            if (p / "memory.memsw.limit_in_bytes").exists():
                self._write(p / "memory.memsw.limit_in_bytes", str(limits.memory_bytes or -1))
        if "cpu" in self.paths:
            p = self.paths["cpu"]
            self._write(p / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            self._write(p / "cpu.cfs_quota_us", str(quota or -1))
        if "pids" in self.paths:
            self._write(self.paths["pids"] / "pids.max", str(limits.pids or "max"))

    @staticmethod
    def _write(path: Path, value: str) -> None:
        try:
            path.write_text(value)
        except OSError as exc:
            raise ContainerError(f"cannot set {path.name} to {value}: {exc.strerror}") from None

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(FileNotFoundError):
                # An exiting process may show as 0: never signal that (kill(0) = our group).
                found.update(p for p in map(int, Path(procs).read_text().split()) if p > 0)
        return found

    def oom_source(self) -> str:
        """The file whose `oom_kill N` line counts OOM kills ("" when there is none)."""
        if "" in self.paths:
            return str(self.paths[""] / "memory.events")
        if "memory" in self.paths:
            return str(self.paths["memory"] / "memory.oom_control")
        return ""

    def oom_kills(self) -> int:
        source = self.oom_source()
        if not source:
            return 0
        try:
            for line in Path(source).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except FileNotFoundError:
            pass
        return 0

    def usage(self) -> Usage:
        def read_int(path: Path, default: int = 0) -> int:
            try:
                text = path.read_text().strip()
            except FileNotFoundError:
                return default
            return default if text == "max" else int(text)

        if "" in self.paths:
            p = self.paths[""]
            cpu_usec = 0
            with contextlib.suppress(FileNotFoundError):
                for line in (p / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        cpu_usec = int(line.split()[1])
            return Usage(
                read_int(p / "memory.current"),
                read_int(p / "memory.max"),
                cpu_usec * 1000,
                read_int(p / "pids.current"),
            )
        mem = self.paths.get("memory")
        limit = read_int(mem / "memory.limit_in_bytes") if mem else 0
        return Usage(
            memory_bytes=read_int(mem / "memory.usage_in_bytes") if mem else 0,
            memory_limit_bytes=0 if limit >= 1 << 62 else limit,
            cpu_ns=read_int(self.paths["cpuacct"] / "cpuacct.usage")
            if "cpuacct" in self.paths
            else 0,
            pids=read_int(self.paths["pids"] / "pids.current") if "pids" in self.paths else 0,
        )

    def freeze(self, frozen: bool) -> None:
        """Stop (or resume) every process of the container at once, for a consistent copy."""
        if "" in self.paths:
            self._write(self.paths[""] / "cgroup.freeze", "1" if frozen else "0")
        elif "freezer" in self.paths:
            self._write(self.paths["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED")

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the cgroup until none is left."""
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            if time.monotonic() > deadline:
                raise ContainerError(f"processes {sorted(pids)} survived SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self, timeout: float = 5.0) -> None:
        self.kill_all(timeout)
        deadline = time.monotonic() + timeout
        for path in dict.fromkeys(self.paths.values()):
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise ContainerError(
                            f"cannot remove cgroup {path}: {exc.strerror}"
                        ) from None
                    time.sleep(0.005)
