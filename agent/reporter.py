"""Task status updates on their way to the dispatcher: coalesced per task, sent in batches.

Only a task's newest status is kept (states only move forward, so nothing is lost that the
manager needs). A batch goes out `flush_interval` after its first update, or at once when
`max_batch` tasks have piled up. A batch the dispatcher did not take is put back, behind
anything newer reported meanwhile, and goes out with the next session.
"""

from __future__ import annotations

import asyncio
import contextlib

from shoal.v1 import types_pb2

FLUSH_INTERVAL = 0.1
MAX_BATCH = 100


class StatusReporter:
    def __init__(self, flush_interval: float = FLUSH_INTERVAL, max_batch: int = MAX_BATCH) -> None:
        if flush_interval <= 0 or max_batch < 1:
            raise ValueError("status batches need a positive interval and size")
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._pending: dict[str, types_pb2.TaskStatus] = {}
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def report(self, task_id: str, status: types_pb2.TaskStatus) -> None:
        current = self._pending.get(task_id)
        if current is not None and status.state < current.state:
            return
        self._pending[task_id] = status
        self._signal()

    def requeue(self, batch: dict[str, types_pb2.TaskStatus]) -> None:
        """Put back a batch that was not delivered; newer updates of a task win."""
        for task_id, status in batch.items():
            self._pending.setdefault(task_id, status)
        self._signal()

    async def next_batch(self) -> dict[str, types_pb2.TaskStatus]:
        """Wait for updates, then for the batch to fill or the interval to pass; take it."""
        await self._arrived.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), self.flush_interval)
        batch = dict(list(self._pending.items())[: self.max_batch])
        for task_id in batch:
            del self._pending[task_id]
        if not self._pending:
            self._arrived.clear()
        if len(self._pending) < self.max_batch:
            self._full.clear()
        return batch

    def _signal(self) -> None:
        if self._pending:
            self._arrived.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
