"""Fixtures for integration tests: lab machines and the lab registry, torn down even on failure.

They drive the same library as `swarm-machine` (deploy.lab), with a per-run name prefix so
concurrent or crashed runs never collide; labs left by a crashed earlier run are removed first.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.lab import Lab
from deploy.netns_driver import Machine
from runtime.config import EngineConfig
from runtime.container.engine import Engine
from tests.integration.host_snapshot import HostSnapshot
from tests.integration.local_image import LocalImage

RUN_PREFIX = f"st{os.getpid()}"
STALE_LAB = re.compile(r"^st(\d+)-")
SWARM_MACHINE = str(Path(sys.executable).parent / "swarm-machine")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def lab_api() -> Lab:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (real namespaces, cgroups, mounts)")
    lab = Lab()
    for rec in lab.storage.labs():
        match = STALE_LAB.match(rec.name)
        if match and not _alive(int(match.group(1))):
            lab.down(rec.name)
    return lab


@dataclass
class LabHandle:
    """A running lab for one test: its name, registry `host:port` and machines."""

    api: Lab
    name: str
    registry: str
    machines: list[Machine]

    def env(self, machine: Machine) -> dict[str, str]:
        return machine.environment(self.registry)

    def run(self, machine: Machine, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `machine` (its namespaces, cgroup and environment)."""
        return machine.popen(argv, self.env(machine), **kwargs)


_counter = iter(range(10**6))


def unique_name(tag: str = "") -> str:
    """A lab or machine name unique to this run (carries the run prefix)."""
    return f"{RUN_PREFIX}-{tag}{next(_counter)}"


@pytest.fixture
def cluster(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> Iterator[Any]:
    """A SwarmCluster on a lab of three machines (swarmd started by the test), every daemon
    killed afterwards; a test module may define its own `cluster`."""
    from tests.integration.manager.swarm_cluster import SwarmCluster  # it imports this module

    swarm = SwarmCluster(make_lab(3), tmp_path)
    try:
        yield swarm
    finally:
        swarm.stop_all()


@pytest.fixture
def make_lab(lab_api: Lab, host_unchanged: HostSnapshot) -> Iterator[Callable[[int], LabHandle]]:
    """Factory: make_lab(N) brings up a lab with N machines; all are removed after the test,
    and the host must then be as it was before (checked by `host_unchanged`)."""
    made: list[str] = []

    def factory(machines: int = 3) -> LabHandle:
        name = unique_name("l")
        made.append(name)
        status = lab_api.up(name, machines)
        return LabHandle(
            api=lab_api,
            name=name,
            registry=status["registry"],
            machines=[lab_api.machine(m["name"]) for m in status["machines"]],
        )

    yield factory
    for name in made:
        lab_api.down(name)


@pytest.fixture
def host_unchanged(lab_api: Lab) -> Iterator[HostSnapshot]:
    """Fails the test if the host's netns, links, mounts or cgroups differ after it."""
    before = HostSnapshot.take()
    yield before
    assert HostSnapshot.take().difference(before) == {}


def swarm_machine(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the real swarm-machine program."""
    return subprocess.run(
        [SWARM_MACHINE, *args], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


@pytest.fixture(scope="session")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> LocalImage:
    from deploy import busybox_image

    layer = tmp_path_factory.mktemp("busybox-layer")
    with tarfile.open(fileobj=io.BytesIO(busybox_image.layer_tar())) as tar:
        tar.extractall(layer)  # our own image, built from the host's busybox: trusted
    for applet in ("bin/sh",):
        assert (layer / applet).is_symlink()
    return LocalImage([layer], {"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}})


@pytest.fixture
def engine_on(make_lab: Callable[[int], LabHandle]) -> Iterator[Callable[[], Engine]]:
    """engine_on() -> an Engine whose root and cgroups live in a fresh lab machine."""
    engines: list[Engine] = []

    def factory() -> Engine:
        lab = make_lab(1)
        machine = lab.machines[0]
        config = EngineConfig(
            root=machine.state_dir / "shoal", cgroup_parent=f"{machine.cgroup_parent}/shoal"
        )
        engine = Engine(config, cleanup_on_exit=False)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:  # containers first: the lab teardown would kill them anyway
        for info in engine.list(all=True):
            engine.remove(info["Id"], force=True)
