"""Finding and removing mounts left below a directory (overlays, bound namespaces)."""

from __future__ import annotations

import errno
from pathlib import Path

from common import libc
from deploy.errors import MachineError


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mountpoints(mountinfo: str | None = None) -> list[str]:
    """Mount points of this mount namespace in mount order (`mountinfo` as in /proc)."""
    text = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    return [_unescape(line.split()[4]) for line in text.splitlines()]


def mounts_below(directory: Path, points: list[str] | None = None) -> list[str]:
    """Mount points at or below `directory` (of `points`, or of this mount namespace)."""
    top = str(directory).rstrip("/")
    return [
        m
        for m in (mountpoints() if points is None else points)
        if m == top or m.startswith(top + "/")
    ]


def unmount_below(directory: Path, rounds: int = 20) -> None:
    """Detach every mount at or below `directory`, deepest first, stacked ones included."""
    for _ in range(rounds):
        below = mounts_below(directory)
        if not below:
            return
        for mountpoint in sorted(set(below), key=lambda m: m.count("/"), reverse=True):
            try:
                libc.umount(mountpoint)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise
    raise MachineError(f"mounts below {directory} remain: {mounts_below(directory)}")
