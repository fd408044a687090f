"""Reading an overlayfs upper dir: whiteouts, opaque dirs, and the xattrs that belong to
the files (not overlayfs' own), walked with dir fds so nothing follows a symlink."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    path: str  # relative, "etc/passwd"
    name: str
    dir_fd: int  # of its parent, open while the entry is yielded
    st: os.stat_result

    @property
    def proc_path(self) -> str:
        """A path naming the entry itself (not following it) for the xattr calls."""
        return f"/proc/self/fd/{self.dir_fd}/{self.name}"


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def is_opaque(path: str | os.PathLike[str]) -> bool:
    """Whether the directory at `path` (not followed) is an overlayfs opaque dir."""
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise


def file_xattrs(entry: Entry) -> dict[str, bytes]:
    """The entry's xattrs except overlayfs' own bookkeeping."""
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(entry.proc_path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            return out
        raise
    for name in sorted(names):
        if not name.startswith(OVERLAY_XATTR_PREFIX):
            out[name] = os.getxattr(entry.proc_path, name, follow_symlinks=False)
    return out


def walk(dir_fd: int, prefix: str = "") -> Iterator[Entry]:
    """Every entry below `dir_fd`, sorted, parents before children; whiteouts and
    non-directories are not descended into, symlinks never followed."""
    for name in sorted(os.listdir(dir_fd)):
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        entry = Entry(f"{prefix}{name}", name, dir_fd, st)
        yield entry
        if stat.S_ISDIR(st.st_mode):
            child = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
            )
            try:
                yield from walk(child, f"{entry.path}/")
            finally:
                os.close(child)
