"""One user's log subscription as the leader keeps it: the nodes it went to, the lines
they publish (queued for the subscriber, bounded so a slow reader slows the publishers
down), and, without follow, which nodes have yet to finish.

Without follow the subscription is complete when every node it concerns has sent close,
or was found unable to: not connected, disconnected, or silent for `silence_timeout`
seconds; each such node is named in the IncompleteLogs error raised at the end, after
every line received. With follow it never completes: it ends when the subscriber leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from manager.clock import MONOTONIC_CLOCK
from manager.logbroker.errors import IncompleteLogs, LogBrokerError
from manager.logbroker.selection import Selection
from shoal.v1 import logs_pb2

QUEUE_BATCHES = 64
_WAKE = None  # queued to make the subscriber look at its state again


class BrokerSubscription:
    def __init__(
        self,
        message: logs_pb2.SubscriptionMessage,
        selection: Selection,
        silence_timeout: float,
    ) -> None:
        self.message = message
        self.follow = message.options.follow
        # Nodes the subscription concerns, and those it was sent to (over their current
        # listener; a follow subscription is sent again when a node reconnects).
        self.nodes: set[str] = set()
        self.sent: set[str] = set()
        self._silence_timeout = silence_timeout
        # Without follow: node -> time by which it must be heard from again.
        self._pending: dict[str, float] = {}
        self._problems: list[str] = []
        self._error: LogBrokerError | None = None
        # The timestamp of the last line each node published (resumes a follow after a
        # reconnection without repeating lines).
        self._last_line: dict[str, logs_pb2.LogMessage] = {}
        self._queue: asyncio.Queue[list[logs_pb2.LogMessage] | None] = asyncio.Queue(QUEUE_BATCHES)
        self._problems.extend(f"task {t} has not been scheduled" for t in selection.unscheduled)

    @property
    def id(self) -> str:
        return self.message.id

    def add_node(self, node_id: str) -> bool:
        """Take in a node; False if it was already in."""
        if node_id in self.nodes:
            return False
        self.nodes.add(node_id)
        if not self.follow:
            self._pending[node_id] = MONOTONIC_CLOCK.now() + self._silence_timeout
        return True

    def waiting_for(self, node_id: str) -> bool:
        """Whether the node still has to send (or, with follow, keeps sending)."""
        return node_id in self.nodes and (self.follow or node_id in self._pending)

    def message_for(self, node_id: str) -> logs_pb2.SubscriptionMessage:
        """What to send the node: the subscription, resumed after the node's last line if
        it published some over an earlier connection."""
        last = self._last_line.get(node_id)
        if last is None:
            return self.message
        resumed = logs_pb2.SubscriptionMessage()
        resumed.CopyFrom(self.message)
        resumed.options.tail = -1
        since = resumed.options.since
        since.FromNanoseconds(last.timestamp.ToNanoseconds() + 1)
        return resumed

    async def deliver(self, node_id: str, messages: list[logs_pb2.LogMessage]) -> None:
        if node_id in self._pending:
            self._pending[node_id] = MONOTONIC_CLOCK.now() + self._silence_timeout
        self._last_line[node_id] = messages[-1]
        await self._queue.put(messages)

    def node_done(self, node_id: str, problem: str | None = None) -> None:
        """The node has sent everything (or, with `problem`, cannot)."""
        if self.follow:
            return
        if self._pending.pop(node_id, None) is None:
            return
        if problem:
            self._problems.append(problem)
        self._wake()

    def abort(self, error: LogBrokerError) -> None:
        """End the subscription now: the subscriber gets `error` after the queued lines."""
        self._error = error
        self._wake()

    def _wake(self) -> None:
        # A full queue needs no wake-up: the subscriber looks at its state after each batch.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_WAKE)

    def _expire_silent(self) -> None:
        now = MONOTONIC_CLOCK.now()
        for node_id, deadline in list(self._pending.items()):
            if deadline <= now:
                self.node_done(
                    node_id,
                    f"node {node_id} sent nothing for {self._silence_timeout:g} s",
                )

    async def batches(self) -> AsyncIterator[list[logs_pb2.LogMessage]]:
        """The lines as they come; without follow, ends once every node is done (raising
        IncompleteLogs if some could not send)."""
        while self.follow or self._pending or not self._queue.empty():
            if self._error is not None and self._queue.empty():
                raise self._error
            timeout = None
            if self._pending and self._queue.empty():
                timeout = max(min(self._pending.values()) - MONOTONIC_CLOCK.now(), 0.0)
            try:
                batch = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                self._expire_silent()
                continue
            if batch is not _WAKE:
                yield batch
        if self._problems:
            raise IncompleteLogs(
                "incomplete log stream: some logs could not be read: " + "; ".join(self._problems)
            )
