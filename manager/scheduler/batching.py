"""When a batch of scheduling work is due: SwarmKit's debounce, with a leading edge.

A change after a quiet spell (no batch ran in the `gap` (50 ms) before it) is due at once, so
a lone service create is scheduled without waiting. A change that follows a batch more
closely is part of a burst: its batch runs `gap` after the last change, so the burst is
decided at once, but never later than `max_delay` (1 s) after its first change, so a steady
stream of changes cannot hold decisions back.
"""

from __future__ import annotations

import math

from manager.scheduler.errors import SchedulerError

DEBOUNCE_S = 0.05
MAX_DELAY_S = 1.0


class Debouncer:
    def __init__(self, gap: float = DEBOUNCE_S, max_delay: float = MAX_DELAY_S) -> None:
        if not 0 <= gap <= max_delay:
            raise SchedulerError(
                f"batching needs 0 <= gap <= max_delay, got gap={gap} max_delay={max_delay}"
            )
        self._gap = gap
        self._max_delay = max_delay
        self._first: float | None = None
        self._last = 0.0
        self._leading = False
        self._ran = -math.inf

    def changed(self, now: float) -> None:
        """Something changed at `now` that the next batch should take into account."""
        if self._first is None:
            self._first = now
            self._leading = now - self._ran >= self._gap
        self._last = now

    def due_at(self) -> float | None:
        """When the batch is due, or None when nothing changed since the last one."""
        if self._first is None:
            return None
        if self._leading:
            return self._first
        return min(self._last + self._gap, self._first + self._max_delay)

    def is_due(self, now: float) -> bool:
        due = self.due_at()
        return due is not None and now >= due

    def reset(self, now: float) -> None:
        """The batch ran at `now`; wait for the next change."""
        self._first = None
        self._ran = now
