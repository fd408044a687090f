"""The dispatcher (leader only): agent sessions, heartbeats, assignments, status updates.

`run()` does the leader's side of it until cancelled: it follows the nodes and the cluster
object, marks nodes that stop heartbeating DOWN, and commits task status updates in
batches. The other methods are what the gRPC servicer calls for each RPC; they raise
NotRunning unless `run()` is running, and every session of a term ends with it.

After a leader change nothing of the old leader's sessions survives: every node the store
knows as not DOWN gets `leader_change_grace` (6) heartbeat periods to open a session with
this dispatcher before it is marked DOWN, instead of the usual `missed_heartbeats` (3).
Nodes keep their status meanwhile, so scheduling goes on through a failover.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from manager.clock import MONOTONIC_CLOCK, Clock, now_timestamp
from manager.dispatcher import metrics
from manager.dispatcher.assignment_stream import AssignmentStream
from manager.dispatcher.cluster_view import ClusterView
from manager.dispatcher.config import DispatcherConfig
from manager.dispatcher.errors import (
    DispatcherError,
    NotRunning,
    SessionEnded,
    StoreUnavailable,
    UnknownNode,
)
from manager.dispatcher.heartbeats import HeartbeatDeadlines, jittered
from manager.dispatcher.rate_limit import RegistrationLimiter
from manager.dispatcher.sessions import Session, SessionRegistry
from manager.dispatcher.status_batcher import StatusBatcher
from manager.dispatcher.validation import StatusUpdate, check_description, check_status_updates
from manager.dispatcher.waiting import finished, first_done
from manager.store import (
    Event,
    EventAction,
    Kind,
    ReadTx,
    Store,
    StoreError,
    Subscription,
    WatchClosed,
    WriteTx,
)
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

log = logging.getLogger(__name__)

T = TypeVar("T")
HEARTBEAT_FAILURE = "heartbeat failure"
COMMIT_ATTEMPTS = 3
_KINDS = (Kind.NODE, Kind.CLUSTER)


def _load(tx: ReadTx) -> tuple[list[objects_pb2.Node], objects_pb2.Cluster | None]:
    clusters = tx.list(objects_pb2.Cluster)
    return tx.list(objects_pb2.Node), clusters[0] if clusters else None


def _mark_ready(
    node_id: str, description: types_pb2.NodeDescription, addr: str, tx: WriteTx
) -> None:
    node = tx.get(objects_pb2.Node, node_id)
    if node is None:
        raise UnknownNode(
            f"node {node_id} is not a member of the cluster (never joined, or removed)"
        )
    node.description.CopyFrom(description)
    node.status.state = types_pb2.NodeStatus.READY
    node.status.message = ""
    node.status.addr = addr
    tx.update(node)


class _Term:
    """What one run of the dispatcher keeps (one leadership term)."""

    def __init__(
        self,
        store: Store,
        config: DispatcherConfig,
        clock: Clock,
        loaded: tuple[list[objects_pb2.Node], objects_pb2.Cluster | None],
        events: Subscription,
    ) -> None:
        self.config = config
        self.view = ClusterView(*loaded)
        self.events = events
        self.sessions = SessionRegistry()
        self.deadlines = HeartbeatDeadlines()
        self.deadlines_moved = asyncio.Event()
        # Nodes whose READY write is in flight: an expiry must not mark them DOWN after it.
        self.registering: set[str] = set()
        self.limiter = RegistrationLimiter(config.max_reregistrations, config.reregistration_window)
        self.statuses = StatusBatcher(
            store, clock, config.status_flush_interval, config.status_batch_size
        )

    def period(self) -> float:
        return self.config.heartbeat_period(self.view.cluster)

    def sessions_changed(self) -> None:
        for session in self.sessions:
            session.changed.set()


class Dispatcher:
    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        config: DispatcherConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._clock = clock or MONOTONIC_CLOCK
        self._config = config or DispatcherConfig()
        self._rng = rng or random.Random()
        self._term: _Term | None = None

    @property
    def running(self) -> bool:
        return self._term is not None

    # --- the leader's side -------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled (the moment leadership is lost)."""
        if self._term is not None:
            raise DispatcherError("the dispatcher is already running")
        loaded, events = self._store.view_and_watch(_load, kinds=_KINDS)
        term = _Term(self._store, self._config, self._clock, loaded, events)
        grace = term.period() * self._config.leader_change_grace
        now = self._clock.now()
        for node in loaded[0]:
            if node.status.state != types_pb2.NodeStatus.DOWN:
                term.deadlines.set(node.id, now + grace)
        self._term = term
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow_store(term))
                group.create_task(self._expire_nodes(term))
                group.create_task(term.statuses.run())
        finally:
            self._term = None
            stopped = NotRunning("the dispatcher stopped: this manager is no longer the leader")
            term.sessions.end_all(stopped)
            term.statuses.close(stopped)
            term.events.close()
            ClusterView.unpublish()

    async def _follow_store(self, term: _Term) -> None:
        while True:
            try:
                event = await term.events.get()
            except WatchClosed as exc:  # fell behind, or the store was replaced: re-read it
                log.warning("dispatcher: %s; re-reading nodes and cluster", exc)
                term.events.close()
                loaded, term.events = self._store.view_and_watch(_load, kinds=_KINDS)
                term.view = ClusterView(*loaded)
                members = {node.id for node in loaded[0]}
                for session in term.sessions:
                    if session.node_id not in members:
                        self._node_removed(term, session.node_id)
                term.sessions_changed()
                continue
            self._observe(term, event)

    def _observe(self, term: _Term, event: Event) -> None:
        obj = event.object
        deleted = event.action is EventAction.DELETE
        if isinstance(obj, objects_pb2.Node):
            if deleted:
                managers_changed = term.view.node_removed(obj.id)
                self._node_removed(term, obj.id)
            else:
                managers_changed = term.view.node_changed(obj)
                session = term.sessions.get(obj.id)
                if session is not None:
                    session.changed.set()
            if managers_changed:
                term.sessions_changed()
        elif isinstance(obj, objects_pb2.Cluster) and term.view.cluster_changed(
            None if deleted else obj
        ):
            term.sessions_changed()

    @staticmethod
    def _node_removed(term: _Term, node_id: str) -> None:
        term.deadlines.forget(node_id)
        term.sessions.end(node_id, UnknownNode(f"node {node_id} was removed from the cluster"))

    async def _expire_nodes(self, term: _Term) -> None:
        """Mark DOWN the nodes whose heartbeat deadline passed."""
        while True:
            expired = term.deadlines.expired(self._clock.now())
            if expired:
                for node_id in expired:
                    term.sessions.end(
                        node_id,
                        SessionEnded(f"node {node_id} missed its heartbeats and is marked down"),
                    )
                await self._mark_down(term, expired)
                continue
            term.deadlines_moved.clear()
            deadline = term.deadlines.next_deadline()
            waits: list[Awaitable[object]] = [term.deadlines_moved.wait()]
            if deadline is not None:
                waits.append(self._clock.sleep(max(deadline - self._clock.now(), 0.0)))
            await first_done(*waits)

    async def _mark_down(self, term: _Term, node_ids: Sequence[str]) -> None:
        def write(tx: WriteTx) -> list[str]:
            downed = []
            for node_id in node_ids:
                if node_id in term.deadlines or node_id in term.registering:
                    continue  # it is registering again
                node = tx.get(objects_pb2.Node, node_id)
                if node is None or node.status.state == types_pb2.NodeStatus.DOWN:
                    continue
                node.status.state = types_pb2.NodeStatus.DOWN
                node.status.message = HEARTBEAT_FAILURE
                tx.update(node)
                downed.append(node_id)
            return downed

        try:
            downed = await self._commit(write)
        except StoreUnavailable as exc:
            log.warning("dispatcher: nodes not marked down (%s); trying again later", exc)
            retry_at = self._clock.now() + term.period()
            for node_id in node_ids:
                if node_id not in term.deadlines:
                    self._set_deadline(term, node_id, retry_at)
            return
        if downed:
            log.info("dispatcher: node(s) %s marked down: %s", ", ".join(downed), HEARTBEAT_FAILURE)

    async def _commit(self, fn: Callable[[WriteTx], T]) -> T:
        """`fn` in a store transaction, redone on a version conflict; StoreUnavailable when
        it does not commit."""
        try:
            return (await self._store.update_redone(fn, COMMIT_ATTEMPTS)).value
        except StoreError as exc:
            raise StoreUnavailable(f"the store did not take the change: {exc}") from None

    def _set_deadline(self, term: _Term, node_id: str, deadline: float) -> None:
        if term.deadlines.set(node_id, deadline):
            term.deadlines_moved.set()

    def _running_term(self) -> _Term:
        term = self._term
        if term is None:
            raise NotRunning("the dispatcher is not running on this manager (it is not the leader)")
        return term

    # --- RPCs --------------------------------------------------------------------------

    async def open_session(
        self,
        node_id: str,
        description: types_pb2.NodeDescription,
        addr: str,
        resume: str = "",
    ) -> Session:
        """Register the node (READY, with its description and address) and open its session
        (or keep `resume`, its current one)."""
        term = self._running_term()
        term.limiter.admit(node_id, self._clock.now())
        check_description(description)
        term.registering.add(node_id)
        try:
            await self._commit(functools.partial(_mark_ready, node_id, description, addr))
        finally:
            term.registering.discard(node_id)
        if self._term is not term:
            raise NotRunning("the dispatcher stopped while the node was registering")
        session = term.sessions.open(node_id, resume)
        grace = term.period() * self._config.missed_heartbeats
        self._set_deadline(term, node_id, self._clock.now() + grace)
        log.info("dispatcher: node %s registered (session %s)", node_id, session.id)
        return session

    async def session_messages(
        self, session: Session
    ) -> AsyncIterator[dispatcher_pb2.SessionMessage]:
        """The session's messages: one now, another whenever what it says changes, until
        the session ends (then its error is raised)."""
        sent = b""
        while True:
            if session.error is not None:
                raise session.error
            term = self._running_term()
            session.changed.clear()
            message = self._session_message(term, session)
            data = message.SerializeToString(deterministic=True)
            if data != sent:
                sent = data
                yield message
            _, ended = await first_done(session.changed.wait(), session.wait_ended())
            if finished(ended):
                raise ended.result()

    def _session_message(self, term: _Term, session: Session) -> dispatcher_pb2.SessionMessage:
        node = self._store.view(lambda tx: tx.get(objects_pb2.Node, session.node_id))
        if node is None:
            raise UnknownNode(f"node {session.node_id} was removed from the cluster")
        return dispatcher_pb2.SessionMessage(
            session_id=session.id,
            node=node,
            managers=term.view.managers(),
            network_bootstrap_keys=term.view.network_keys,
            root_ca=term.view.root_ca,
        )

    def heartbeat(self, node_id: str, session_id: str) -> float:
        """Note that the node is alive; the period (seconds) within which to beat again."""
        term = self._running_term()
        term.sessions.check(node_id, session_id)
        period = jittered(term.period(), self._config.heartbeat_jitter, self._rng)
        self._set_deadline(
            term, node_id, self._clock.now() + period * self._config.missed_heartbeats
        )
        metrics.HEARTBEATS.inc()
        return period

    async def update_task_status(
        self,
        node_id: str,
        session_id: str,
        updates: Sequence[dispatcher_pb2.UpdateTaskStatusRequest.TaskStatusUpdate],
    ) -> None:
        """Check and queue the node's status updates; returns once they are committed."""
        term = self._running_term()
        term.sessions.check(node_id, session_id)
        checked = self._store.view(
            functools.partial(check_status_updates, node_id=node_id, updates=updates)
        )
        if checked:
            await term.statuses.submit(node_id, [_stamped(u) for u in checked])

    async def assignments(
        self, node_id: str, session_id: str
    ) -> AsyncIterator[dispatcher_pb2.AssignmentsMessage]:
        """The node's assignments: the complete set, then changes, until the session ends."""
        term = self._running_term()
        session = term.sessions.check(node_id, session_id)
        stream = AssignmentStream(
            self._store,
            node_id,
            self._clock,
            self._config.assignment_batch_size,
            self._config.assignment_batch_interval,
        )
        async for message in stream.messages(session):
            yield message


def _stamped(update: StatusUpdate) -> StatusUpdate:
    """The update with a timestamp (when it arrived) if the agent gave none."""
    if update.status.HasField("timestamp"):
        return update
    status = types_pb2.TaskStatus()
    status.CopyFrom(update.status)
    status.timestamp.CopyFrom(now_timestamp())
    return StatusUpdate(update.task_id, status)
