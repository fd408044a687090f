"""Extracting one layer tar into a directory that overlayfs can use as a lower layer.

Layers are hostile input. Every parent directory is opened with openat2(RESOLVE_BENEATH)
from the layer root, so no symlink (absolute, or `..` past the root) can lead a write out of
it; the last component is created by us relative to that parent and never followed. Entry
names that are absolute or contain `..` are refused outright, as are hardlinks whose target
is. Device nodes are never made on the node: a block or character device in a layer is
skipped (a container could otherwise be handed the host's disk), except the 0/0 character
device, which is overlayfs' own whiteout. FIFOs are made.

Whiteouts become what overlayfs reads: `.wh.NAME` a 0/0 character device NAME, and
`.wh..wh..opq` the xattr trusted.overlay.opaque=y on its directory. Modes (setuid, setgid,
sticky included), numeric ownership, times and SCHILY xattrs are kept. The DiffID is the
sha256 of the whole uncompressed stream.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from common.libc import open_beneath
from runtime.image.errors import LayerError, UnsafeLayerEntry

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
RESERVED_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR_PREFIX = "SCHILY.xattr."
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COPY_CHUNK = 1 << 20
DIR_OPEN = os.O_PATH | os.O_DIRECTORY


@dataclass(frozen=True)
class Extracted:
    diff_id: str
    size: int  # bytes of regular file content


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Hashing(io.RawIOBase):
    """A read-only stream that hashes what passes through (the DiffID) and turns the
    decompressor's errors into LayerError."""

    def __init__(self, inner: _Readable, errors: tuple[type[Exception], ...]) -> None:
        self.inner = inner
        self.errors = errors
        self.hasher = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self.inner.read(len(buffer))
        except self.errors as exc:
            raise LayerError(f"layer is not a valid compressed stream: {exc}") from None
        self.hasher.update(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> str:
        while self.read(COPY_CHUNK):
            pass
        return "sha256:" + self.hasher.hexdigest()


def decompressed(blob: BinaryIO) -> _Hashing:
    """The layer's tar stream, hashed: gzip and zstd recognised by their magic numbers, else
    an uncompressed tar. `blob` must be seekable (a file)."""
    magic = blob.read(4)
    blob.seek(0)
    if magic.startswith(GZIP_MAGIC):
        gz = gzip.GzipFile(fileobj=blob, mode="rb")
        return _Hashing(gz, (EOFError, zlib.error, gzip.BadGzipFile))
    if magic == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise LayerError(
                "zstd-compressed layers are unsupported here: install the 'zstandard' package"
            ) from None
        reader = zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True)
        return _Hashing(reader, (zstandard.ZstdError,))
    return _Hashing(blob, ())


def split_name(entry: str, name: str) -> list[str]:
    """The components of a member or link name; absolute names and `..` are refused."""
    if name.startswith("/"):
        raise UnsafeLayerEntry(entry, f"absolute path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayerEntry(entry, f"'..' in path {name!r}")
    return parts


class _Extractor:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_fd = os.open(root, DIR_OPEN | os.O_CLOEXEC)
        self.dir_times: list[tuple[str, list[str], int, int]] = []
        self.size = 0

    def close(self) -> None:
        os.close(self.root_fd)

    # -- resolving parents ---------------------------------------------------------------

    def _open_dir(self, entry: str, parts: list[str]) -> int:
        path = "/".join(parts)
        try:
            return open_beneath(self.root_fd, path, DIR_OPEN)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise UnsafeLayerEntry(entry, f"parent {path!r} leads outside the layer") from None
            if exc.errno == errno.ELOOP:
                raise UnsafeLayerEntry(entry, f"too many symlinks resolving {path!r}") from None
            if exc.errno == errno.ENOTDIR:
                raise UnsafeLayerEntry(entry, f"parent {path!r} is not a directory") from None
            raise

    def parent_dir(self, entry: str, parts: list[str], create: bool) -> int:
        """An O_PATH fd of directory `parts` below the root, made (0755) where missing."""
        if not parts:
            return os.dup(self.root_fd)
        try:
            return self._open_dir(entry, parts)
        except FileNotFoundError:
            if not create:
                missing = "/".join(parts)
                raise UnsafeLayerEntry(entry, f"directory {missing!r} does not exist") from None
        fd = os.dup(self.root_fd)
        try:
            for depth in range(1, len(parts) + 1):
                try:
                    next_fd = self._open_dir(entry, parts[:depth])
                except FileNotFoundError:
                    try:
                        os.mkdir(parts[depth - 1], 0o755, dir_fd=fd)
                    except FileExistsError:  # a dangling symlink is in the way
                        raise UnsafeLayerEntry(
                            entry, f"parent {'/'.join(parts[:depth])!r} is a dangling symlink"
                        ) from None
                    next_fd = self._open_dir(entry, parts[:depth])
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def clear(parent: int, name: str, keep_dir: bool) -> bool:
        """Remove whatever is at `name` (never following it); True if a kept dir is there."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return False

    # -- entries -------------------------------------------------------------------------

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = split_name(name, name)
        if not parts:
            if not member.isdir():
                raise UnsafeLayerEntry(name, "the layer root must be a directory")
            os.chown(self.root, member.uid, member.gid)
            os.chmod(self.root, member.mode & 0o7777)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(name, parts)
            return
        parent = self.parent_dir(name, parts[:-1], create=True)
        try:
            if member.isreg():
                self.regular(tar, member, parent, base)
            elif member.isdir():
                if not self.clear(parent, base, keep_dir=True):
                    os.mkdir(base, 0o700, dir_fd=parent)
                self.dir_times.append((name, parts, *_times(member)))
            elif member.issym():
                self.clear(parent, base, keep_dir=False)
                try:
                    os.symlink(member.linkname, base, dir_fd=parent)
                except OSError as exc:
                    raise UnsafeLayerEntry(name, f"cannot create symlink: {exc.strerror}") from None
            elif member.islnk():
                self.hardlink(member, parent, base)
                return  # a hardlink shares its target's inode and metadata
            elif member.ischr() or member.isblk():
                if not _is_whiteout_device(member):
                    return  # never a device node on the node's disk
                self.clear(parent, base, keep_dir=False)
                os.mknod(base, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
            elif member.isfifo():
                self.clear(parent, base, keep_dir=False)
                os.mknod(base, stat.S_IFIFO | 0o600, dir_fd=parent)
            else:
                raise UnsafeLayerEntry(name, f"unsupported entry type {member.type!r}")
            self.metadata(member, parent, base)
        finally:
            os.close(parent)

    def whiteout(self, entry: str, parts: list[str]) -> None:
        base = parts[-1]
        parent = self.parent_dir(entry, parts[:-1], create=True)
        try:
            if base == OPAQUE_MARKER:
                os.setxattr(f"/proc/self/fd/{parent}", OPAQUE_XATTR, b"y")
            elif base.startswith(WHITEOUT_META_PREFIX):
                return  # other AUFS metadata (.wh..wh.plnk...) means nothing to overlayfs
            else:
                target = base[len(WHITEOUT_PREFIX) :]
                if target in ("", ".", ".."):
                    raise UnsafeLayerEntry(entry, f"whiteout of {target!r}")
                self.clear(parent, target, keep_dir=False)
                os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
                os.chown(target, 0, 0, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)

    def regular(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, base: str
    ) -> None:
        self.clear(parent, base, keep_dir=False)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent)
        with open(fd, "wb", closefd=True) as out:
            source = tar.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, COPY_CHUNK)
        self.size += member.size

    def hardlink(self, member: tarfile.TarInfo, parent: int, base: str) -> None:
        entry = member.name
        target = split_name(entry, member.linkname)
        if not target:
            raise UnsafeLayerEntry(entry, "hardlink to the layer root")
        target_parent = self.parent_dir(entry, target[:-1], create=False)
        try:
            try:
                st = os.stat(target[-1], dir_fd=target_parent, follow_symlinks=False)
            except FileNotFoundError:
                raise UnsafeLayerEntry(
                    entry, f"hardlink target {member.linkname!r} does not exist"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeLayerEntry(entry, f"hardlink to directory {member.linkname!r}")
            try:
                existing = os.stat(base, dir_fd=parent, follow_symlinks=False)
                if (existing.st_dev, existing.st_ino) == (st.st_dev, st.st_ino):
                    return
            except FileNotFoundError:
                pass
            self.clear(parent, base, keep_dir=False)
            os.link(
                target[-1],
                base,
                src_dir_fd=target_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        finally:
            os.close(target_parent)

    def metadata(self, member: tarfile.TarInfo, parent: int, base: str) -> None:
        """Ownership, then mode (chown clears setuid), then xattrs, then times (not yet for
        directories: writing their children changes them)."""
        os.chown(base, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if not member.issym():
            # Safe to follow: we just made this entry, and it is not a symlink.
            os.chmod(base, member.mode & 0o7777, dir_fd=parent)
        for key, value in member.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            xattr = key[len(PAX_XATTR_PREFIX) :]
            if xattr.startswith(RESERVED_XATTR_PREFIX):
                raise UnsafeLayerEntry(member.name, f"sets overlayfs' own xattr {xattr!r}")
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(f"/proc/self/fd/{parent}/{base}", xattr, raw, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM) or not member.issym():
                    raise UnsafeLayerEntry(
                        member.name, f"cannot set xattr {xattr!r}: {exc.strerror}"
                    ) from None
        if not member.isdir():
            os.utime(base, ns=_times(member), dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory times last, deepest first."""
        for entry, parts, atime, mtime in reversed(self.dir_times):
            try:
                parent = self.parent_dir(entry, parts[:-1], create=False)
            except UnsafeLayerEntry:
                continue  # removed again by a later entry
            try:
                os.utime(parts[-1], ns=(atime, mtime), dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                pass
            finally:
                os.close(parent)


def _is_whiteout_device(member: tarfile.TarInfo) -> bool:
    return member.ischr() and member.devmajor == 0 and member.devminor == 0


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(float(member.mtime) * 1_000_000_000)
    atime_text = member.pax_headers.get("atime")
    try:
        atime = int(float(atime_text) * 1_000_000_000) if atime_text else mtime
    except ValueError:
        atime = mtime
    return atime, mtime


def extract(blob: BinaryIO, root: Path) -> Extracted:
    """Extract layer `blob` (compressed or not) into the empty directory `root`.

    Raises UnsafeLayerEntry naming the first refused entry, LayerError for a stream that is
    not a (compressed) tar; the caller removes `root` on error."""
    extractor = _Extractor(root)
    try:
        stream = decompressed(blob)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    extractor.entry(tar, member)
        except tarfile.TarError as exc:
            raise LayerError(f"layer is not a valid tar stream: {exc}") from None
        diff_id = stream.drain()
        extractor.finish()
    finally:
        extractor.close()
    return Extracted(diff_id, extractor.size)
