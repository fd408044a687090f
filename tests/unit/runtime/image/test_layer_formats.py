"""Layers compressed with gzip, zstd or not at all unpack alike (by magic number, not by
media type); zstd without its library, and garbage, are clear errors that leave nothing."""

from __future__ import annotations

import gzip
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from runtime.image import digests
from runtime.image.errors import LayerError
from runtime.image.layer_store import LayerStore
from tests.unit.runtime.image import images

RAW = images.layer_tar({"etc/hello": b"hello\n"})
DIFF_ID = "sha256:" + hashlib.sha256(RAW).hexdigest()
(CHAIN_ID,) = digests.chain_ids([DIFF_ID])


def opener(path: Path) -> Callable[[], BinaryIO]:
    def open_blob() -> BinaryIO:
        return path.open("rb")

    return open_blob


def unpacked(tmp_path: Path, blob: bytes) -> Path:
    tmp_path.mkdir(exist_ok=True)
    store = LayerStore(tmp_path / "images")
    path = tmp_path / "blob"
    path.write_bytes(blob)
    assert store.unpack(CHAIN_ID, DIFF_ID, opener(path))
    return store.diff_dir(CHAIN_ID)


def left(tmp_path: Path) -> list[str]:
    layers = tmp_path / "images" / "layers"
    return [p.name for p in layers.iterdir() if not p.name.endswith(".lock")]


def test_gzip_and_uncompressed(tmp_path: Path) -> None:
    assert (unpacked(tmp_path / "gz", gzip.compress(RAW)) / "etc/hello").read_bytes() == b"hello\n"
    assert (unpacked(tmp_path / "raw", RAW) / "etc/hello").read_bytes() == b"hello\n"


def test_zstd(tmp_path: Path) -> None:
    import zstandard  # a dependency of Shoal: its absence must fail, not skip

    blob = zstandard.ZstdCompressor().compress(RAW)
    assert (unpacked(tmp_path, blob) / "etc/hello").read_bytes() == b"hello\n"


def test_zstd_without_its_library_is_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import fails
    store = LayerStore(tmp_path / "images")
    path = tmp_path / "blob"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 100)
    with pytest.raises(LayerError, match="zstd-compressed layers are unsupported here"):
        store.unpack(CHAIN_ID, DIFF_ID, opener(path))
    assert left(tmp_path) == []


@pytest.mark.parametrize(
    "blob",
    [gzip.compress(RAW)[:-30], b"\x1f\x8b" + b"garbage" * 50, b"not a tar at all" * 64],
    ids=["truncated gzip", "corrupt gzip", "not a tar"],
)
def test_garbage_is_a_layer_error(tmp_path: Path, blob: bytes) -> None:
    store = LayerStore(tmp_path / "images")
    path = tmp_path / "blob"
    path.write_bytes(blob)
    with pytest.raises(LayerError, match="not a valid"):
        store.unpack(CHAIN_ID, DIFF_ID, opener(path))
    assert left(tmp_path) == []
