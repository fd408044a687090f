"""The image store's metadata on disk: one JSON record per image and one map of names.

images/imagedb/<config hex>.json   the image: manifest, layers, repositories it came from
images/references.json             {"<repo>:<tag>" or "<repo>@<digest>": image id}

Every change is a read-modify-write under images/metadata.lock (an flock, so two `shoal`
processes can work at once) and every file is replaced atomically.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from runtime.files import flocked, read_json, write_json
from runtime.image import digests
from runtime.image.manifests import Descriptor


class LayerRecord(NamedTuple):
    """A layer as an image record keeps it."""

    digest: str
    media_type: str
    size: int
    diff_id: str
    chain_id: str

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LayerRecord:
        return cls(
            digests.validate(obj["digest"]),
            obj["mediaType"],
            int(obj["size"]),
            digests.validate(obj["diff_id"]),
            digests.validate(obj["chain_id"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "diff_id": self.diff_id,
            "chain_id": self.chain_id,
        }


@dataclass
class ImageRecord:
    """What the store keeps about one image (by config digest)."""

    id: str
    manifest: Descriptor
    config_size: int
    layers: list[LayerRecord]
    # Repositories ("registry/path") known to hold the image's blobs: cross-repo mount sources.
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ImageRecord:
        m = obj["manifest"]
        return cls(
            id=digests.validate(obj["id"]),
            manifest=Descriptor(m["mediaType"], digests.validate(m["digest"]), int(m["size"])),
            config_size=int(obj["config_size"]),
            layers=[LayerRecord.from_json(layer) for layer in obj["layers"]],
            sources=list(obj.get("sources", [])),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "manifest": self.manifest.to_json(),
            "config_size": self.config_size,
            "layers": [layer.to_json() for layer in self.layers],
            "sources": self.sources,
        }

    def blobs(self) -> set[str]:
        return {self.id, self.manifest.digest, *(layer.digest for layer in self.layers)}

    def add_source(self, repository: str) -> None:
        if repository not in self.sources:
            self.sources.append(repository)


class Metadata:
    def __init__(self, images_dir: Path) -> None:
        self.dir = images_dir
        self.db = images_dir / "imagedb"
        self.references_file = images_dir / "references.json"
        self.lock_file = images_dir / "metadata.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with flocked(self.lock_file):
            yield

    def references(self) -> dict[str, str]:
        refs = read_json(self.references_file, {})
        return {str(k): str(v) for k, v in refs.items()} if isinstance(refs, dict) else {}

    def save_references(self, refs: dict[str, str]) -> None:
        write_json(self.references_file, refs)

    def record(self, image_id: str) -> ImageRecord | None:
        obj = read_json(self.db / f"{digests.hex_of(image_id)}.json", None)
        return ImageRecord.from_json(obj) if obj is not None else None

    def records(self) -> list[ImageRecord]:
        if not self.db.is_dir():
            return []
        out = []
        for path in sorted(self.db.glob("*.json")):
            record = (
                self.record(f"sha256:{path.stem}")
                if digests.is_digest(f"sha256:{path.stem}")
                else None
            )
            if record is not None:
                out.append(record)
        return out

    def save_record(self, record: ImageRecord) -> None:
        write_json(self.db / f"{digests.hex_of(record.id)}.json", record.to_json())

    def delete_record(self, image_id: str) -> None:
        (self.db / f"{digests.hex_of(image_id)}.json").unlink(missing_ok=True)
