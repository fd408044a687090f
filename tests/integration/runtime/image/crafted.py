"""Crafting layer tars entry by entry, hostile ones included (tarfile writes what it is told)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runtime.image import digests
from runtime.image.layer_store import LayerStore


@dataclass
class Entry:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1700000000
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


def tar_of(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.uid, info.gid, info.mtime = (
                e.type,
                e.mode,
                e.uid,
                e.gid,
                e.mtime,
            )
            info.linkname, info.devmajor, info.devminor = e.linkname, e.devmajor, e.devminor
            if e.xattrs:
                info.pax_headers = {
                    f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                    for k, v in e.xattrs.items()
                }
                info.pax_headers["hdrcharset"] = "BINARY"
            info.size = len(e.data)
            tar.addfile(info, io.BytesIO(e.data) if e.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def opener(path: Path) -> Callable[[], BinaryIO]:
    """A function opening `path` for reading (what LayerStore.unpack takes)."""

    def open_blob() -> BinaryIO:
        return path.open("rb")

    return open_blob


def unpack(store: LayerStore, scratch: Path, entries: list[Entry]) -> str:
    """Unpack a layer of `entries` (gzip) as a bottom layer; returns its ChainID."""
    raw = tar_of(entries)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    blob = scratch / f"{diff_id[7:]}.tar.gz"
    blob.write_bytes(gzip.compress(raw))
    (chain_id,) = digests.chain_ids([diff_id])
    store.unpack(chain_id, diff_id, opener(blob))
    return chain_id
