"""The agent's session with a dispatcher: register, heartbeat, follow assignments, report.

One session at a time, with one manager. Whatever ends it (the manager died, lost its
leadership, forgot the session, the network), the agent opens a new one with a manager
from the last list it was given, after an exponential, jittered back-off, and never gives
up. Each new session starts with the complete assignment set, which the worker reconciles
with what runs (nothing is replayed, nothing restarted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import grpc

from agent import metrics
from agent.backoff import Backoff
from agent.errors import SessionEnded
from agent.managers import Managers
from agent.reporter import StatusReporter
from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc, objects_pb2, types_pb2

log = logging.getLogger(__name__)

ChannelFactory = Callable[[str], grpc.aio.Channel]
FIRST_MESSAGE_TIMEOUT = 10.0  # seconds for a dispatcher to confirm a new session
DEFAULT_HEARTBEAT_PERIOD = 5.0
RPC_TIMEOUT = 10.0
MAX_RESYNCS = 3  # assignment streams reopened in a row before the session is given up
Msg = dispatcher_pb2.AssignmentsMessage
Change = dispatcher_pb2.AssignmentChange


class AssignmentSink(Protocol):
    """Where assignments go (the worker)."""

    async def assign(self, tasks: Sequence[objects_pb2.Task]) -> None:
        """The complete set: anything not in it must go."""

    async def update(self, updated: Sequence[objects_pb2.Task], removed: Sequence[str]) -> None:
        """Changes to the previous set."""

    async def peers(
        self,
        updated: Sequence[dispatcher_pb2.NetworkEndpoints],
        removed: Sequence[str],
        complete: bool = False,
    ) -> None:
        """Where the other endpoints of the node's overlay networks run (after the tasks
        of the same message)."""


class LogListener(Protocol):
    """Follows the log subscriptions sent to this node (agent.log_subscriptions)."""

    async def serve(self, channel: grpc.aio.Channel) -> None:
        """Until cancelled, over the session's channel; never fails the session."""


class Session:
    def __init__(
        self,
        managers: Managers,
        channel_factory: ChannelFactory,
        describe: Callable[[], types_pb2.NodeDescription],
        sink: AssignmentSink,
        reporter: StatusReporter,
        backoff: Backoff | None = None,
        first_message_timeout: float = FIRST_MESSAGE_TIMEOUT,
        on_node: Callable[[objects_pb2.Node], None] | None = None,
        logs: LogListener | None = None,
    ) -> None:
        self.managers = managers
        self.session_id = ""
        # The open session's channel to its manager, for other calls the agent makes.
        self.channel: grpc.aio.Channel | None = None
        self.heartbeat_period = DEFAULT_HEARTBEAT_PERIOD
        self._channel_factory = channel_factory
        self._describe = describe
        self._sink = sink
        self._reporter = reporter
        self._backoff = backoff or Backoff()
        self._first_message_timeout = first_message_timeout
        # Sees this node's object as the managers have it (swarmd: role changes).
        self._on_node = on_node
        self._logs = logs

    async def run(self) -> None:
        """Keep a session open, reconnecting for ever; returns only by cancellation."""
        while True:
            address = self.managers.select()
            try:
                await self._session(address)
            except (grpc.aio.AioRpcError, SessionEnded, TimeoutError) as exc:
                log.warning("session with %s ended: %s", address, _describe_error(exc))
            except Exception:
                log.exception("session with %s failed", address)
            self.managers.failed(address)
            metrics.SESSION_RECONNECTS.inc()
            await asyncio.sleep(self._backoff.next())

    async def _session(self, address: str) -> None:
        channel = self._channel_factory(address)
        call: Any = None
        try:
            stub = dispatcher_pb2_grpc.DispatcherStub(channel)
            request = dispatcher_pb2.SessionRequest(
                description=self._describe(), session_id=self.session_id
            )
            call = stub.Session(request)
            first = await asyncio.wait_for(call.read(), self._first_message_timeout)
            if first is grpc.aio.EOF:
                raise SessionEnded("the dispatcher closed the session before confirming it")
            self._confirmed(address, first)
            self.channel = channel
            loops = [
                self._follow(call),
                self._heartbeat(stub),
                self._assignments(stub),
                self._report(stub),
            ]
            if self._logs is not None:
                loops.append(self._logs.serve(channel))
            await _until_one_fails(*loops)
        finally:
            self.channel = None
            if call is not None:
                call.cancel()
            await channel.close()

    def _confirmed(self, address: str, message: dispatcher_pb2.SessionMessage) -> None:
        self.session_id = message.session_id
        self.managers.update(message.managers)
        self.managers.succeeded(address)
        self._backoff.reset()
        log.info("session %s open with %s", self.session_id, address)
        self._observe_node(message)

    def _observe_node(self, message: dispatcher_pb2.SessionMessage) -> None:
        if self._on_node is not None and message.HasField("node"):
            self._on_node(message.node)

    async def _follow(self, call: Any) -> None:
        """Session messages after the first: the manager list as it changes."""
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                raise SessionEnded("the dispatcher ended the session")
            self.managers.update(message.managers)
            self._observe_node(message)

    async def _heartbeat(self, stub: Any) -> None:
        """Beat at once, then at the period (jitter included) each answer gives."""
        while True:
            response = await stub.Heartbeat(
                dispatcher_pb2.HeartbeatRequest(session_id=self.session_id),
                timeout=max(self.heartbeat_period, 1.0),
            )
            period = response.period.ToTimedelta().total_seconds()
            self.heartbeat_period = period if period > 0 else DEFAULT_HEARTBEAT_PERIOD
            await asyncio.sleep(self.heartbeat_period)

    async def _assignments(self, stub: Any) -> None:
        """Follow the assignment stream; reopen it (resync) when a change does not apply
        to the set we hold."""
        resyncs = 0
        while True:
            stream = stub.Assignments(dispatcher_pb2.AssignmentsRequest(session_id=self.session_id))
            try:
                if await self._apply_stream(stream):
                    resyncs = 0
            finally:
                stream.cancel()
            resyncs += 1
            if resyncs > MAX_RESYNCS:
                raise SessionEnded(f"assignments still out of sync after {MAX_RESYNCS} resyncs")
            log.info("assignments out of sync: reopening the stream")

    async def _apply_stream(self, stream: Any) -> bool:
        """Apply messages until one does not follow the last; True if any increment did."""
        holding: str | None = None
        applied_increment = False
        chunks: list[Any] = []  # changes of a message sent in chunks, so far
        while True:
            message = await stream.read()
            if message is grpc.aio.EOF:
                raise SessionEnded("the dispatcher closed the assignment stream")
            if message.applies_to != holding and (chunks or message.type != Msg.COMPLETE):
                return applied_increment  # a chunk or an increment that does not follow
            holding = message.results_in
            chunks.extend(message.changes)
            if message.more:
                continue
            changes, chunks = chunks, []
            if message.type == Msg.COMPLETE:
                await self._sink.assign(_tasks(changes, Change.UPDATE))
                await self._sink.peers(_peers(changes, Change.UPDATE), [], complete=True)
            else:
                removed = [t.id for t in _tasks(changes, Change.REMOVE)]
                await self._sink.update(_tasks(changes, Change.UPDATE), removed)
                gone = [p.network_id for p in _peers(changes, Change.REMOVE)]
                await self._sink.peers(_peers(changes, Change.UPDATE), gone)
                applied_increment = True

    async def _report(self, stub: Any) -> None:
        while True:
            batch = await self._reporter.next_batch()
            request = dispatcher_pb2.UpdateTaskStatusRequest(
                session_id=self.session_id,
                updates=[
                    dispatcher_pb2.UpdateTaskStatusRequest.TaskStatusUpdate(
                        task_id=task_id, status=status
                    )
                    for task_id, status in batch.items()
                ],
            )
            try:
                await stub.UpdateTaskStatus(request, timeout=RPC_TIMEOUT)
            except BaseException:
                self._reporter.requeue(batch)
                raise


def _tasks(
    changes: Sequence[dispatcher_pb2.AssignmentChange], action: int
) -> list[objects_pb2.Task]:
    return [
        c.assignment.task for c in changes if c.action == action and c.assignment.HasField("task")
    ]


def _peers(
    changes: Sequence[dispatcher_pb2.AssignmentChange], action: int
) -> list[dispatcher_pb2.NetworkEndpoints]:
    return [
        c.assignment.network_endpoints
        for c in changes
        if c.action == action and c.assignment.HasField("network_endpoints")
    ]


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__


async def _until_one_fails(*work: Coroutine[Any, Any, None]) -> None:
    """Run the loops together; the first to fail stops the others and its error is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for item in work:
                group.create_task(item)
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
