"""What one store transaction changed in the allocator's pools, so that it can be undone.

Allocations take effect at once (the next object in the same transaction must not get the
same address) and are undone if the transaction does not commit. Releases wait for the
commit: until then the old owner still holds the resource in the store.
"""

from __future__ import annotations

from collections.abc import Callable


class Journal:
    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._after_commit: list[Callable[[], None]] = []

    def on_rollback(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def on_commit(self, action: Callable[[], None]) -> None:
        self._after_commit.append(action)

    def absorb(self, other: Journal) -> None:
        """Take over `other`'s entries (a nested journal whose part succeeded)."""
        self._undo += other._undo
        self._after_commit += other._after_commit
        other._undo, other._after_commit = [], []

    def rollback(self) -> None:
        undo, self._undo, self._after_commit = self._undo, [], []
        for action in reversed(undo):
            action()

    def commit(self) -> None:
        after, self._undo, self._after_commit = self._after_commit, [], []
        for action in after:
            action()
