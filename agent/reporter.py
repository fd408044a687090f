"""Task status updates on their way to the dispatcher: coalesced per task, sent in batches.

Only a task's newest status is kept (states only move forward, so nothing is lost that the
manager needs). The session sends one batch at a time and its call returns once the
dispatcher has committed the batch, which it does at most once per 100 ms: updates pile up
while a batch is on its way and go together in the next one, so the dispatcher's pace makes
the batches under load. A batch is taken:

- at once when an outcome waits (RUNNING or a later state): what the managers act on, and
  what `swarmctl` waits for, is not held back;
- at once when `max_batch` tasks have piled up;
- otherwise `flush_interval` after the oldest waiting update. A task's progress through
  ACCEPTED..STARTING takes milliseconds on a node that has the image: sent alone, it would
  open the dispatcher's window just before the RUNNING that matters; held, it rides along.

A batch the dispatcher did not take is put back, behind anything newer reported meanwhile,
and goes out with the next session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from shoal.v1 import types_pb2

FLUSH_INTERVAL = 0.1
MAX_BATCH = 100
OUTCOMES_FROM = types_pb2.RUNNING


class StatusReporter:
    def __init__(
        self,
        flush_interval: float = FLUSH_INTERVAL,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if flush_interval <= 0 or max_batch < 1:
            raise ValueError("status batches need a positive interval and size")
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._clock = clock
        self._pending: dict[str, types_pb2.TaskStatus] = {}
        self._due_at = 0.0  # clock time by which the waiting updates must go
        self._arrived = asyncio.Event()
        self._due = asyncio.Event()  # an outcome or a full batch waits

    def __len__(self) -> int:
        return len(self._pending)

    def report(self, task_id: str, status: types_pb2.TaskStatus) -> None:
        current = self._pending.get(task_id)
        if current is not None and status.state < current.state:
            return
        if not self._pending:
            self._due_at = self._clock() + self.flush_interval
            self._arrived.set()
        self._pending[task_id] = status
        if status.state >= OUTCOMES_FROM or len(self._pending) >= self.max_batch:
            self._due.set()

    def requeue(self, batch: dict[str, types_pb2.TaskStatus]) -> None:
        """Put back a batch that was not delivered; newer updates of a task win. It was
        due already: it goes with the next batch taken."""
        if not batch:
            return
        self._due_at = self._clock()
        self._arrived.set()
        for task_id, status in batch.items():
            self._pending.setdefault(task_id, status)
        self._check_due()

    async def next_batch(self) -> dict[str, types_pb2.TaskStatus]:
        """Wait for updates, then until the batch is due (see the module docstring); take it."""
        await self._arrived.wait()
        wait = self._due_at - self._clock()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), wait)
        batch = dict(list(self._pending.items())[: self.max_batch])
        for task_id in batch:
            del self._pending[task_id]
        if not self._pending:
            self._arrived.clear()
        self._check_due()
        return batch

    def _check_due(self) -> None:
        if len(self._pending) >= self.max_batch or any(
            status.state >= OUTCOMES_FROM for status in self._pending.values()
        ):
            self._due.set()
        else:
            self._due.clear()
