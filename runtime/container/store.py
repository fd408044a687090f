"""Containers on disk: one directory each, holding its record, state, log and filesystem.

containers/<id>/config.json   what was asked and resolved (written once at create)
containers/<id>/state.json    created | running, with the pids and start times
containers/<id>/exit.json     written by the shim when the container ends
containers/<id>/container.log JSON lines (see shim_loop)
containers/<id>/{init,upper,work,rootfs}  overlay layers and mount point
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ContainerError, NotFound
from runtime.files import write_json


@dataclass
class State:
    """A container's run state, as state.json keeps it."""

    status: str = "created"  # created | running (exited is derived from exit.json)
    pid: int = 0
    pid_start: int = 0  # /proc/<pid>/stat start time, to tell a reused pid apart
    shim_pid: int = 0
    shim_start: int = 0
    started_at: str = ""
    error: str = ""
    network: dict[str, Any] = field(default_factory=dict)  # the bridge attachment
    overlays: dict[str, Any] = field(default_factory=dict)  # network id -> its endpoint
    # The cluster's attachments of this run (spec.cluster_networks), as OverlayAttachments.
    cluster_overlays: list[dict[str, Any]] = field(default_factory=list)


def proc_start_time(pid: int) -> int:
    """The kernel's start time of `pid` (0 when it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, start: int) -> bool:
    """True when `pid` still is the process that started at `start` and is no zombie."""
    if not pid or proc_start_time(pid) != start:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


class ContainerDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def exit_file(self) -> Path:
        return self.path / "exit.json"

    @property
    def log_file(self) -> Path:
        return self.path / "container.log"

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config_file.read_text())
        return data

    def state(self) -> State:
        return State(**json.loads(self.state_file.read_text()))

    def save_state(self, state: State) -> None:
        write_json(self.state_file, asdict(state), make_parents=False)

    def exit(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.exit_file.read_text())
        except FileNotFoundError:
            return None
        return data

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise start/stop/remove of this container between processes."""
        try:
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise NotFound(f"no such container: {self.id}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class ContainerStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def all(self) -> list[ContainerDir]:
        if not self.root.is_dir():
            return []
        found: list[tuple[float, ContainerDir]] = []
        for path in self.root.iterdir():
            d = ContainerDir(path)
            try:
                found.append((d.config_file.stat().st_mtime, d))
            except (FileNotFoundError, NotADirectoryError):
                continue  # not a container (the lock file), or being created or removed
        return [d for _, d in sorted(found, key=lambda item: item[0], reverse=True)]

    def find(self, name_or_id: str) -> ContainerDir:
        """By exact name, exact id, or unique id prefix (like Docker)."""
        if not name_or_id:
            raise NotFound("no container named")
        candidates = self.all()
        for d in candidates:
            if d.id == name_or_id:
                return d
            with contextlib.suppress(FileNotFoundError):  # one removed meanwhile
                if d.config().get("name") == name_or_id:
                    return d
        matches = [d for d in candidates if d.id.startswith(name_or_id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ContainerError(f"container id prefix {name_or_id} is ambiguous")
        raise NotFound(f"no such container: {name_or_id}")

    @contextlib.contextmanager
    def creating(self) -> Iterator[None]:
        """Held while a name is checked and a new container dir written."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
