"""A runtime engine and image store for controller and worker tests, without root.

A fake container's process is a real `sleep` child, so its pid is real and the executor
watches it with a real pidfd; `finish(id, code)` makes it end with an exit code.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.container.spec import ContainerSpec, OverlayAttachment
from runtime.errors import ContainerError, NotFound
from runtime.image.errors import ImageNotFound, RegistryError


@dataclass
class FakeImage:
    ref: str
    stop_signal: str = ""

    @property
    def id(self) -> str:
        return "sha256:" + "a" * 64

    @property
    def config(self) -> dict[str, Any]:
        return {"config": {"StopSignal": self.stop_signal} if self.stop_signal else {}}

    def lower_dirs(self) -> list[Path]:
        return []


class FakeImages:
    """`local` images are there; `registry` ones can be pulled; pulls wait for `gate`,
    lookups for `lookup_gate`."""

    def __init__(self, local: tuple[str, ...] = (), registry: tuple[str, ...] = ()) -> None:
        self.local = {ref: FakeImage(ref) for ref in local}
        self.registry = {ref: FakeImage(ref) for ref in registry}
        self.pulls: list[str] = []
        self.lookups: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.lookup_gate = threading.Event()
        self.lookup_gate.set()

    def get(self, ref: str) -> FakeImage:
        self.lookups.append(ref)
        if not self.lookup_gate.wait(10):
            raise RegistryError("test lookup gate never opened")
        if ref not in self.local:
            raise ImageNotFound(f"no such image: {ref}")
        return self.local[ref]

    def pull(self, ref: str) -> FakeImage:
        self.pulls.append(ref)
        if not self.gate.wait(10):
            raise RegistryError("test gate never opened")
        if ref not in self.registry:
            raise RegistryError(f"{ref}: manifest unknown")
        self.local[ref] = self.registry[ref]
        return self.local[ref]


@dataclass
class FakeContainer:
    id: str
    spec: ContainerSpec
    created: str
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None  # what the process "returns" when it ends
    record: dict[str, Any] | None = None
    cleanups: int = 0
    stop_timeouts: list[float | None] = field(default_factory=list)


class FakeEngine:
    def __init__(self) -> None:
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, container id)
        self.fail_start: Exception | None = None
        # network id -> each set of (address, node address) peers programmed, in order
        self.overlay_peers: dict[str, list[list[tuple[str, str]]]] = {}
        self.dns_served: list[str] = []  # containers whose resolver was (re)opened
        self._lock = threading.RLock()
        self._serial = 0

    def _find(self, name_or_id: str) -> FakeContainer:
        with self._lock:
            for c in self.containers.values():
                if name_or_id in (c.id, c.spec.name):
                    return c
        raise NotFound(f"no such container: {name_or_id}")

    def _status(self, c: FakeContainer) -> str:
        if c.process is None:
            return "created"
        return "running" if c.process.poll() is None else "exited"

    def create(self, spec: ContainerSpec, image: Any) -> str:
        with self._lock:
            if any(c.spec.name == spec.name for c in self.containers.values()):
                raise ContainerError(f"the container name {spec.name!r} is already in use")
            self._serial += 1
            container = FakeContainer(secrets.token_hex(32), spec, f"{self._serial:06d}")
            self.containers[container.id] = container
            self.calls.append(("create", container.id))
            return container.id

    def start(self, name_or_id: str, attach: bool = False, attended: bool = False) -> None:
        c = self._find(name_or_id)
        self.calls.append(("start", c.id))
        if self.fail_start is not None:
            raise self.fail_start
        c.process = subprocess.Popen(["sleep", "600"])

    def finish(self, name_or_id: str, code: int) -> None:
        """Make the container's process end, as if with exit status `code`."""
        c = self._find(name_or_id)
        assert c.process is not None
        c.exit_code = code
        c.process.kill()

    def _record(self, c: FakeContainer) -> dict[str, Any]:
        assert c.process is not None
        returned = c.process.wait()
        if c.record is None:
            code = c.exit_code if c.exit_code is not None else 128 - returned
            c.record = {"exit_code": code, "signal": 0, "oom_killed": False}
        return c.record

    def wait(self, name_or_id: str, timeout: float | None = None) -> dict[str, Any]:
        c = self._find(name_or_id)
        if c.process is None:
            raise ContainerError(f"container {c.spec.name} is not running")
        try:
            c.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"container {c.id[:12]} still running") from None
        return self._record(c)

    def stop(self, name_or_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        c = self._find(name_or_id)
        c.stop_timeouts.append(timeout)
        self.calls.append(("stop", c.id))
        if c.process is None:
            return None
        if c.process.poll() is None:
            c.process.send_signal(signal.SIGTERM)
        return self._record(c)

    def remove(self, name_or_id: str, force: bool = False) -> None:
        c = self._find(name_or_id)
        if self._status(c) == "running":
            if not force:
                raise ContainerError(f"cannot remove running container {c.spec.name}")
            c.process.kill()  # type: ignore[union-attr]
            c.process.wait()  # type: ignore[union-attr]
        with self._lock:
            del self.containers[c.id]
        self.calls.append(("remove", c.id))

    def cleanup(self, name_or_id: str) -> None:
        self._find(name_or_id).cleanups += 1

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        c = self._find(name_or_id)
        status = self._status(c)
        return {
            "Id": c.id,
            "Name": c.spec.name,
            "Created": c.created,
            "State": {
                "Status": status,
                "Running": status == "running",
                "Pid": c.process.pid if status == "running" and c.process else 0,
            },
            "Config": {"Image": c.spec.image, "Labels": c.spec.labels},
        }

    def list(self, all: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            ids = list(self.containers)
        infos = [self.inspect(i) for i in ids]
        return [i for i in infos if all or i["State"]["Running"]]

    def set_overlay_peers(
        self, overlay: OverlayAttachment, peers: Sequence[tuple[str, str]]
    ) -> None:
        with self._lock:
            self.overlay_peers.setdefault(overlay.network_id, []).append(sorted(peers))

    def serve_dns(self, name_or_id: str) -> None:
        with self._lock:
            self.dns_served.append(name_or_id)

    def kill_all(self) -> None:
        """Test teardown: no sleep process outlives its test."""
        for c in list(self.containers.values()):
            if c.process is not None and c.process.poll() is None:
                c.process.kill()
                c.process.wait()
