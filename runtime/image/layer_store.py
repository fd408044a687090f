"""Unpacked layers, keyed by ChainID: images/layers/<chain hex>/diff, plus a short name
images/l/<26 chars> -> ../layers/<chain hex>/diff for overlay's size-limited lowerdir option.

An unpack happens in images/layers/.tmp-<chain hex> and is renamed into place only when the
whole tar was extracted and its DiffID is the one the image config promises, so a layer dir
that exists is complete and verified. A lock per ChainID makes a layer shared by two images
(or two concurrent pulls) be unpacked once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from common.libc import syncfs
from runtime.files import flocked, fsync_dir
from runtime.image import digests
from runtime.image.errors import LayerError

INFO_FILE = "layer.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


class LayerInfo(NamedTuple):
    """An unpacked layer: its ChainID, DiffID and unpacked size."""

    chain_id: str
    diff_id: str
    size: int


class LayerStore:
    def __init__(self, images_dir: Path) -> None:
        self.layers_dir = images_dir / "layers"
        self.links_dir = images_dir / "l"

    def dir(self, chain_id: str) -> Path:
        return self.layers_dir / digests.hex_of(chain_id)

    def diff_dir(self, chain_id: str) -> Path:
        return self.dir(chain_id) / "diff"

    def link(self, chain_id: str) -> Path:
        """The short path of the layer's diff dir (a symlink), for overlay's lowerdir."""
        return self.links_dir / digests.short_id(chain_id)

    def has(self, chain_id: str) -> bool:
        return (self.dir(chain_id) / INFO_FILE).is_file()

    def info(self, chain_id: str) -> LayerInfo:
        try:
            data = json.loads((self.dir(chain_id) / INFO_FILE).read_bytes())
        except FileNotFoundError:
            raise LayerError(f"layer {chain_id} is not unpacked") from None
        return LayerInfo(chain_id, data["diff_id"], data["size"])

    def chain_ids(self) -> set[str]:
        if not self.layers_dir.is_dir():
            return set()
        return {
            f"sha256:{p.name}"
            for p in self.layers_dir.iterdir()
            if digests.is_digest(f"sha256:{p.name}")
        }

    def unpack(
        self,
        chain_id: str,
        diff_id: str,
        open_blob: Callable[[], BinaryIO],
    ) -> bool:
        """Unpack the layer whose tar `open_blob` gives; False when it was there already."""
        if self.has(chain_id):
            self.ensure_link(chain_id)
            return False
        hexdigest = digests.hex_of(chain_id)
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        with flocked(self.layers_dir / f".{hexdigest}.lock"):
            if self.has(chain_id):
                self.ensure_link(chain_id)
                return False
            tmp = self.layers_dir / f"{TMP_PREFIX}{hexdigest}"
            shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed unpack
            (tmp / "diff").mkdir(parents=True)
            os.chmod(tmp / "diff", 0o755)
            try:
                with open_blob() as blob:
                    from runtime.image.unpack import extract  # tarfile: only when unpacking

                    result = extract(blob, tmp / "diff")
                if result.diff_id != diff_id:
                    raise LayerError(
                        f"layer {chain_id}: content has DiffID {result.diff_id}, "
                        f"the image config says {diff_id}"
                    )
                info = {"chain_id": chain_id, "diff_id": diff_id, "size": result.size}
                (tmp / INFO_FILE).write_text(json.dumps(info))
                syncfs(tmp)
                os.rename(tmp, self.dir(chain_id))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(self.layers_dir)
            self.ensure_link(chain_id)
        return True

    def ensure_link(self, chain_id: str) -> None:
        """(Re)make the layer's short link; idempotent."""
        link = self.link(chain_id)
        target = f"../layers/{digests.hex_of(chain_id)}/diff"
        if os.path.islink(link) and os.readlink(link) == target:
            return
        self.links_dir.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.{id(self)}")
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def delete(self, chain_id: str) -> None:
        """Remove an unpacked layer (its short link first, then the dir, atomically)."""
        hexdigest = digests.hex_of(chain_id)
        with flocked(self.layers_dir / f".{hexdigest}.lock"):
            self.link(chain_id).unlink(missing_ok=True)
            if self.dir(chain_id).exists():
                trash = self.layers_dir / f"{TRASH_PREFIX}{hexdigest}"
                shutil.rmtree(trash, ignore_errors=True)
                os.rename(self.dir(chain_id), trash)
                shutil.rmtree(trash)

    def clear_leftovers(self) -> None:
        """Remove lock files and dirs of interrupted unpacks; only while none can run."""
        if not self.layers_dir.is_dir():
            return
        for entry in self.layers_dir.iterdir():
            if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.endswith(".lock"):
                entry.unlink(missing_ok=True)
