"""`docker diff` for an overlayfs container: what its upper dir changed over the image.

A path in the upper dir is A (added) when the image's merged lower layers do not have it,
C (changed) when they do; a whiteout is D; an opaque dir hides everything the lowers had
below it, so those names are D. Directories holding changes are in the upper dir (overlayfs
copies parents up), so they show as C like Docker's modified parents.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.image.overlay_upper import is_opaque, is_whiteout, walk

ADDED, CHANGED, DELETED = "A", "C", "D"


@dataclass(frozen=True, order=True)
class Change:
    path: str  # absolute inside the container, "/etc/passwd"
    kind: str  # A, C or D

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


class MergedLowers:
    """The merged view of read-only layer dirs (top first), looked up as overlayfs does:
    a whiteout hides a name below it, a non-directory hides deeper layers, an opaque
    directory hides the same directory in deeper layers."""

    def __init__(self, lowers: Sequence[Path]) -> None:
        self.lowers = list(lowers)

    @staticmethod
    def _lookup(dirs: list[Path], name: str) -> tuple[bool, list[Path]]:
        """(whether merged dir `dirs` has `name`, the layer dirs making it up if a dir)."""
        found: list[Path] = []
        for directory in dirs:
            try:
                st = os.lstat(directory / name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if is_whiteout(st):
                break
            if not stat.S_ISDIR(st.st_mode):
                if not found:
                    return True, []
                break
            found.append(directory / name)
            if is_opaque(directory / name):
                break
        return bool(found), found

    def _dirs(self, parts: Sequence[str]) -> list[Path]:
        dirs = self.lowers
        for part in parts:
            dirs = self._lookup(dirs, part)[1]
        return dirs

    def has(self, parts: Sequence[str]) -> bool:
        return self._lookup(self._dirs(parts[:-1]), parts[-1])[0]

    def children(self, parts: Sequence[str]) -> set[str]:
        seen: set[str] = set()
        names: set[str] = set()
        for directory in self._dirs(parts):
            for name in os.listdir(directory):
                if name not in seen:
                    seen.add(name)
                    if not is_whiteout(os.lstat(directory / name)):
                        names.add(name)
        return names


def diff(upper_dir: Path, lower_dirs: Sequence[Path]) -> list[Change]:
    """The changes in `upper_dir` over `lower_dirs` (top first), sorted by path."""
    lowers = MergedLowers(lower_dirs)
    changes: list[Change] = []
    root = os.open(upper_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for entry in walk(root):
            parts = entry.path.split("/")
            path = "/" + entry.path
            if is_whiteout(entry.st):
                changes.append(Change(path, DELETED))
                continue
            existed = lowers.has(parts)
            changes.append(Change(path, CHANGED if existed else ADDED))
            if existed and stat.S_ISDIR(entry.st.st_mode) and is_opaque(entry.proc_path):
                present = set(os.listdir(entry.proc_path))
                changes += [
                    Change(f"{path}/{name}", DELETED) for name in lowers.children(parts) - present
                ]
    finally:
        os.close(root)
    return sorted(changes)
