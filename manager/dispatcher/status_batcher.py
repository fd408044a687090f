"""Task status updates from all agents, committed together: at most one store transaction
per `interval` (100 ms), and one at once when `max_items` (10,000) are waiting, as SwarmKit.

The window has a leading edge: an update that finds no transaction begun in the last
`interval` is committed at once (a lone task's RUNNING is not held back); updates that come
while a window is open wait for its end and go together, so a busy cluster still makes one
transaction per interval.

Each submission resolves once its updates are committed, so an agent whose call returns
knows its report is durable, and retries it when the call fails. Updates that went stale
while queued (the task is gone, or already further on) are dropped with a log line; they
never fail the batch.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from manager.clock import Clock
from manager.dispatcher import metrics
from manager.dispatcher.errors import DispatcherError, StoreUnavailable
from manager.dispatcher.validation import StatusUpdate, state_name
from manager.dispatcher.waiting import first_done
from manager.store import Store, StoreError, TransactionTooLarge, WriteTx
from shoal.v1 import objects_pb2, types_pb2

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 3


@dataclass
class _Submission:
    node_id: str
    updates: Sequence[StatusUpdate]
    done: asyncio.Future[None]


@dataclass
class _Applied:
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    # NEW -> RUNNING delays (seconds) of tasks this batch saw start running.
    delays: list[float] = field(default_factory=list)


def _apply(batch: Sequence[_Submission], tx: WriteTx) -> _Applied:
    applied = _Applied()
    for submission in batch:
        for update in submission.updates:
            task = tx.get(objects_pb2.Task, update.task_id)
            if task is None:
                applied.counts["unknown_task"] += 1
                continue
            if task.node_id != submission.node_id:
                log.info(
                    "dispatcher: status of task %s from node %s dropped: the task moved to %s",
                    task.id,
                    submission.node_id,
                    task.node_id,
                )
                applied.counts["not_assigned"] += 1
                continue
            new, old = update.status, task.status
            if new.state < old.state:
                log.info(
                    "dispatcher: stale status %s of task %s dropped (it is %s)",
                    state_name(new.state),
                    task.id,
                    state_name(old.state),
                )
                applied.counts["stale"] += 1
                continue
            if new == old:
                applied.counts["unchanged"] += 1
                continue
            if new.state == types_pb2.RUNNING and old.state < types_pb2.RUNNING:
                created = task.meta.created_at
                if created.seconds or created.nanos:
                    delay = new.timestamp.ToNanoseconds() - created.ToNanoseconds()
                    applied.delays.append(max(delay, 0) / 1e9)
            task.status.CopyFrom(new)
            tx.update(task)
            applied.counts["committed"] += 1
    return applied


class StatusBatcher:
    def __init__(self, store: Store, clock: Clock, interval: float, max_items: int) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._max_items = max_items
        self._queue: collections.deque[_Submission] = collections.deque()
        self._items = 0
        self._waiting = asyncio.Event()
        self._full = asyncio.Event()
        self._closed: DispatcherError | None = None
        self._began = -math.inf  # when the last transaction began (clock time)

    def submit(self, node_id: str, updates: Sequence[StatusUpdate]) -> asyncio.Future[None]:
        """Queue `updates`; the future resolves when they are committed (or fails with
        StoreUnavailable when the batch could not be)."""
        if self._closed is not None:
            raise self._closed
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(node_id, updates, done))
        self._count(self._items + len(updates))
        self._waiting.set()
        if self._items >= self._max_items:
            self._full.set()
        return done

    async def run(self) -> None:
        """Commit batches until cancelled."""
        while True:
            await self._waiting.wait()
            window_left = self._began + self._interval - self._clock.now()
            if window_left > 0 and self._items < self._max_items:
                await first_done(self._clock.sleep(window_left), self._full.wait())
            self._began = self._clock.now()
            await self._commit(self._take())

    def close(self, error: DispatcherError) -> None:
        """Refuse new submissions and fail the queued ones with `error`."""
        self._closed = error
        while self._queue:
            _resolve(self._queue.popleft().done, error)
        self._count(0)

    def _take(self) -> list[_Submission]:
        """Whole submissions, up to max_items updates (at least one submission)."""
        batch: list[_Submission] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].updates) <= self._max_items):
            submission = self._queue.popleft()
            batch.append(submission)
            count += len(submission.updates)
        self._count(self._items - count)
        if not self._queue:
            self._waiting.clear()
        if self._items < self._max_items:
            self._full.clear()
        return batch

    def _count(self, items: int) -> None:
        self._items = items
        metrics.STATUS_UPDATES_QUEUED.set(items)

    async def _commit(self, batch: list[_Submission]) -> None:
        try:
            await self._commit_parts(batch)
        except StoreError as error:
            self._failed(batch, error)
            return
        for submission in batch:
            _resolve(submission.done, None)

    async def _commit_parts(self, batch: Sequence[_Submission]) -> None:
        """Commit the batch's updates, in halves while a transaction would be too large
        (the updates of large tasks: each rewrites its whole task)."""
        try:  # a concurrent write to one of the tasks: redone on the newer tasks
            result = await self._store.update_redone(
                functools.partial(_apply, batch), COMMIT_ATTEMPTS
            )
        except TransactionTooLarge:
            pieces = [
                _Submission(s.node_id, [update], s.done) for s in batch for update in s.updates
            ]
            if len(pieces) <= 1:
                raise
            half = len(pieces) // 2
            await self._commit_parts(pieces[:half])
            await self._commit_parts(pieces[half:])
            return
        applied = result.value
        for outcome, count in applied.counts.items():
            metrics.STATUS_UPDATES.labels(result=outcome).inc(count)
        for delay in applied.delays:
            metrics.SCHEDULING_DELAY_SECONDS.observe(delay)

    def _failed(self, batch: list[_Submission], error: StoreError) -> None:
        log.warning("dispatcher: a batch of task status updates was not committed: %s", error)
        failure = StoreUnavailable(f"task status updates were not committed ({error}); retry")
        for submission in batch:
            _resolve(submission.done, failure)


def _resolve(done: asyncio.Future[None], error: DispatcherError | None) -> None:
    if done.done():  # its caller went away
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
