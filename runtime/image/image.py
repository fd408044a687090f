"""What an image is to its users: its id, config, layers, names, and the dirs a container's
overlay stacks (`lower_dirs()`, top layer first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


class Layer(NamedTuple):
    """One layer of a local image: its blob and its unpacked directory."""

    digest: str  # the (compressed) blob in the content store and registries
    media_type: str
    size: int  # of the blob
    diff_id: str  # sha256 of the uncompressed tar
    chain_id: str  # names the unpacked dir
    unpacked_size: int
    link: Path  # short path of the unpacked dir


class Image(NamedTuple):
    """A local image: its config and layers, and the names it goes by."""

    id: str  # the config's digest
    manifest_digest: str
    manifest_media_type: str
    config: dict[str, Any]  # the OCI image config: "config" (Env, Cmd...), rootfs, history...
    layers: tuple[Layer, ...]  # bottom first
    repo_tags: tuple[str, ...]  # normalised, e.g. "docker.io/library/busybox:latest"
    repo_digests: tuple[str, ...]

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def container_config(self) -> dict[str, Any]:
        """The config's container settings: Env, Cmd, Entrypoint, WorkingDir, User,
        ExposedPorts, Labels, Volumes, StopSignal..."""
        section = self.config.get("config")
        return section if isinstance(section, dict) else {}

    @property
    def created(self) -> str:
        created = self.config.get("created")
        return created if isinstance(created, str) else ""

    @property
    def size(self) -> int:
        """Bytes of file content in all layers, unpacked."""
        return sum(layer.unpacked_size for layer in self.layers)

    def lower_dirs(self) -> list[Path]:
        """The layers' dirs for overlay's lowerdir, top layer first (short paths)."""
        return [layer.link for layer in reversed(self.layers)]
