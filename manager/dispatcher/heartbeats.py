"""When each node must be heard from next, and the jittered period agents are given."""

from __future__ import annotations

import heapq
import random


def jittered(period: float, jitter: float, rng: random.Random) -> float:
    """`period` varied by up to `jitter` (a fraction) either way."""
    return period * rng.uniform(1 - jitter, 1 + jitter)


class HeartbeatDeadlines:
    """Node id -> the time by which it must be heard from, earliest first.

    A heap with lazy deletion: a moved deadline leaves its old entry behind, skipped when it
    surfaces, so a heartbeat costs O(log n).
    """

    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._deadlines

    def set(self, node_id: str, deadline: float) -> bool:
        """Set the node's deadline; True when it is now the earliest of all."""
        earliest = self.next_deadline()
        self._deadlines[node_id] = deadline
        heapq.heappush(self._heap, (deadline, node_id))
        return earliest is None or deadline < earliest

    def forget(self, node_id: str) -> None:
        self._deadlines.pop(node_id, None)

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def expired(self, now: float) -> list[str]:
        """The nodes whose deadline has passed at `now`, forgotten."""
        result = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, node_id = heapq.heappop(self._heap)
            del self._deadlines[node_id]
            result.append(node_id)
        return result

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._deadlines.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
