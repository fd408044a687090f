"""The one fake clock of the manager's tests: seconds that move only when told to.

It stands in wherever a subsystem reads the time: as a `manager.clock.Clock` (`clock`: `now`
and a `sleep` that ends when `advance` reaches it), as a bare `() -> seconds` callable (the
scheduler, Control), and as the store's `() -> Timestamp` (`timestamp`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from google.protobuf.timestamp_pb2 import Timestamp

from manager.clock import Clock, timestamp_of

START = 1_700_000_000.0  # a plausible wall-clock time, so timestamps read as real ones


class FakeClock:
    def __init__(self, start: float = START) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def timestamp(self) -> Timestamp:
        return timestamp_of(self.now)

    @property
    def clock(self) -> Clock:
        return Clock(self, self.sleep)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), wake))
        await wake

    def advance(self, seconds: float) -> None:
        """Move time on; wake the sleepers now due, the earliest first."""
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, wake = heapq.heappop(self._sleepers)
            if not wake.done():  # a cancelled sleep is done already
                wake.set_result(None)
