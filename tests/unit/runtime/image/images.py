"""Small images built in memory for tests, in OCI or Docker form, with or without an index."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass

from runtime.image import mediatypes
from runtime.image.manifests import host_platform
from tests.unit.runtime.image.fake_registry import FakeRegistry


def layer_tar(files: dict[str, bytes], uid: int | None = None, gid: int | None = None) -> bytes:
    """An uncompressed layer: `files` ("dir/name" -> content; parents added as dirs), owned
    by `uid`/`gid` (default: whoever runs the test, so unpacking needs no root)."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            parts = name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in dirs:
                    dirs.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    info.uid = os.getuid() if uid is None else uid
                    info.gid = os.getgid() if gid is None else gid
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 1700000000
            info.uid = os.getuid() if uid is None else uid
            info.gid = os.getgid() if gid is None else gid
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@dataclass
class BuiltImage:
    manifest: bytes
    media_type: str
    config: bytes
    blobs: list[bytes]  # compressed layers
    diff_ids: list[str]

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def _desc(media_type: str, data: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def build(layers: list[bytes], docker: bool = False, cmd: str = "sh") -> BuiltImage:
    """An image of `layers` (uncompressed tars), gzip-compressed."""
    blobs = [gzip.compress(raw, mtime=0) for raw in layers]
    diff_ids = ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in layers]
    config = json.dumps(
        {
            "architecture": host_platform().architecture,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin"], "Cmd": [cmd]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                for i in range(len(layers))
            ],
        }
    ).encode()
    layer_type = mediatypes.DOCKER_LAYER_GZIP if docker else mediatypes.OCI_LAYER_GZIP
    media_type = mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": _desc(mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG, config),
            "layers": [_desc(layer_type, blob) for blob in blobs],
        }
    ).encode()
    return BuiltImage(manifest, media_type, config, blobs, diff_ids)


def publish(registry: FakeRegistry, repo: str, tag: str, image: BuiltImage) -> str:
    for blob in [*image.blobs, image.config]:
        registry.put_blob(repo, blob)
    return registry.put_manifest(repo, tag, image.manifest, image.media_type)


def publish_index(
    registry: FakeRegistry, repo: str, tag: str, images: dict[str, BuiltImage]
) -> str:
    """An OCI index of `images` keyed by "os/arch", plus an attestation-like entry."""
    entries = []
    for platform, image in images.items():
        publish(registry, repo, image.digest, image)
        os_name, arch = platform.split("/")
        entries.append(
            {
                **_desc(image.media_type, image.manifest),
                "platform": {"os": os_name, "architecture": arch},
            }
        )
    entries.append(
        {
            **_desc(mediatypes.OCI_MANIFEST, b"{}"),
            "platform": {"os": "unknown", "architecture": "unknown"},
        }
    )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    ).encode()
    return registry.put_manifest(repo, tag, index, mediatypes.OCI_INDEX)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rebuild_with_config(image: BuiltImage, config: bytes) -> BuiltImage:
    """`image` with another config blob (and a manifest naming it)."""
    manifest = json.loads(image.manifest)
    manifest["config"]["digest"] = digest_of(config)
    manifest["config"]["size"] = len(config)
    return BuiltImage(
        json.dumps(manifest).encode(), image.media_type, config, image.blobs, image.diff_ids
    )
