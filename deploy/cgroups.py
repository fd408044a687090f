"""Cgroup parents for lab machines, on every mounted hierarchy (v1 controllers and v2).

A machine's cgroup parent is one relative path (e.g. /swarm-machine/node1) created under the
root of each hierarchy, so whatever runs on the machine, the runtime's containers included,
can be found and killed and its accounting stays apart from the other machines.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import MachineError

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Hierarchy:
    mountpoint: Path
    version: int  # 1 or 2
    controllers: frozenset[str]


def hierarchies(mountinfo: str | None = None) -> list[Hierarchy]:
    """Every cgroup hierarchy mounted in this mount namespace (one entry per hierarchy;
    `mountinfo` is the text of /proc/self/mountinfo, read when not given)."""
    found: dict[str, Hierarchy] = {}
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        fstype, super_opts = tail[0], tail[2] if len(tail) > 2 else ""
        root, mountpoint = fields[3], fields[4]
        if root != "/" or fstype not in ("cgroup", "cgroup2"):
            continue
        if fstype == "cgroup2":
            key, hier = "cgroup2", Hierarchy(Path(mountpoint), 2, frozenset())
        else:
            opts = frozenset(super_opts.split(",")) - {"rw", "ro"}
            key, hier = ",".join(sorted(opts)), Hierarchy(Path(mountpoint), 1, opts)
        found.setdefault(key, hier)
    return list(found.values())


def _copy_cpuset(directory: Path) -> None:
    """v1 cpuset cgroups accept no task until cpus and mems are set: inherit the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = directory / name
        if own.exists() and not own.read_text().strip():
            own.write_text((directory.parent / name).read_text())


def create(relpath: str) -> None:
    """Create the cgroup `relpath` (and missing parents) in every hierarchy."""
    for hier in hierarchies():
        directory = hier.mountpoint / relpath.lstrip("/")
        missing = [d for d in [directory, *directory.parents] if not d.exists()]
        for d in reversed(missing):
            d.mkdir()
            if "cpuset" in hier.controllers:
                _copy_cpuset(d)


def join(relpath: str, pid: int = 0) -> None:
    """Move process `pid` (0 = the caller) into cgroup `relpath` in every hierarchy."""
    for hier in hierarchies():
        procs = hier.mountpoint / relpath.lstrip("/") / "cgroup.procs"
        if procs.exists():
            procs.write_text(str(pid or os.getpid()))


def _subtree(directory: Path) -> list[Path]:
    """`directory` and all cgroups below it, deepest first."""
    if not directory.is_dir():
        return []
    out: list[Path] = []
    for dirpath, _dirnames, _files in os.walk(directory, topdown=False):
        out.append(Path(dirpath))
    return out


def _live_pids(procs: str) -> set[int]:
    """The pids in a cgroup.procs text. A process exiting as the file is read shows as 0
    (its pid is already gone): never a pid to signal, since kill(0) means our own group."""
    return {pid for pid in map(int, procs.split()) if pid > 0}


def pids(relpath: str) -> set[int]:
    """Every process in cgroup `relpath` or below it, in any hierarchy."""
    found: set[int] = set()
    for hier in hierarchies():
        for d in _subtree(hier.mountpoint / relpath.lstrip("/")):
            try:
                found.update(_live_pids((d / "cgroup.procs").read_text()))
            except FileNotFoundError:
                continue
    return found


def remove(relpath: str, timeout: float = 10.0) -> None:
    """Kill every process below `relpath`, then remove the cgroups; absent ones are fine.

    Empty ancestors are removed too, up to the hierarchy root (rmdir of a busy one fails
    harmlessly), so the hierarchies end exactly as they were before `create`.
    """
    deadline = time.monotonic() + timeout
    while (left := pids(relpath)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    if left:
        raise MachineError(f"processes {sorted(left)} in cgroup {relpath} survived SIGKILL")
    for hier in hierarchies():
        top = hier.mountpoint / relpath.lstrip("/")
        for d in _subtree(top):
            _rmdir_retry(d, deadline)
        parent = top.parent
        while parent != hier.mountpoint and parent.is_dir():
            try:
                parent.rmdir()
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    break
                raise
            parent = parent.parent


def _rmdir_retry(directory: Path, deadline: float) -> None:
    """rmdir a cgroup; a just-killed process can keep it busy for a moment."""
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
