"""The loop every orchestrator subsystem runs: read the store, then follow its events.

A subsystem turns what it reads (at start) and every watch event into *work keys* (a
service, a slot, a node...) on its agenda, each due now or at a later time, and reconciles
each key in its own store transaction, reading the current state there: decisions never
rest on an event's copy of an object, so a stale event or a duplicate key costs a read,
never a wrong write. Reconciling a key that needs nothing writes nothing, so the events of
the subsystem's own writes settle.

A transaction the store refuses (a concurrent change, no leader) puts its key back on the
agenda after a growing delay. When the watch ends (the store was restored from a snapshot,
or the subsystem fell behind) the subsystem starts over from a fresh read, which is also
what a new leader does: nothing is kept only in memory that the store does not show.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, Generic, TypeVar

from manager.clock import WALL_CLOCK, Clock
from manager.orchestrator import metrics
from manager.orchestrator.config import OrchestratorConfig
from manager.store import (
    Event,
    Kind,
    ReadTx,
    Store,
    StoreError,
    Subscription,
    WatchClosed,
    WriteTx,
)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
WriteFn = Callable[[WriteTx, metrics.Tally], T]

log = logging.getLogger(__name__)


class Agenda(Generic[K]):
    """Work keys, each due at a time; a key added again keeps the earlier time."""

    def __init__(self) -> None:
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def add(self, key: K, at: float = -math.inf) -> None:
        current = self._due.get(key)
        if current is not None and current <= at:
            return
        self._due[key] = at
        heapq.heappush(self._heap, (at, next(self._sequence), key))

    def take_due(self, now: float) -> list[K]:
        """Remove and return the keys due at `now`, earliest first."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._due.get(key) == at:
                del self._due[key]
                due.append(key)
        return due

    def next_at(self) -> float | None:
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # superseded by an earlier time, or taken
        return heap[0][0] if heap else None


async def next_event(
    events: Subscription, clock: Clock, wake_at: float | None, poke: asyncio.Event | None = None
) -> Event | None:
    """The next event; None when `wake_at` (clock time) comes first, or `poke` is set.
    An event already queued is returned at once. Raises WatchClosed when the watch ends."""
    if events.pending():
        return await events.get()
    timeout = None if wake_at is None else wake_at - clock.now()
    if (timeout is not None and timeout <= 0) or (poke is not None and poke.is_set()):
        return None
    if timeout is None and poke is None:
        return await events.get()
    waiters: list[asyncio.Future[Any]] = []
    getter: asyncio.Future[Event] = asyncio.ensure_future(events.get())
    waiters.append(getter)
    if timeout is not None:
        waiters.append(asyncio.ensure_future(clock.sleep(timeout)))
    if poke is not None:
        waiters.append(asyncio.ensure_future(poke.wait()))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    return None


class Reconciler(abc.ABC, Generic[K]):
    """A leader-only subsystem: `run()` works until cancelled; see the module docstring."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[Kind, ...]]

    def __init__(
        self,
        store: Store,
        clock: Clock = WALL_CLOCK,
        config: OrchestratorConfig | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config if config is not None else OrchestratorConfig()
        self.agenda: Agenda[K] = Agenda()
        self._refusals: dict[K, int] = {}
        self._poke = asyncio.Event()
        self.reset()

    # -- what a subsystem implements --------------------------------------------------------

    @abc.abstractmethod
    def load(self, tx: ReadTx) -> None:
        """Put on the agenda what the store needs now (runs under the store's lock, right
        before the watch starts: read, do not wait)."""

    @abc.abstractmethod
    def observe(self, event: Event) -> None:
        """Put on the agenda what one event may require."""

    @abc.abstractmethod
    async def reconcile(self, key: K) -> None:
        """Bring what `key` names in line, in store transactions."""

    def reset(self) -> None:
        """Forget what was derived from events, before the store is read again."""

    # -- the loop ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Make the loop look at its agenda now (after adding to it from another task)."""
        self._poke.set()

    async def run(self) -> None:
        self._poke = asyncio.Event()  # of the loop this run is on
        while True:
            self.agenda = Agenda()
            self._refusals = {}
            self.reset()
            _, events = self.store.view_and_watch(self.load, kinds=self.kinds)
            try:
                await self._serve(events)
            except WatchClosed as error:
                metrics.RESYNCS.labels(self.name).inc()
                log.warning("%s: %s; reading the store again", self.name, error)
            finally:
                events.close()

    async def _serve(self, events: Subscription) -> None:
        while True:
            self._poke.clear()
            await self._work()
            event = await next_event(events, self.clock, self.agenda.next_at(), self._poke)
            if event is not None:
                self.observe(event)
                for _ in range(events.pending()):
                    self.observe(await events.get())

    async def _work(self) -> None:
        for key in self.agenda.take_due(self.clock.now()):
            started = time.perf_counter()
            try:
                await self.reconcile(key)
            except StoreError as error:
                self._refused(key, error)
            else:
                self._refusals.pop(key, None)
            metrics.RECONCILE_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    def _refused(self, key: K, error: StoreError) -> None:
        count = self._refusals.get(key, 0) + 1
        self._refusals[key] = count
        delay = self.config.retry_delay(count)
        metrics.REFUSED_WRITES.labels(self.name, type(error).__name__).inc()
        level = logging.INFO if count == 1 else logging.WARNING
        log.log(level, "%s: %r refused (%s); trying again in %.1f s", self.name, key, error, delay)
        self.agenda.add(key, self.clock.now() + delay)


async def commit(store: Store, fn: WriteFn[T]) -> T:
    """Run `fn` in a write transaction; count its tally once the transaction committed."""
    tally = metrics.Tally()
    result = (await store.update(lambda tx: fn(tx, tally))).value
    tally.commit()
    return result
