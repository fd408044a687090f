"""An engine on a lab machine, and a busybox root filesystem built from the lab's seed image."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.config import EngineConfig
from runtime.container.engine import Engine
from tests.integration.conftest import LabHandle


class LocalImage:
    """An image made of already unpacked layers (the engine's Image protocol)."""

    def __init__(self, layers: list[Path], config: dict[str, Any]) -> None:
        self._layers = layers
        self._config = config

    @property
    def id(self) -> str:
        return "sha256:" + "0" * 64

    @property
    def config(self) -> dict[str, Any]:
        return self._config

    def lower_dirs(self) -> list[Path]:
        return self._layers


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
