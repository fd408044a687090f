"""Leadership as the asyncio side sees it.

A manager becomes leader for the leader-only subsystems only once a barrier entry of its
term has committed and been applied (its store then holds every earlier commit); it stops
being leader the moment raft says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass


@dataclass(frozen=True)
class Leadership:
    is_leader: bool
    term: int


class LeadershipWatch:
    """Changes are made on the asyncio loop, in the order raft produced them."""

    def __init__(self) -> None:
        self.current = Leadership(False, 0)
        self._queues: list[asyncio.Queue[Leadership]] = []

    async def changes(self) -> AsyncGenerator[Leadership, None]:
        """The current leadership, then every change."""
        queue: asyncio.Queue[Leadership] = asyncio.Queue()
        self._queues.append(queue)
        try:
            yield self.current
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    def set(self, value: Leadership) -> None:
        if value.is_leader == self.current.is_leader and (
            not value.is_leader or value.term == self.current.term
        ):
            return
        self.current = value
        for queue in self._queues:
            queue.put_nowait(value)
