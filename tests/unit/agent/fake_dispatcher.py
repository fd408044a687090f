"""A dispatcher for agent tests: a real grpc.aio server speaking shoal.v1's Dispatcher.

It records what the agent sends (descriptions, heartbeats, status batches), streams the
assignment set the test edits (COMPLETE, then INCREMENTAL changes), and fails or ends
sessions on demand, like a manager that dies or loses its leadership.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import grpc
from google.protobuf.duration_pb2 import Duration

from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc, objects_pb2, types_pb2

Msg = dispatcher_pb2.AssignmentsMessage
Change = dispatcher_pb2.AssignmentChange
END = None  # queued to end a stream


@dataclass
class Failure:
    code: grpc.StatusCode
    details: str


@dataclass
class Recorded:
    sessions: list[dispatcher_pb2.SessionRequest] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)  # monotonic times
    batches: list[list[tuple[str, types_pb2.TaskStatus]]] = field(default_factory=list)
    assignment_streams: int = 0

    def statuses(self, task_id: str) -> list[types_pb2.TaskStatus]:
        return [s for batch in self.batches for t, s in batch if t == task_id]

    def states(self, task_id: str) -> list[int]:
        return [s.state for s in self.statuses(task_id)]

    def last(self, task_id: str) -> types_pb2.TaskStatus | None:
        found = self.statuses(task_id)
        return found[-1] if found else None


class FakeDispatcher(dispatcher_pb2_grpc.DispatcherServicer):
    def __init__(self, name: str = "m1", heartbeat_period: float = 0.5) -> None:
        self.name = name
        self.address = ""
        self.heartbeat_period = heartbeat_period
        self.managers: list[types_pb2.WeightedPeer] = []
        self.tasks: dict[str, objects_pb2.Task] = {}
        self.recorded = Recorded()
        # Errors for the next calls of each method, taken in order.
        self.fail_sessions: list[Failure] = []
        self.fail_heartbeats: list[Failure] = []
        self.fail_status: list[Failure] = []
        self.stall_sessions = False  # accept sessions but never confirm them
        self._ids = itertools.count(1)
        self._live_sessions: set[str] = set()
        self._session_queues: set[asyncio.Queue[dispatcher_pb2.SessionMessage | None]] = set()
        self._assignment_queues: set[asyncio.Queue[Msg | None]] = set()
        self._version = 0

    # -- the service -----------------------------------------------------------------------

    async def Session(
        self, request: dispatcher_pb2.SessionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dispatcher_pb2.SessionMessage]:
        self.recorded.sessions.append(request)
        await _maybe_fail(self.fail_sessions, context)
        if self.stall_sessions:
            await asyncio.Event().wait()
        session_id = f"{self.name}-session-{next(self._ids)}"
        self.recorded.session_ids.append(session_id)
        self._live_sessions.add(session_id)
        queue: asyncio.Queue[dispatcher_pb2.SessionMessage | None] = asyncio.Queue()
        self._session_queues.add(queue)
        try:
            yield dispatcher_pb2.SessionMessage(session_id=session_id, managers=self.managers)
            while (message := await queue.get()) is not END:
                yield message
        finally:
            self._session_queues.discard(queue)
            self._live_sessions.discard(session_id)

    async def Heartbeat(
        self, request: dispatcher_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> dispatcher_pb2.HeartbeatResponse:
        await self._check_session(request.session_id, context)
        await _maybe_fail(self.fail_heartbeats, context)
        self.recorded.heartbeats.append(time.monotonic())
        period = Duration()
        period.FromNanoseconds(int(self.heartbeat_period * 1e9))
        return dispatcher_pb2.HeartbeatResponse(period=period)

    async def UpdateTaskStatus(
        self, request: dispatcher_pb2.UpdateTaskStatusRequest, context: grpc.aio.ServicerContext
    ) -> dispatcher_pb2.UpdateTaskStatusResponse:
        await self._check_session(request.session_id, context)
        await _maybe_fail(self.fail_status, context)
        self.recorded.batches.append([(u.task_id, u.status) for u in request.updates])
        return dispatcher_pb2.UpdateTaskStatusResponse()

    async def Assignments(
        self, request: dispatcher_pb2.AssignmentsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Msg]:
        await self._check_session(request.session_id, context)
        self.recorded.assignment_streams += 1
        queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._assignment_queues.add(queue)
        try:
            yield Msg(
                type=Msg.COMPLETE,
                results_in=str(self._version),
                changes=[_change(t, Change.UPDATE) for t in self.tasks.values()],
            )
            while (message := await queue.get()) is not END:
                yield message
        finally:
            self._assignment_queues.discard(queue)

    async def _check_session(self, session_id: str, context: grpc.aio.ServicerContext) -> None:
        if session_id not in self._live_sessions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown session {session_id!r}")

    # -- what tests do ---------------------------------------------------------------------

    def set_task(self, task: objects_pb2.Task) -> None:
        """Add or replace a task; open assignment streams hear of it."""
        self.tasks[task.id] = task
        self._push_change(_change(task, Change.UPDATE))

    def remove_task(self, task_id: str) -> None:
        task = self.tasks.pop(task_id)
        self._push_change(_change(task, Change.REMOVE))

    def send_assignments(self, message: Msg) -> None:
        """A raw message on every open assignment stream (e.g. one that does not apply)."""
        for queue in self._assignment_queues:
            queue.put_nowait(message)

    def set_managers(self, managers: list[tuple[str, int]]) -> None:
        """The manager list, sent at once to open sessions and with every new one."""
        self.managers = [
            types_pb2.WeightedPeer(peer=types_pb2.Peer(node_id=addr, addr=addr), weight=weight)
            for addr, weight in managers
        ]
        for queue in self._session_queues:
            queue.put_nowait(dispatcher_pb2.SessionMessage(managers=self.managers))

    def end_sessions(self) -> None:
        """End every open session and assignment stream, and forget the sessions."""
        self._live_sessions.clear()
        for session_queue in self._session_queues:
            session_queue.put_nowait(END)
        for queue in self._assignment_queues:
            queue.put_nowait(END)

    @property
    def open_sessions(self) -> int:
        return len(self._session_queues)

    def _push_change(self, change: dispatcher_pb2.AssignmentChange) -> None:
        message = Msg(
            type=Msg.INCREMENTAL,
            applies_to=str(self._version),
            results_in=str(self._version + 1),
            changes=[change],
        )
        self._version += 1
        self.send_assignments(message)


def _change(task: objects_pb2.Task, action: int) -> dispatcher_pb2.AssignmentChange:
    return Change(assignment=dispatcher_pb2.Assignment(task=task), action=action)  # type: ignore[arg-type]


async def _maybe_fail(failures: list[Failure], context: grpc.aio.ServicerContext) -> None:
    if failures:
        failure = failures.pop(0)
        await context.abort(failure.code, failure.details)


async def serve(
    dispatcher: FakeDispatcher,
    host: str = "127.0.0.1",
    binding: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> grpc.aio.Server:
    """Start a server for `dispatcher` on `host` (a free port); sets dispatcher.address.
    The socket is made inside `binding()` (e.g. a lab machine's network namespace)."""
    server = grpc.aio.server()
    dispatcher_pb2_grpc.add_DispatcherServicer_to_server(dispatcher, server)
    with binding():
        port = server.add_insecure_port(f"{host}:0")
    dispatcher.address = f"{host}:{port}"
    await server.start()
    return server
