"""Waiting in tests for something to happen: poll a probe until its value is the one wanted.

Every wait of the tests goes through here (no bare sleeps as synchronisation): `until` from
plain code (threads, processes, the lab), `until_async` inside an event loop, whose other
tasks run between tries, and `until_awaited` there for a probe that is a coroutine (a probe
that blocks runs `until` in a thread instead: `await asyncio.to_thread(until, ...)`). Each
is bounded twice, in time (`timeout_s`) and in tries (`max_tries`, by default as many as fit
in the time at `interval_s`; an interval of 0, which only lets the loop turn, needs it), and
fails with an AssertionError that says what
was awaited and what was last seen:

    tasks = until(lambda: running(swarm, web), "6 running tasks", holds=lambda r: len(r) == 6)

`probe` gives the value (returned once `holds(value)`, by default once it is truthy);
`retry_on` names exceptions that count as "not yet" (a server not listening yet) instead of
failing at once; `context`, called on failure, adds what else helps to see why (a log).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypedDict, TypeVar, Unpack

T = TypeVar("T")

TIMEOUT_S = 60.0  # the default: patient enough for a busy lab; a failure only comes later
SHOWN_CHARS = 2000  # of the last value seen, in a failure message


class Bounds(TypedDict, total=False):
    """How long a wait may go on, and what it tolerates (all optional)."""

    timeout_s: float  # TIMEOUT_S by default
    interval_s: float  # between tries: 0.05 s for `until`, 0.005 s for `until_async`
    max_tries: int  # by default as many as fit in timeout_s at interval_s
    retry_on: tuple[type[Exception], ...]  # exceptions of `probe` that mean "not yet"
    context: Callable[[], str]  # what else to say on failure


class _NotYet:
    """What a try that did not hold gives."""


_NOT_YET = _NotYet()


class _Watch(Generic[T]):
    """One wait: its bounds, its tries, and what it saw last."""

    def __init__(
        self,
        what: str,
        holds: Callable[[T], object],
        default_interval_s: float,
        timeout_s: float = TIMEOUT_S,
        interval_s: float | None = None,
        max_tries: int | None = None,
        retry_on: tuple[type[Exception], ...] = (),
        context: Callable[[], str] | None = None,
    ) -> None:
        if interval_s is None:
            interval_s = default_interval_s
        if timeout_s <= 0 or interval_s < 0 or (max_tries is None and interval_s == 0):
            raise ValueError(f"waiting for {what}: no bound (timeout_s, interval_s, max_tries)")
        if max_tries is None:
            max_tries = math.ceil(timeout_s / interval_s) + 1
        self.what = what
        self.holds = holds
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.retry_on = retry_on
        self.context = context
        self.max_tries = max_tries
        self.started = time.monotonic()
        self.tries = 0
        self.last = "nothing"

    def test(self, probe: Callable[[], T]) -> T | _NotYet:
        """One try: the value if it holds."""
        try:
            value = probe()
        except self.retry_on as error:
            return self.missed(error)
        return self.judge(value)

    def judge(self, value: T) -> T | _NotYet:
        """A try that gave `value`: the value if it holds."""
        self.tries += 1
        self.last = _shown(repr(value))
        return value if self.holds(value) else _NOT_YET

    def missed(self, error: Exception) -> _NotYet:
        """A try that raised one of `retry_on`."""
        self.tries += 1
        self.last = _shown(f"{type(error).__name__}: {error}")
        return _NOT_YET

    def pause(self) -> float:
        """How long to wait before the next try; raises the failure when the wait is over."""
        left = self.started + self.timeout_s - time.monotonic()
        if left <= 0 or self.tries >= self.max_tries:
            elapsed = time.monotonic() - self.started
            more = f"\n{self.context()}" if self.context is not None else ""
            raise AssertionError(
                f"timed out after {elapsed:.1f} s ({self.tries} tries) waiting for {self.what};"
                f" last seen: {self.last}{more}"
            )
        return min(self.interval_s, left)


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} chars)"


def until(
    probe: Callable[[], T],
    what: str,
    *,
    holds: Callable[[T], object] = bool,
    **bounds: Unpack[Bounds],
) -> T:
    """Call `probe` until `holds(value)`; return that value (see the module docstring)."""
    watch = _Watch(what, holds, 0.05, **bounds)
    while isinstance(value := watch.test(probe), _NotYet):
        time.sleep(watch.pause())
    return value


async def until_async(
    probe: Callable[[], T],
    what: str,
    *,
    holds: Callable[[T], object] = bool,
    **bounds: Unpack[Bounds],
) -> T:
    """`until` in an event loop: its other tasks run between tries."""
    watch = _Watch(what, holds, 0.005, **bounds)
    while isinstance(value := watch.test(probe), _NotYet):
        await asyncio.sleep(watch.pause())
    return value


async def until_awaited(
    probe: Callable[[], Awaitable[T]],
    what: str,
    *,
    holds: Callable[[T], object] = bool,
    **bounds: Unpack[Bounds],
) -> T:
    """`until_async` for a probe that is itself asynchronous (an RPC, a raft status)."""
    watch = _Watch(what, holds, 0.005, **bounds)
    while True:
        try:
            result = watch.judge(await probe())
        except watch.retry_on as error:
            result = watch.missed(error)
        if not isinstance(result, _NotYet):
            return result
        await asyncio.sleep(watch.pause())
