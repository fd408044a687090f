"""The lab's records on disk: one JSON file per machine and per lab, under one lock.

A record is written before the resources it names are made, and deleted only after they are
gone, so whatever a crashed `swarm-machine` left behind can still be found and torn down.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy.errors import MachineError

DEFAULT_STORAGE = Path("/var/lib/swarm-machine")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def validate_name(name: str, what: str = "machine") -> None:
    if not NAME_RE.match(name):
        raise MachineError(
            f"invalid {what} name {name!r}: use 1-40 lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )


@dataclass
class MachineRecord:
    name: str
    lab: str
    address: str  # "10.77.0.10/16"
    state: str = "creating"  # creating | running | removing
    owner_pid: int = field(default_factory=os.getpid)

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass
class LabRecord:
    name: str
    subnet: str  # "10.77.0.0/16"
    explicit: bool  # made by `lab up` (else made on demand by `create`)
    registry: bool
    state: str = "creating"  # creating | up | removing
    owner_pid: int = field(default_factory=os.getpid)


def _write_json(path: Path, data: dict[str, object]) -> None:
    """Write atomically and durably: a crash leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


class Storage:
    """The storage directory: records, machine state dirs, the registry's data."""

    def __init__(self, root: Path | None = None) -> None:
        env = os.environ.get("SWARM_MACHINE_STORAGE_PATH")
        self.root = root or (Path(env) if env else DEFAULT_STORAGE)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise changes between concurrent swarm-machine processes."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def machine_dir(self, name: str) -> Path:
        return self.root / "machines" / name

    def lab_dir(self, name: str) -> Path:
        return self.root / "labs" / name

    def save_machine(self, rec: MachineRecord) -> None:
        _write_json(self.machine_dir(rec.name) / "machine.json", asdict(rec))

    def save_lab(self, rec: LabRecord) -> None:
        _write_json(self.lab_dir(rec.name) / "lab.json", asdict(rec))

    def machine(self, name: str) -> MachineRecord | None:
        path = self.machine_dir(name) / "machine.json"
        return MachineRecord(**json.loads(path.read_text())) if path.exists() else None

    def lab(self, name: str) -> LabRecord | None:
        path = self.lab_dir(name) / "lab.json"
        return LabRecord(**json.loads(path.read_text())) if path.exists() else None

    def machines(self, lab: str | None = None) -> list[MachineRecord]:
        base = self.root / "machines"
        names = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
        recs = [r for n in names if (r := self.machine(n)) is not None]
        return [r for r in recs if lab is None or r.lab == lab]

    def labs(self) -> list[LabRecord]:
        base = self.root / "labs"
        names = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
        return [r for n in names if (r := self.lab(n)) is not None]
