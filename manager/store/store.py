"""The store: tables behind one lock, read views, write transactions, log apply, watches."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from manager.clock import now_timestamp
from manager.store import metrics
from manager.store.errors import (
    InvalidAction,
    ProposalFailed,
    ProposalOutcomeUnknown,
    StoreError,
    VersionConflict,
)
from manager.store.events import Event, EventAction
from manager.store.indexes import DEFAULT_INDEXES, Index, new_tables
from manager.store.kinds import KINDS, Kind, StoreObject, copy_object
from manager.store.proposer import ApplyResult, Proposer
from manager.store.readtx import ReadTx
from manager.store.snapshot import StoreImage
from manager.store.watch import DEFAULT_QUEUE_SIZE, Subscription, WatchHub
from manager.store.writetx import Op, WriteTx
from shoal.v1 import store_pb2

T = TypeVar("T")

# Outcomes remembered per proposer, to answer a retried proposal with the original result.
REMEMBERED_OUTCOMES = 1024
REDO_ATTEMPTS = 5  # update_redone: tries before a VersionConflict reaches the caller

_EVENT_ACTIONS = {Op.CREATE: EventAction.CREATE, Op.UPDATE: EventAction.UPDATE}


@dataclass(frozen=True)
class UpdateResult(Generic[T]):
    """What the transaction function returned, and the raft index it committed at (the
    store's current index when it changed nothing)."""

    value: T
    index: int


class Store:
    """In-memory, indexed store of the cluster's objects.

    Reads (`view`) see a consistent state. Writes (`update`) collect changes in a WriteTx,
    then commit them through the proposer; `apply` (called by the proposer, in log order,
    on every manager) is the only thing that changes the tables.
    """

    def __init__(
        self,
        proposer: Proposer | None = None,
        indexes: Mapping[Kind, tuple[Index, ...]] = DEFAULT_INDEXES,
        clock: Callable[[], Timestamp] = now_timestamp,
    ) -> None:
        self.proposer = proposer
        self._indexes = indexes
        self._clock = clock
        self._lock = threading.RLock()
        self._tables = new_tables(indexes)
        self._index = 0
        self._proposers: dict[str, int] = {}
        self._outcomes: dict[str, collections.OrderedDict[int, ApplyResult]] = {}
        self._hub = WatchHub()

    @property
    def index(self) -> int:
        """Raft index of the last applied entry."""
        return self._index

    # -- reads ----------------------------------------------------------------------------

    def view(self, fn: Callable[[ReadTx], T]) -> T:
        start = time.perf_counter()
        with self._lock:
            result = fn(ReadTx(self._tables))
        metrics.READ_SECONDS.observe(time.perf_counter() - start)
        return result

    def watch(
        self,
        kinds: Iterable[Kind] | None = None,
        actions: Iterable[EventAction] | None = None,
        predicate: Callable[[Event], bool] | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        """Events of later commits (call from the asyncio loop that will read them)."""
        return self._hub.subscribe(kinds, actions, predicate, maxsize)

    def view_and_watch(
        self,
        fn: Callable[[ReadTx], T],
        kinds: Iterable[Kind] | None = None,
        actions: Iterable[EventAction] | None = None,
        predicate: Callable[[Event], bool] | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> tuple[T, Subscription]:
        """A read view and a subscription to every change after it: no gap, no overlap."""
        with self._lock:
            return self.view(fn), self.watch(kinds, actions, predicate, maxsize)

    # -- writes ---------------------------------------------------------------------------

    async def update(self, fn: Callable[[WriteTx], T]) -> UpdateResult[T]:
        """Run `fn` on a write transaction, then commit what it changed through the
        proposer. Raises the StoreError of a refused change (before or at commit)."""
        if self.proposer is None:
            raise ProposalFailed("this store has no proposer: it cannot take writes")
        start = time.perf_counter()
        with self._lock:
            tx = WriteTx(self._tables, now=self._clock())
            value = fn(tx)
            actions = tx.actions()
            index = self._index
        if actions.actions:
            index = await self.proposer.propose(actions)
        metrics.WRITE_SECONDS.observe(time.perf_counter() - start)
        return UpdateResult(value, index)

    async def update_redone(
        self, fn: Callable[[WriteTx], T], attempts: int = REDO_ATTEMPTS
    ) -> UpdateResult[T]:
        """update(fn), redone on a fresh view when a concurrent write to the same objects
        committed first (VersionConflict), up to `attempts` times. For read-modify-write
        changes that stay right on the newer objects."""
        for _ in range(attempts - 1):
            try:
                return await self.update(fn)
            except VersionConflict:
                continue
        return await self.update(fn)

    # -- log apply ------------------------------------------------------------------------

    def apply(self, index: int, actions: store_pb2.StoreActions) -> ApplyResult:
        """Apply one committed entry at raft `index`: all of its actions, or (if any is
        refused) none. Called in log order; deterministic on every manager."""
        with self._lock:
            if index <= self._index:
                raise InvalidAction(
                    f"raft index {index} applied out of order (store is at {self._index})"
                )
            proposer, sequence = actions.proposer_id, actions.sequence
            if proposer and sequence <= self._proposers.get(proposer, 0):
                self._index = index
                return self._duplicate(proposer, sequence, index)
            events: list[Event] = []
            try:
                changes = self._validate(actions)
            except StoreError as error:
                result = ApplyResult(index, error)
            else:
                events = self._commit(index, changes)
                result = ApplyResult(index)
            self._index = index
            if proposer:
                self._remember(proposer, sequence, result)
            if result.error is None:
                self._hub.publish(events)
            return result

    def _validate(self, actions: store_pb2.StoreActions) -> list[tuple[Op, Kind, StoreObject]]:
        tx = WriteTx(self._tables, now=None)
        for action in actions.actions:
            field = action.WhichOneof("target")
            if field is None:
                raise InvalidAction("store action without an object")
            kind = Kind(field)
            obj = getattr(action, field)
            if action.kind == store_pb2.StoreAction.CREATE:
                tx.create(obj)
            elif action.kind == store_pb2.StoreAction.UPDATE:
                tx.update(obj)
            elif action.kind == store_pb2.StoreAction.REMOVE:
                tx.delete(KINDS[kind].message, obj.id, obj.meta.version)
            else:
                raise InvalidAction(f"store action on {kind.value} {obj.id!r} has no kind")
        return [(c.op, c.kind, c.obj) for c in tx.changes()]

    def _commit(self, index: int, changes: list[tuple[Op, Kind, StoreObject]]) -> list[Event]:
        events = []
        for op, kind, obj in changes:
            table = self._tables[kind]
            old = table.get(obj.id)
            if op is Op.REMOVE:
                table.remove(obj.id)
                events.append(Event(kind, EventAction.DELETE, old, None, index))
                continue
            obj.meta.version = index
            table.put(obj)
            old_copy = None if old is None else copy_object(old)
            events.append(Event(kind, _EVENT_ACTIONS[op], old_copy, copy_object(obj), index))
        return events

    def _remember(self, proposer: str, sequence: int, result: ApplyResult) -> None:
        self._proposers[proposer] = sequence
        outcomes = self._outcomes.setdefault(proposer, collections.OrderedDict())
        outcomes[sequence] = result
        if len(outcomes) > REMEMBERED_OUTCOMES:
            outcomes.popitem(last=False)

    def _duplicate(self, proposer: str, sequence: int, index: int) -> ApplyResult:
        outcomes = self._outcomes.get(proposer)
        original = None if outcomes is None else outcomes.get(sequence)
        if original is not None:
            return ApplyResult(original.index, original.error, duplicate=True)
        return ApplyResult(
            index,
            ProposalOutcomeUnknown(
                f"proposal {sequence} of {proposer} was applied before and its outcome is no "
                "longer remembered; read the store to see its effect"
            ),
            duplicate=True,
        )

    # -- snapshots ------------------------------------------------------------------------

    def capture(self) -> StoreImage:
        """The current state, cheaply: stored objects are shared, never copied."""
        with self._lock:
            return StoreImage(
                index=self._index,
                objects={kind: list(t.objects.values()) for kind, t in self._tables.items()},
                proposers=dict(self._proposers),
            )

    def restore(self, image: StoreImage) -> None:
        """Replace the whole state with `image`. Open watches end with WatchClosed: what
        they described no longer follows from the events they got."""
        tables = new_tables(self._indexes)
        for kind, objs in image.objects.items():
            table = tables[kind]
            for obj in objs:
                table.put(obj)
        with self._lock:
            self._tables = tables
            self._index = image.index
            self._proposers = dict(image.proposers)
            self._outcomes = {}
            self._hub.close_all(f"store restored from a snapshot at raft index {image.index}")
