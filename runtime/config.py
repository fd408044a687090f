"""Where an engine keeps its state, and the settings every part of it shares.

Two engines with different roots never see each other's images or containers (two lab
machines on one host each have their own root).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/shoal")


def env_list(name: str) -> tuple[str, ...]:
    return tuple(item for item in os.environ.get(name, "").split(",") if item)


@dataclass(frozen=True)
class EngineConfig:
    """An engine's settings: its state root, registries and cgroup parent."""

    root: Path = DEFAULT_ROOT
    # Registries spoken to over plain HTTP ("host:port"), like Docker's insecure-registries.
    insecure_registries: tuple[str, ...] = field(
        default_factory=lambda: env_list("SHOAL_INSECURE_REGISTRIES")
    )
    max_concurrent_downloads: int = 3
    # Containers' cgroups go below this path in each hierarchy; None = "<own cgroup>/shoal".
    cgroup_parent: str | None = None

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def containers_dir(self) -> Path:
        return self.root / "containers"

    @property
    def network_dir(self) -> Path:
        return self.root / "network"
