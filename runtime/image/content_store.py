"""Content-addressed blobs: images/blobs/sha256/<hex>, every one verified before it appears.

A blob is written to images/ingest/<hex>.partial while it is hashed and counted, fsynced, and
renamed into place only if its digest and size are the announced ones; a mismatch, an overlong
or a short blob is an error that deletes the partial file, so nothing wrong is ever kept.
A transfer that breaks off keeps its partial file, and the next attempt resumes from there
(verifying the whole blob at the end). One lock file per digest serialises writers of the
same blob, across threads and processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from runtime.files import flocked, fsync_dir
from runtime.image import digests
from runtime.image.errors import ContentError, ImageError

# fetch(offset) -> (offset the data really starts at: `offset` or 0, the data's chunks)
Fetch = Callable[[int], tuple[int, Iterable[bytes]]]


class ContentStore:
    def __init__(self, images_dir: Path) -> None:
        self.blob_dir = images_dir / "blobs" / "sha256"
        self.ingest_dir = images_dir / "ingest"

    def path(self, digest: str) -> Path:
        return self.blob_dir / digests.hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the content store") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def digests(self) -> set[str]:
        if not self.blob_dir.is_dir():
            return set()
        return {
            f"sha256:{p.name}"
            for p in self.blob_dir.iterdir()
            if digests.is_digest(f"sha256:{p.name}")
        }

    def add(self, data: bytes) -> str:
        """Store `data` (already in memory); returns its digest."""
        digest = digests.of_bytes(data)
        self.ingest(digest, len(data), lambda _offset: (0, [data]))
        return digest

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def abandon(self, digest: str) -> None:
        """Drop the partial download of `digest` (after giving up on it)."""
        hexdigest = digests.hex_of(digest)
        with flocked(self.ingest_dir / f"{hexdigest}.lock"):
            (self.ingest_dir / f"{hexdigest}.partial").unlink(missing_ok=True)

    def clear_ingest(self) -> None:
        """Remove partial downloads and lock files; only while no transfer can run."""
        if self.ingest_dir.is_dir():
            for entry in self.ingest_dir.iterdir():
                entry.unlink(missing_ok=True)

    def ingest(
        self,
        digest: str,
        size: int,
        fetch: Fetch,
        on_bytes: Callable[[int], None] | None = None,
    ) -> bool:
        """Make blob `digest` of `size` bytes present, fetching what is missing.

        Returns False when it was present already (nothing fetched)."""
        hexdigest = digests.hex_of(digest)
        if self.has(digest):
            return False
        self.ingest_dir.mkdir(parents=True, exist_ok=True)
        with flocked(self.ingest_dir / f"{hexdigest}.lock"):
            if self.has(digest):  # another writer finished it while we waited
                return False
            partial = self.ingest_dir / f"{hexdigest}.partial"
            try:
                self._write_partial(partial, digest, size, fetch, on_bytes)
            except ContentError:
                partial.unlink(missing_ok=True)
                raise
            self.blob_dir.mkdir(parents=True, exist_ok=True)
            os.rename(partial, self.path(digest))
            fsync_dir(self.blob_dir)
            return True

    @staticmethod
    def _write_partial(
        partial: Path,
        digest: str,
        size: int,
        fetch: Fetch,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        import hashlib  # loads OpenSSL: kept off the paths that only read images

        hasher = hashlib.sha256()
        with open(partial, "a+b") as f:
            f.seek(0)
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
            offset = f.tell()
            if offset > size:
                raise ContentError(f"blob {digest}: partial download is larger than {size} bytes")
            if offset < size or size == 0:
                start, chunks = fetch(offset)
                if start != offset:
                    if start != 0:
                        raise ContentError(f"blob {digest}: data resumed at {start}, not {offset}")
                    f.truncate(0)
                    hasher, offset = hashlib.sha256(), 0
                for chunk in chunks:
                    offset += len(chunk)
                    if offset > size:
                        raise ContentError(
                            f"blob {digest}: more data than the announced {size} bytes"
                        )
                    hasher.update(chunk)
                    f.write(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
            if offset < size:
                raise ContentError(f"blob {digest}: truncated, got {offset} of {size} bytes")
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise ContentError(f"blob {digest}: digest mismatch, content hashes to {actual}")
            f.flush()
            os.fsync(f.fileno())
