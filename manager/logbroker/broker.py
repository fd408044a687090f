"""The log broker (leader only): user subscriptions in, node listeners out, lines back.

`subscribe` turns a selector into the nodes that have (or, with follow, get) matching tasks
and sends the subscription down each node's `listen` stream; the nodes `publish` the lines
of their tasks, which reach the subscriber as they come. `run()` makes the broker answer
until cancelled (the moment leadership is lost); then every subscription and listener of
the term ends, and agents listen again on the new leader.

Nodes publish only for subscriptions sent to them, only lines of their own node, and only
of tasks the subscription selected.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from manager.logbroker import metrics
from manager.logbroker.errors import (
    LogBrokerError,
    NotRunning,
    NotYourSubscription,
    UnknownSubscription,
)
from manager.logbroker.selection import check_selector, select, selects_context, selects_task
from manager.logbroker.subscription import BrokerSubscription
from manager.store import EventAction, Kind, Store, Subscription, WatchClosed, new_id
from shoal.v1 import logs_pb2, objects_pb2

log = logging.getLogger(__name__)

DEFAULT_SILENCE_TIMEOUT = 20.0  # seconds a node may stay silent on a subscription without follow


@dataclass(frozen=True)
class BrokerConfig:
    silence_timeout: float = DEFAULT_SILENCE_TIMEOUT


class _Listener:
    """One node's ListenSubscriptions stream: the messages still to send it."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.outbox: asyncio.Queue[logs_pb2.SubscriptionMessage | None] = asyncio.Queue()

    def send(self, message: logs_pb2.SubscriptionMessage) -> None:
        self.outbox.put_nowait(message)

    def end(self) -> None:
        self.outbox.put_nowait(None)


class _Term:
    """What one run of the broker keeps (one leadership term)."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, BrokerSubscription] = {}
        self.listeners: dict[str, _Listener] = {}

    def offer(self, sub: BrokerSubscription, node_id: str) -> None:
        """Send `sub` to the node if it listens; without follow, a node that does not
        listen is done at once (and named in the subscription's error)."""
        listener = self.listeners.get(node_id)
        if listener is None:
            sub.node_done(node_id, f"node {node_id} is not connected")
            return
        sub.sent.add(node_id)
        listener.send(sub.message_for(node_id))

    def drop_listener(self, listener: _Listener) -> None:
        node_id = listener.node_id
        if self.listeners.get(node_id) is not listener:
            return
        del self.listeners[node_id]
        listener.end()
        for sub in self.subscriptions.values():
            if node_id in sub.sent:
                sub.sent.discard(node_id)
                sub.node_done(node_id, f"node {node_id} disconnected before sending all its logs")


class LogBroker:
    def __init__(self, store: Store, config: BrokerConfig | None = None) -> None:
        self._store = store
        self._config = config or BrokerConfig()
        self._term: _Term | None = None

    @property
    def running(self) -> bool:
        return self._term is not None

    async def run(self) -> None:
        """Answer until cancelled (the moment leadership is lost)."""
        if self._term is not None:
            raise LogBrokerError("the log broker is already running")
        term = self._term = _Term()
        try:
            await asyncio.Event().wait()
        finally:
            self._term = None
            stopped = NotRunning("the log broker stopped: this manager is no longer the leader")
            for listener in list(term.listeners.values()):
                term.drop_listener(listener)
            for sub in term.subscriptions.values():
                sub.abort(stopped)
            metrics.SUBSCRIPTIONS.set(0)
            metrics.LISTENERS.set(0)

    def _running_term(self) -> _Term:
        term = self._term
        if term is None:
            raise NotRunning("the log broker is not running on this manager (it is not the leader)")
        return term

    # -- users ----------------------------------------------------------------------------

    async def subscribe(
        self, selector: logs_pb2.LogSelector, options: logs_pb2.LogSubscriptionOptions
    ) -> AsyncGenerator[list[logs_pb2.LogMessage], None]:
        """The selected tasks' lines, in batches as nodes publish them. Without follow it
        ends once every node concerned is done; IncompleteLogs names those that could not
        send. With follow it goes on (new tasks included) until the caller stops."""
        term = self._running_term()
        check_selector(selector)
        message = logs_pb2.SubscriptionMessage(id=new_id(), selector=selector, options=options)
        choose = functools.partial(select, selector=selector, follow=options.follow)
        watch: Subscription | None = None
        if options.follow:
            selection, watch = self._store.view_and_watch(
                choose, kinds=(Kind.TASK,), actions=(EventAction.CREATE, EventAction.UPDATE)
            )
        else:
            selection = self._store.view(choose)
        sub = BrokerSubscription(message, selection, self._config.silence_timeout)
        term.subscriptions[sub.id] = sub
        metrics.SUBSCRIPTIONS.set(len(term.subscriptions))
        following: asyncio.Task[None] | None = None
        try:
            for node_id in sorted(selection.nodes):
                sub.add_node(node_id)
                term.offer(sub, node_id)
            if watch is not None:
                following = asyncio.create_task(self._follow_tasks(term, sub, watch))
            async for batch in sub.batches():
                yield batch
        finally:
            if watch is not None:
                watch.close()
            if following is not None:
                following.cancel()
            term.subscriptions.pop(sub.id, None)
            if self._term is term:
                metrics.SUBSCRIPTIONS.set(len(term.subscriptions))
            closing = logs_pb2.SubscriptionMessage(id=sub.id, close=True)
            for node_id in sub.sent:
                listener = term.listeners.get(node_id)
                if listener is not None:
                    listener.send(closing)

    @staticmethod
    async def _follow_tasks(term: _Term, sub: BrokerSubscription, watch: Subscription) -> None:
        """Send the subscription to nodes that get a selected task after it began."""
        selector = sub.message.selector
        try:
            async for event in watch:
                task = event.new
                if not isinstance(task, objects_pb2.Task) or not task.node_id:
                    continue
                if selects_task(selector, task) and sub.add_node(task.node_id):
                    term.offer(sub, task.node_id)
        except WatchClosed as exc:
            log.warning("log subscription %s no longer follows new tasks: %s", sub.id, exc)

    # -- nodes ----------------------------------------------------------------------------

    async def listen(self, node_id: str) -> AsyncIterator[logs_pb2.SubscriptionMessage]:
        """The subscriptions for the node: those open now, then new ones and closings, until
        the node listens again elsewhere or the broker stops."""
        term = self._running_term()
        previous = term.listeners.get(node_id)
        if previous is not None:
            term.drop_listener(previous)
        listener = term.listeners[node_id] = _Listener(node_id)
        metrics.LISTENERS.set(len(term.listeners))
        for sub in list(term.subscriptions.values()):
            if sub.waiting_for(node_id):
                term.offer(sub, node_id)
        try:
            while (message := await listener.outbox.get()) is not None:
                yield message
        finally:
            term.drop_listener(listener)
            if self._term is term:
                metrics.LISTENERS.set(len(term.listeners))

    async def publish(
        self, node_id: str, messages: AsyncIterator[logs_pb2.PublishLogsMessage]
    ) -> None:
        """Take the node's publications until it stops sending. A stream that fails leaves
        its unfinished subscriptions incomplete; one that just ends finishes them."""
        term = self._running_term()
        unfinished: set[str] = set()
        try:
            async for message in messages:
                if self._term is not term:
                    raise NotRunning("the log broker stopped: this manager is no longer the leader")
                try:
                    sub = _publishable(term, node_id, message)
                except LogBrokerError:
                    metrics.REFUSED.inc()
                    raise
                if message.messages:
                    unfinished.add(sub.id)
                    await sub.deliver(node_id, list(message.messages))
                    metrics.LINES.inc(len(message.messages))
                if message.close:
                    unfinished.discard(sub.id)
                    sub.node_done(node_id)
        except BaseException as exc:
            problem = f"publishing from node {node_id} failed: {_describe(exc)}"
            _finish(term, node_id, unfinished, problem)
            raise
        _finish(term, node_id, unfinished, None)


def _publishable(
    term: _Term, node_id: str, message: logs_pb2.PublishLogsMessage
) -> BrokerSubscription:
    """The subscription `message` is for, if the node may publish it."""
    sub = term.subscriptions.get(message.subscription_id)
    if sub is None:
        raise UnknownSubscription(
            f"no log subscription {message.subscription_id!r}: it ended or never existed"
        )
    if not sub.waiting_for(node_id):
        raise NotYourSubscription(
            f"log subscription {sub.id} expects no (more) lines from node {node_id}"
        )
    selector = sub.message.selector
    for line in message.messages:
        context = line.context
        if context.node_id != node_id:
            raise NotYourSubscription(
                f"node {node_id} published a line of node {context.node_id or '(none)'}"
            )
        if not selects_context(selector, context):
            raise NotYourSubscription(
                f"log subscription {sub.id} did not select task {context.task_id or '(none)'}"
                f" of service {context.service_id or '(none)'}"
            )
    return sub


def _finish(term: _Term, node_id: str, sub_ids: set[str], problem: str | None) -> None:
    for sub_id in sub_ids:
        sub = term.subscriptions.get(sub_id)
        if sub is not None:
            sub.node_done(node_id, problem)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "the stream was cancelled"
    return str(exc) or type(exc).__name__
