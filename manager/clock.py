"""Time as the manager's subsystems see it: a `Clock` (seconds, and an async sleep on the
same scale) and the protobuf conversions.

Two clocks, one class: `WALL_CLOCK` (seconds since the epoch, comparable with the timestamps
the store puts on objects: a restart delay runs from a task's meta.created_at) for the
orchestrators, `MONOTONIC_CLOCK` (never steps back) for deadlines and intervals: the
dispatcher's heartbeats and batches, the log broker's silence timeouts. A subsystem takes
its clock as an argument, so tests pass a Clock of fake `now` and `sleep` and move time by
hand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp


@dataclass(frozen=True)
class Clock:
    """`now()` in seconds and `sleep(seconds)` on the same scale."""

    now: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


WALL_CLOCK = Clock(time.time)
MONOTONIC_CLOCK = Clock(time.monotonic)


def now_timestamp() -> Timestamp:
    """The wall-clock time now, as the store and task statuses record it."""
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def timestamp_seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def duration_seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def timestamp_of(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp
