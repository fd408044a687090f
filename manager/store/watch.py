"""Subscriptions to store events.

Events are published by whichever thread applies the log (raft's tick thread); each
subscription receives them on its own asyncio loop through `call_soon_threadsafe`, so
publishing never waits for a subscriber. A subscriber that falls more than `maxsize`
events behind is dropped: it gets the events it already had, then WatchOverflow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence

from manager.store.errors import WatchClosed, WatchOverflow
from manager.store.events import Event, EventAction
from manager.store.kinds import Kind

DEFAULT_QUEUE_SIZE = 10_000


class Subscription:
    """An async iterator of matching events; `close()` ends it."""

    def __init__(
        self,
        hub: WatchHub,
        loop: asyncio.AbstractEventLoop,
        kinds: frozenset[Kind] | None,
        actions: frozenset[EventAction] | None,
        predicate: Callable[[Event], bool] | None,
        maxsize: int,
    ) -> None:
        self._hub = hub
        self.loop = loop
        self._kinds = kinds
        self._actions = actions
        self._predicate = predicate
        self._maxsize = maxsize
        self._buffer: collections.deque[Event] = collections.deque()
        self._error: WatchClosed | None = None
        self._closed_by_owner = False
        self._wakeup = asyncio.Event()

    def matches(self, event: Event) -> bool:
        if self._kinds is not None and event.kind not in self._kinds:
            return False
        if self._actions is not None and event.action not in self._actions:
            return False
        return self._predicate is None or self._predicate(event)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except WatchClosed:
            if self._closed_by_owner:
                raise StopAsyncIteration from None
            raise

    async def get(self) -> Event:
        """The next event; WatchClosed (or WatchOverflow) once the subscription has ended."""
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._error is not None:
                raise self._error
            self._wakeup.clear()
            await self._wakeup.wait()

    def pending(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """End the subscription (call on its loop); iteration stops after the events
        already received."""
        self._closed_by_owner = True
        self._end(WatchClosed("watch closed by its subscriber"))

    # Called on self.loop only.

    def _offer(self, events: Sequence[Event]) -> None:
        if self._error is not None:
            return
        for event in events:
            if not self.matches(event):
                continue
            if len(self._buffer) >= self._maxsize:
                self._end(
                    WatchOverflow(
                        f"watch subscriber fell more than {self._maxsize} events behind "
                        f"(at raft index {event.index}); re-read the store and subscribe again"
                    )
                )
                return
            self._buffer.append(event)
        self._wakeup.set()

    def _end(self, error: WatchClosed) -> None:
        if self._error is None:
            self._error = error
            self._hub.discard(self)
        self._wakeup.set()


class WatchHub:
    """The set of subscriptions of one store; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()

    def subscribe(
        self,
        kinds: Iterable[Kind] | None = None,
        actions: Iterable[EventAction] | None = None,
        predicate: Callable[[Event], bool] | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        """Subscribe from a running asyncio loop; events arrive on that loop."""
        if maxsize < 1:
            raise ValueError(f"watch queue size must be at least 1, not {maxsize}")
        sub = Subscription(
            self,
            asyncio.get_running_loop(),
            frozenset(kinds) if kinds is not None else None,
            frozenset(actions) if actions is not None else None,
            predicate,
            maxsize,
        )
        with self._lock:
            self._subscriptions.add(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(sub)

    def publish(self, events: Sequence[Event]) -> None:
        """Hand events to every subscription's loop; never blocks on a subscriber."""
        if not events:
            return
        with self._lock:
            subscriptions = list(self._subscriptions)
        for sub in subscriptions:
            try:
                sub.loop.call_soon_threadsafe(sub._offer, events)
            except RuntimeError:  # its loop is closed: nobody can read it any more
                self.discard(sub)

    def close_all(self, reason: str) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
            self._subscriptions.clear()
        for sub in subscriptions:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                sub.loop.call_soon_threadsafe(sub._end, WatchClosed(reason))
