"""This node's task containers as log subscriptions see them: which ones a selector picks
(by the task labels every task container carries), and one container's log read into
LogMessages (tail, since, streams, follow) by a blocking function meant for a thread.

A reader stops soon after `stop` is set: the runtime's log reader calls back between
reads, and that is where pending lines are handed over and `stop` is looked at.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.container_spec import SERVICE_LABEL, TASK_LABEL
from common.timeparse import format_rfc3339
from runtime.container import logs
from runtime.errors import RuntimeEngineError
from shoal.v1 import logs_pb2

BATCH_LINES = 100
STREAMS = {
    "stdout": logs_pb2.LOG_STREAM_STDOUT,
    "stderr": logs_pb2.LOG_STREAM_STDERR,
}
# A container that has run has a log; a created one gets it when it starts.
STARTED = ("running", "exited")

# Hands a batch over; False when the reader must stop.
Deliver = Callable[[list[logs_pb2.LogMessage]], bool]


class LogEngine(Protocol):
    """What log reading needs of runtime.container.engine.Engine."""

    def list(self, all: bool = False) -> list[dict[str, Any]]: ...

    def watch(self, name_or_id: str) -> Callable[[float], bool]: ...


@dataclass(frozen=True)
class TaskContainer:
    container_id: str
    log_path: Path
    task_id: str
    service_id: str
    started: bool


def selected_containers(
    infos: Iterable[dict[str, Any]], selector: logs_pb2.LogSelector, node_id: str
) -> list[TaskContainer]:
    """The task containers (engine inspect records, oldest first) `selector` picks on
    node `node_id`: by task, by service, or all of the node's."""
    whole_node = node_id in selector.node_ids
    found = []
    for info in sorted(infos, key=lambda i: str(i["Created"])):
        labels = info["Config"].get("Labels") or {}
        task_id, service_id = labels.get(TASK_LABEL, ""), labels.get(SERVICE_LABEL, "")
        if not task_id:
            continue
        if whole_node or task_id in selector.task_ids or service_id in selector.service_ids:
            found.append(
                TaskContainer(
                    container_id=info["Id"],
                    log_path=Path(info["LogPath"]),
                    task_id=task_id,
                    service_id=service_id,
                    started=info["State"]["Status"] in STARTED,
                )
            )
    return found


@dataclass(frozen=True)
class ReadOptions:
    """A subscription's options as the runtime's log reader takes them."""

    tail: int | None  # None: every line
    since: str | None  # RFC 3339 with nanoseconds, comparable with the log's times
    streams: frozenset[str]  # empty: both
    follow: bool

    @classmethod
    def of(cls, options: logs_pb2.LogSubscriptionOptions) -> ReadOptions:
        names = {value: name for name, value in STREAMS.items()}
        since = options.since.ToNanoseconds() if options.HasField("since") else None
        return cls(
            tail=None if options.tail < 0 else options.tail,
            since=None if since is None else format_rfc3339(since),
            streams=frozenset(names[s] for s in options.streams if s in names),
            follow=options.follow,
        )

    def whole(self) -> ReadOptions:
        """The same without tail: for a container that started after the subscription."""
        return ReadOptions(None, self.since, self.streams, self.follow)


def _message(record: logs.LogRecord, context: logs_pb2.LogContext) -> logs_pb2.LogMessage:
    message = logs_pb2.LogMessage(
        context=context,
        stream=STREAMS.get(record.stream, logs_pb2.LOG_STREAM_UNKNOWN),
        data=record.data.encode(),
    )
    message.timestamp.FromJsonString(record.time)
    return message


def _never_running(_timeout: float) -> bool:
    return False


def read_container(
    engine: LogEngine,
    container: TaskContainer,
    node_id: str,
    options: ReadOptions,
    stop: threading.Event,
    deliver: Deliver,
) -> None:
    """Read the container's log into `deliver` in batches; with follow, until the
    container ends or `stop` is set. Blocks: run it in a thread."""
    context = logs_pb2.LogContext(
        service_id=container.service_id, node_id=node_id, task_id=container.task_id
    )
    watch: Callable[[float], bool] = _never_running
    if options.follow:
        # A container removed meanwhile: what is left of its log is read once.
        with contextlib.suppress(RuntimeEngineError):
            watch = engine.watch(container.container_id)
    batch: list[logs_pb2.LogMessage] = []

    def hand_over() -> bool:
        nonlocal batch
        if not batch:
            return True
        ready, batch = batch, []
        return deliver(ready)

    def still_running(timeout: float) -> bool:
        if not hand_over() or stop.is_set():
            return False
        return watch(timeout)

    records = logs.read(
        container.log_path, options.tail, options.since, options.follow, still_running
    )
    for record in records:  # leaving early drops the generator, which closes the file
        if stop.is_set():
            return
        if options.streams and record.stream not in options.streams:
            continue
        batch.append(_message(record, context))
        if len(batch) >= BATCH_LINES and not hand_over():
            return
    hand_over()
