"""Manifests, indexes and image configs: parsed from untrusted JSON and validated.

Every descriptor's digest is checked for form (it later names a file), every list for type,
and an index is narrowed to the one manifest for this host's platform.
"""

from __future__ import annotations

import json
import platform
from typing import Any, NamedTuple

from runtime.image import config_schema, digests, mediatypes
from runtime.image.errors import ManifestError

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}


class Platform(NamedTuple):
    """An OS/architecture[/variant] an image is built for."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    machine = platform.machine()
    variant = "v7" if machine == "armv7l" else ""
    return Platform("linux", _ARCH.get(machine, machine), variant)


class Descriptor(NamedTuple):
    """A reference to a blob: media type, digest and size (OCI descriptor)."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class Manifest(NamedTuple):
    """An image manifest: its config blob and layer blobs, bottom layer first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return obj


def descriptor(obj: object, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestError(f"{what}: descriptor is not an object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{what}: descriptor has no mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{what}: descriptor has an invalid size {size!r}")
    return Descriptor(media_type, digests.validate(str(digest)), size)


def _check_media_type(obj: dict[str, Any], media_type: str, what: str) -> None:
    declared = obj.get("mediaType")
    if declared is not None and declared != media_type:
        raise ManifestError(f"{what} says mediaType {declared!r} but was served as {media_type!r}")


def parse_manifest(data: bytes, media_type: str) -> Manifest:
    """An image manifest (OCI or Docker schema 2) with a config and layers we can use."""
    if media_type not in mediatypes.MANIFESTS:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    obj = load_json(data, "manifest")
    _check_media_type(obj, media_type, "manifest")
    if obj.get("schemaVersion") != 2:
        raise ManifestError(f"unsupported manifest schemaVersion {obj.get('schemaVersion')!r}")
    config = descriptor(obj.get("config"), "manifest config")
    if config.media_type not in mediatypes.CONFIGS:
        raise ManifestError(f"not a container image: config media type {config.media_type!r}")
    if config.size > MAX_CONFIG_BYTES:
        raise ManifestError(
            f"image config of {config.size} bytes is larger than the {MAX_CONFIG_BYTES} allowed"
        )
    raw_layers = obj.get("layers")
    if not isinstance(raw_layers, list):
        raise ManifestError("manifest has no list of layers")
    layers = tuple(descriptor(d, f"manifest layer {i}") for i, d in enumerate(raw_layers))
    for layer in layers:
        if layer.media_type not in mediatypes.LAYERS:
            raise ManifestError(f"unsupported layer media type {layer.media_type!r}")
    return Manifest(media_type, config, layers)


def select_platform(data: bytes, media_type: str, want: Platform) -> Descriptor:
    """The manifest for `want` from an index or manifest list."""
    if media_type not in mediatypes.INDEXES:
        raise ManifestError(f"unsupported index media type {media_type!r}")
    obj = load_json(data, "index")
    _check_media_type(obj, media_type, "index")
    entries = obj.get("manifests")
    if not isinstance(entries, list):
        raise ManifestError("index has no list of manifests")
    candidates: list[tuple[int, Descriptor]] = []
    seen: list[str] = []
    for i, entry in enumerate(entries):
        desc = descriptor(entry, f"index entry {i}")
        plat = entry.get("platform") if isinstance(entry, dict) else None
        if not isinstance(plat, dict):
            continue
        have = Platform(
            str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", ""))
        )
        seen.append(str(have))
        if (have.os, have.architecture) != (want.os, want.architecture):
            continue
        if desc.media_type not in mediatypes.MANIFESTS:
            continue
        # An exact variant beats a missing one; another variant does not match.
        if have.variant and want.variant and have.variant != want.variant:
            continue
        candidates.append((0 if have.variant == want.variant else 1, desc))
    if not candidates:
        offered = ", ".join(seen) or "none"
        raise ManifestError(f"no image for platform {want} in the index (it has: {offered})")
    return min(candidates, key=lambda c: c[0])[1]


def parse_config(data: bytes, layer_count: int) -> tuple[str, ...]:
    """The DiffIDs an image config promises, one per layer of its manifest."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ManifestError(
            f"image config of {len(data)} bytes is larger than the {MAX_CONFIG_BYTES} allowed"
        )
    obj = load_json(data, "image config")
    wrong = config_schema.problem(obj)
    if wrong is not None:
        raise ManifestError(f"image config is invalid: {wrong}")
    os_name = obj.get("os")
    if os_name not in (None, "linux"):
        raise ManifestError(f"image is for os {os_name!r}, not linux")
    rootfs = obj.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise ManifestError("image config has no rootfs.diff_ids")
    checked = tuple(digests.validate(str(d)) for d in diff_ids)
    if len(checked) != layer_count:
        raise ManifestError(
            f"image config lists {len(checked)} diff_ids but the manifest has {layer_count} layers"
        )
    return checked
