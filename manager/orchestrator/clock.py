"""Time as the orchestrators see it: wall-clock seconds, comparable with the timestamps the
store puts on objects (a restart delay runs from a task's meta.created_at), and an async
sleep. Both are replaceable, so tests move time by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp


@dataclass(frozen=True)
class Clock:
    now: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


SYSTEM_CLOCK = Clock()


def timestamp_seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def duration_seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def timestamp_of(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp
