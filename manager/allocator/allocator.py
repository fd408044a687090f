"""The allocator as a leader-only subsystem: store events in, allocations committed out.

On start it rebuilds what is allocated from one read view (a new leader picks up where the
old one stopped), then follows the store's events. Each round of events is handled at once:
pending networks, then services, then tasks, allocated in transactions of at most `chunk`
objects. A transaction refused by a concurrent write is tried again, reading the objects
afresh; objects that cannot be allocated (bad subnet, port conflict, pool exhausted) wait,
with the reason in the task's status, until a release or a new network may let them through.
"""

from __future__ import annotations

import functools
import logging

from manager.allocator.journal import Journal
from manager.allocator.state import AllocatorState, Outcome, WorkItem
from manager.store import (
    Kind,
    ReadTx,
    Store,
    StoreError,
    Subscription,
    TransactionTooLarge,
    VersionConflict,
    WatchClosed,
)
from shoal.v1 import objects_pb2

log = logging.getLogger(__name__)

CHUNK = 200  # objects per store transaction, as SwarmKit's batches
COMMIT_ATTEMPTS = 3
_KINDS = (Kind.NETWORK, Kind.SERVICE, Kind.TASK, Kind.CLUSTER, Kind.NODE)


def _load(tx: ReadTx) -> AllocatorState:
    clusters = tx.list(objects_pb2.Cluster)
    return AllocatorState(
        tx.list(objects_pb2.Network),
        tx.list(objects_pb2.Service),
        tx.list(objects_pb2.Task),
        clusters[0] if clusters else None,
        tx.list(objects_pb2.Node),
    )


class Allocator:
    def __init__(self, store: Store, *, chunk: int = CHUNK) -> None:
        if chunk < 1:
            raise ValueError(f"allocator chunk must be at least 1, not {chunk}")
        self._store = store
        self._chunk = chunk

    async def run(self) -> None:
        """Allocate until cancelled."""
        while True:
            state, events = self._store.view_and_watch(_load, kinds=_KINDS)
            try:
                await self._follow(state, events)
            except WatchClosed as exc:  # fell behind, or the store was replaced: start over
                log.warning("allocator: %s; rebuilding from the store", exc)
            finally:
                events.close()

    async def _follow(self, state: AllocatorState, events: Subscription) -> None:
        await self._allocate(state)
        while True:
            state.observe(await events.get())
            for _ in range(events.pending()):
                state.observe(await events.get())
            await self._allocate(state)

    async def _allocate(self, state: AllocatorState) -> None:
        """Allocate all pending work; what a refused transaction held waits for the next
        event (the write that won the race is one)."""
        while work := state.take_work(self._chunk):
            if not await self._commit_split(state, work):
                return

    async def _commit_split(self, state: AllocatorState, work: list[WorkItem]) -> bool:
        """Commit `work`, halving it while one transaction would be too large (large tasks);
        what is not committed goes back on the queue."""
        try:
            if await self._commit(state, work):
                return True
        except TransactionTooLarge:
            if len(work) > 1:
                half = len(work) // 2
                if not await self._commit_split(state, work[:half]):
                    state.requeue(work[half:])
                    return False
                return await self._commit_split(state, work[half:])
            log.warning("allocator: one item's transaction is too large: %s", work[0])
        state.requeue(work)
        return False

    async def _commit(self, state: AllocatorState, work: list[WorkItem]) -> bool:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            journal, outcome = Journal(), Outcome()
            allocate = functools.partial(
                state.allocate, work=work, journal=journal, outcome=outcome
            )
            try:
                await self._store.update(allocate)
            except TransactionTooLarge:
                journal.rollback()
                raise
            except StoreError as exc:
                journal.rollback()
                log.info("allocator: attempt %d/%d refused: %s", attempt, COMMIT_ATTEMPTS, exc)
                if not isinstance(exc, VersionConflict):
                    return False
                continue
            except BaseException:
                journal.rollback()
                raise
            journal.commit()
            state.settle(work, outcome)
            return True
        return False
