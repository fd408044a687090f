"""Writing a layer tar (gzip) from an overlayfs upper dir, for commit.

Overlay whiteouts (0/0 character devices) become `.wh.NAME` entries, opaque dirs get a
`.wh..wh..opq` entry, hardlinks within the layer become link entries, and file xattrs (not
overlayfs' own) go in SCHILY.xattr PAX headers. Regular files are opened with O_NOFOLLOW
relative to their parent's fd, so a container swapping a file for a symlink cannot make the
commit read a host file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from runtime.image.errors import LayerError
from runtime.image.overlay_upper import Entry, file_xattrs, is_opaque, is_whiteout, walk
from runtime.image.unpack import OPAQUE_MARKER, PAX_XATTR_PREFIX, WHITEOUT_PREFIX


@dataclass(frozen=True)
class WrittenLayer:
    diff_id: str  # sha256 of the tar
    digest: str  # sha256 of the gzip blob
    size: int  # of the gzip blob


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class _HashingWriter:
    """Hashes and counts what is written through it."""

    def __init__(self, inner: _Writable) -> None:
        self.inner = inner
        self.hasher = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.count += len(data)
        self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def _info(entry: Entry, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(entry.st.st_mode)
    info.uid, info.gid = entry.st.st_uid, entry.st.st_gid
    info.mtime = int(entry.st.st_mtime)
    xattrs = file_xattrs(entry)
    if xattrs:
        info.pax_headers = {
            PAX_XATTR_PREFIX + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
        }
        if any(_not_utf8(v) for v in xattrs.values()):
            info.pax_headers["hdrcharset"] = "BINARY"
    return info


def _not_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _marker(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o600
    return info


def write_layer(upper_dir: Path, out: BinaryIO) -> WrittenLayer:
    """Write the changes in `upper_dir` to `out` as a gzip-compressed layer tar."""
    blob = _HashingWriter(out)
    root = os.open(upper_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with gzip.GzipFile(fileobj=blob, mode="wb", mtime=0) as gz:
            raw = _HashingWriter(gz)
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                _add_all(tar, root)
    finally:
        os.close(root)
    return WrittenLayer(raw.digest, blob.digest, blob.count)


def _add_all(tar: tarfile.TarFile, root: int) -> None:
    links: dict[tuple[int, int], str] = {}
    for entry in walk(root):
        st = entry.st
        parent, _, name = entry.path.rpartition("/")
        if is_whiteout(st):
            tar.addfile(_marker(f"{parent}/{WHITEOUT_PREFIX}{name}".lstrip("/")))
            continue
        info = _info(entry, entry.path)
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            if is_opaque(entry.proc_path):
                tar.addfile(_marker(f"{entry.path}/{OPAQUE_MARKER}"))
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(entry.name, dir_fd=entry.dir_fd)
            tar.addfile(info)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info.type, info.linkname = tarfile.LNKTYPE, links[key]
                tar.addfile(info)
                continue
            links[key] = entry.path
            _add_file(tar, entry, info)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            info.type = (
                tarfile.CHRTYPE
                if stat.S_ISCHR(st.st_mode)
                else tarfile.BLKTYPE
                if stat.S_ISBLK(st.st_mode)
                else tarfile.FIFOTYPE
            )
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tar.addfile(info)
        else:
            raise LayerError(f"cannot commit {entry.path!r}: unsupported file type (socket)")


def _add_file(tar: tarfile.TarFile, entry: Entry, info: tarfile.TarInfo) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(entry.name, flags, dir_fd=entry.dir_fd)
    except OSError as exc:
        raise LayerError(f"cannot commit {entry.path!r}: {exc.strerror}") from None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
            entry.st.st_dev,
            entry.st.st_ino,
        ):
            raise LayerError(f"cannot commit {entry.path!r}: it changed while being read")
        info.type, info.size = tarfile.REGTYPE, st.st_size
        try:
            tar.addfile(info, f)
        except OSError as exc:  # tarfile: "unexpected end of data" when the file shrank
            raise LayerError(f"cannot commit {entry.path!r}: {exc}") from None
