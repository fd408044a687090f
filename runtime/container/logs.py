"""Reading a container's log (JSON lines written by the shim): tail, since, follow."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

FOLLOW_POLL_SECONDS = 0.05


class LogRecord(NamedTuple):
    time: str  # RFC 3339 with nanoseconds, UTC
    stream: str  # stdout | stderr
    data: str


def _parse(line: str) -> LogRecord | None:
    try:
        raw = json.loads(line)
        return LogRecord(raw["time"], raw["stream"], raw["log"])
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while the shim writes: picked up on the next read


def read(
    path: Path,
    tail: int | None = None,
    since: str | None = None,
    follow: bool = False,
    still_running: Callable[[float], bool] = lambda _timeout: False,
) -> Iterator[LogRecord]:
    """Records of the log; with `follow`, keep yielding new ones until the container ends.

    `still_running(timeout)` waits up to `timeout` seconds and says whether the container
    (its shim, which writes the log) is still there; the engine's `watch` gives one."""
    try:
        f = open(path)  # noqa: SIM115 - held open across the follow loop
    except FileNotFoundError:
        return
    with f:
        first: deque[LogRecord] | list[LogRecord]
        first = deque(maxlen=tail) if tail is not None else []
        pending = ""
        for line in f:
            if not line.endswith("\n"):
                pending = line
                break
            record = _parse(line)
            if record and (since is None or record.time >= since):
                first.append(record)
        yield from first
        while follow:
            chunk = f.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    record = _parse(pending)
                    pending = ""
                    if record and (since is None or record.time >= since):
                        yield record
                continue
            if not still_running(FOLLOW_POLL_SECONDS):
                rest = f.read()  # what the shim wrote between our last read and its exit
                for line in (pending + rest).splitlines():
                    if (record := _parse(line)) and (since is None or record.time >= since):
                        yield record
                return
