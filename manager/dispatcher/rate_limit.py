"""How often a node may register: at most 1 + `max_reregistrations` times in any window."""

from __future__ import annotations

import collections

from manager.dispatcher.errors import RateLimited


class RegistrationLimiter:
    def __init__(self, max_reregistrations: int, window: float) -> None:
        self._max = max_reregistrations
        self._window = window
        self._times: dict[str, collections.deque[float]] = {}

    def admit(self, node_id: str, now: float) -> None:
        """Count a registration of `node_id` at `now`, or refuse it (refusals do not count)."""
        times = self._times.setdefault(node_id, collections.deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) > self._max:
            wait = times[0] + self._window - now
            raise RateLimited(
                f"node {node_id} re-registered {len(times) - 1} times in the last "
                f"{self._window:g} s (at most {self._max}); retry in {wait:.1f} s"
            )
        times.append(now)
