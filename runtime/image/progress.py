"""Progress of pulls and pushes, reported per blob to whoever shows it (a tty, a log)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class ProgressEvent(NamedTuple):
    """One step of a pull or push, for a progress display."""

    item: str  # the blob's short id (12 hex digits)
    status: str  # "Waiting", "Downloading", "Extracting", "Pull complete", "Already exists",
    # "Pushing", "Pushed", "Layer already exists", "Mounted from <repo>"
    current: int = 0  # bytes so far
    total: int = 0  # bytes in all (0 when unknown or irrelevant)


Progress = Callable[[ProgressEvent], None]


def quiet(_event: ProgressEvent) -> None:
    """A Progress that shows nothing."""


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]
