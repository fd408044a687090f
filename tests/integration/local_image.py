"""An image made of directories already on disk, for engine tests that need no registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
