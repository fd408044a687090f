"""One Assignments stream: the node's COMPLETE set, then INCREMENTAL changes batched (up to
`batch_size` changes per message, at most one message per `batch_interval`), driven by store
watches. A change that comes after a quiet spell (no message in the last interval) goes out
at once with whatever its transaction changed too; changes that follow a message more
closely wait for the end of its interval and go together.

If the watch falls behind or the store is replaced, the stream sends a fresh COMPLETE set
rather than ending: it replaces whatever the agent had.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from manager.clock import Clock
from manager.dispatcher.assignments import AssignmentSet
from manager.dispatcher.sessions import Session
from manager.dispatcher.waiting import finished, first_done
from manager.store import Event, Kind, Store, Subscription, WatchClosed, new_id
from shoal.v1 import dispatcher_pb2, objects_pb2

log = logging.getLogger(__name__)

# Each message's changes stay well below gRPC's limits (common.grpc_limits), and a large
# set does not wait on one huge message.
CHUNK_BYTES = 1 << 20
COMPLETE = dispatcher_pb2.AssignmentsMessage.COMPLETE
INCREMENTAL = dispatcher_pb2.AssignmentsMessage.INCREMENTAL


class AssignmentStream:
    def __init__(
        self, store: Store, node_id: str, clock: Clock, batch_size: int, batch_interval: float
    ) -> None:
        self._store = store
        self._node_id = node_id
        self._clock = clock
        self._batch_size = batch_size
        self._batch_interval = batch_interval
        self._stream_id = new_id()
        self._sequence = 0
        self._last = ""
        self._sent_at = -math.inf  # when the last message went (clock time)

    async def messages(self, session: Session) -> AsyncIterator[dispatcher_pb2.AssignmentsMessage]:
        """Messages until the session ends (then its error is raised)."""
        while True:
            assignments, events = self._store.view_and_watch(
                functools.partial(AssignmentSet.load, self._node_id),
                kinds=(Kind.TASK, Kind.SECRET, Kind.CONFIG, Kind.NODE),
                predicate=self._concerns_node,
            )
            try:
                for message in self._messages(COMPLETE, assignments.complete()):
                    yield message
                while True:
                    changes = await self._next_batch(assignments, events, session)
                    for message in self._messages(INCREMENTAL, changes):
                        yield message
            except WatchClosed as exc:
                log.info(
                    "dispatcher: assignments of node %s resent in full: %s", self._node_id, exc
                )
            finally:
                events.close()

    def _concerns_node(self, event: Event) -> bool:
        if event.kind is not Kind.TASK:
            return True  # secrets, configs and nodes: the set knows what it needs
        return any(
            isinstance(t, objects_pb2.Task) and (t.node_id == self._node_id or t.networks)
            for t in (event.old, event.new)
        )

    async def _next_batch(
        self, assignments: AssignmentSet, events: Subscription, session: Session
    ) -> list[dispatcher_pb2.AssignmentChange]:
        """Changes of the events up to a full batch, or until the interval since the last
        message has passed (at once after a quiet spell) and no event is queued."""
        first = await self._next_event(events, session, None)
        assert first is not None
        assignments.observe(first)
        deadline = self._sent_at + self._batch_interval
        while assignments.pending < self._batch_size:
            remaining = deadline - self._clock.now()
            if remaining <= 0 and not events.pending():
                break
            event = await self._next_event(events, session, max(remaining, 0))
            if event is None:
                break
            assignments.observe(event)
        return self._store.view(assignments.take_changes)

    async def _next_event(
        self, events: Subscription, session: Session, timeout: float | None
    ) -> Event | None:
        """The next event (None after `timeout` seconds); the session's error once it ends."""
        if session.error is not None:
            raise session.error
        if events.pending():
            return await events.get()
        waits: list[Awaitable[Any]] = [events.get(), session.wait_ended()]
        if timeout is not None:
            waits.append(self._clock.sleep(timeout))
        got, ended, *_ = await first_done(*waits)
        if finished(got):
            return got.result()  # type: ignore[no-any-return]
        if finished(ended):
            raise ended.result()
        return None

    def _messages(
        self,
        kind: dispatcher_pb2.AssignmentsMessage.Type.ValueType,
        changes: list[dispatcher_pb2.AssignmentChange],
    ) -> list[dispatcher_pb2.AssignmentsMessage]:
        """`changes` in messages of at most `CHUNK_BYTES` each (a change larger than that
        alone), chained; all but the last say `more`. No changes: no message, unless it is
        a COMPLETE (empty) set."""
        chunks: list[list[dispatcher_pb2.AssignmentChange]] = [[]]
        size = 0
        for change in changes:
            change_size = change.ByteSize()
            if chunks[-1] and size + change_size > CHUNK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(change)
            size += change_size
        if not changes and kind == INCREMENTAL:
            return []
        self._sent_at = self._clock.now()
        messages = []
        for number, chunk in enumerate(chunks, start=1):
            self._sequence += 1
            applies_to, self._last = self._last, f"{self._stream_id}.{self._sequence}"
            messages.append(
                dispatcher_pb2.AssignmentsMessage(
                    type=kind,
                    applies_to=applies_to,
                    results_in=self._last,
                    changes=chunk,
                    more=number < len(chunks),
                )
            )
        return messages
