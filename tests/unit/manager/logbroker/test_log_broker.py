"""The log broker on a real store: selection of nodes, merging what nodes publish, the end of
a subscription without follow (and what makes it incomplete), follow with tasks that start
later, and what a node may not publish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from manager.ca.roles import Role
from manager.logbroker import (
    LOGS_POLICIES,
    BrokerConfig,
    IncompleteLogs,
    InvalidSelector,
    LogBroker,
    NotRunning,
    NotYourSubscription,
    UnknownSubscription,
)
from manager.store import Store, WriteTx
from shoal.v1 import logs_pb2, objects_pb2, types_pb2
from tests.polling import until_async
from tests.unit.manager.dispatcher.fakes import local_store

STEP = 2.0  # seconds any single wait may take


def task(
    task_id: str, service_id: str, node_id: str, state: int = types_pb2.RUNNING
) -> objects_pb2.Task:
    found = objects_pb2.Task(id=task_id, service_id=service_id, node_id=node_id)
    found.status.state = state  # type: ignore[assignment]
    return found


async def add(store: Store, *tasks: objects_pb2.Task) -> None:
    def write(tx: WriteTx) -> None:
        for item in tasks:
            tx.create(item)

    await store.update(write)


def line(node_id: str, task_id: str, text: str, service_id: str = "svc") -> logs_pb2.LogMessage:
    message = logs_pb2.LogMessage(
        context=logs_pb2.LogContext(service_id=service_id, node_id=node_id, task_id=task_id),
        stream=logs_pb2.LOG_STREAM_STDOUT,
        data=text.encode(),
    )
    message.timestamp.FromSeconds(1_700_000_000)
    return message


async def stream(
    *messages: logs_pb2.PublishLogsMessage,
) -> AsyncIterator[logs_pb2.PublishLogsMessage]:
    for message in messages:
        yield message


class Node:
    """A node's listener on the broker: the subscription messages it was sent."""

    def __init__(self, broker: LogBroker, node_id: str) -> None:
        self.node_id = node_id
        self.received: asyncio.Queue[logs_pb2.SubscriptionMessage] = asyncio.Queue()
        self._listening = asyncio.create_task(self._listen(broker))

    async def _listen(self, broker: LogBroker) -> None:
        async for message in broker.listen(self.node_id):
            self.received.put_nowait(message)

    async def next(self) -> logs_pb2.SubscriptionMessage:
        return await asyncio.wait_for(self.received.get(), STEP)

    async def stop(self) -> None:
        self._listening.cancel()
        await asyncio.gather(self._listening, return_exceptions=True)


@pytest.fixture
async def broker() -> AsyncIterator[LogBroker]:
    running = LogBroker(local_store(), BrokerConfig(silence_timeout=0.5))
    run = asyncio.create_task(running.run())
    await until_async(lambda: running.running, "the broker running")
    yield running
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


def store_of(broker: LogBroker) -> Store:
    store: Store = broker._store  # the fixture's store, for adding tasks
    return store


async def collect(lines: AsyncIterator[list[logs_pb2.LogMessage]]) -> list[bytes]:
    return [m.data async for batch in lines for m in batch]


SERVICE = logs_pb2.LogSelector(service_ids=["svc"])
ONCE = logs_pb2.LogSubscriptionOptions(tail=-1)
FOLLOW = logs_pb2.LogSubscriptionOptions(tail=-1, follow=True)


async def test_lines_of_every_node_until_each_has_closed(broker: LogBroker) -> None:
    await add(
        store_of(broker),
        task("t1", "svc", "n1"),
        task("t2", "svc", "n2"),
        task("t3", "other", "n3"),
        task("t4", "svc", "n3", state=types_pb2.PREPARING),  # has not run: no logs yet
    )
    n1, n2, n3 = Node(broker, "n1"), Node(broker, "n2"), Node(broker, "n3")
    await until_async(
        lambda: len(broker._term.listeners) == 3 if broker._term else False, "3 listeners"
    )
    received = asyncio.create_task(collect(broker.subscribe(SERVICE, ONCE)))
    sub1, sub2 = await n1.next(), await n2.next()
    assert sub1.id == sub2.id and list(sub1.selector.service_ids) == ["svc"]
    assert n3.received.empty()

    publish = logs_pb2.PublishLogsMessage
    await broker.publish(
        "n1", stream(publish(subscription_id=sub1.id, messages=[line("n1", "t1", "a")]))
    )
    assert not received.done()
    await broker.publish(
        "n2",
        stream(
            publish(
                subscription_id=sub1.id, messages=[line("n2", "t2", "b"), line("n2", "t2", "c")]
            ),
            publish(subscription_id=sub1.id, close=True),
        ),
    )
    assert sorted(await asyncio.wait_for(received, STEP)) == [b"a", b"b", b"c"]
    # The broker tells the nodes the subscription is over.
    assert (await n2.next()).close
    for node in (n1, n2, n3):
        await node.stop()


async def test_a_node_that_is_not_connected_makes_the_stream_incomplete(broker: LogBroker) -> None:
    await add(store_of(broker), task("t1", "svc", "n1"), task("t2", "svc", "gone"))
    n1 = Node(broker, "n1")
    await until_async(lambda: broker._term and "n1" in broker._term.listeners, "n1 listening")
    lines: list[bytes] = []

    async def read() -> None:
        async for batch in broker.subscribe(SERVICE, ONCE):
            lines.extend(m.data for m in batch)

    reading = asyncio.create_task(read())
    sub = await n1.next()
    await broker.publish(
        "n1",
        stream(
            logs_pb2.PublishLogsMessage(subscription_id=sub.id, messages=[line("n1", "t1", "a")]),
            logs_pb2.PublishLogsMessage(subscription_id=sub.id, close=True),
        ),
    )
    with pytest.raises(IncompleteLogs, match="node gone is not connected"):
        await asyncio.wait_for(reading, STEP)
    assert lines == [b"a"]  # everything received comes first
    await n1.stop()


async def test_silent_and_disconnected_nodes_end_the_stream_with_their_names(
    broker: LogBroker,
) -> None:
    await add(store_of(broker), task("t1", "svc", "n1"), task("t2", "svc", "n2"))
    n1, n2 = Node(broker, "n1"), Node(broker, "n2")
    await until_async(lambda: broker._term and len(broker._term.listeners) == 2, "2 listeners")
    reading = asyncio.create_task(collect(broker.subscribe(SERVICE, ONCE)))
    await n1.next()
    await n2.next()
    await n2.stop()  # n2 disconnects; n1 stays silent past the silence timeout
    with pytest.raises(IncompleteLogs) as failure:
        await asyncio.wait_for(reading, STEP)
    assert "node n2 disconnected" in str(failure.value)
    assert "node n1 sent nothing for 0.5 s" in str(failure.value)
    await n1.stop()


async def test_no_matching_task_ends_at_once_and_unscheduled_tasks_are_named(
    broker: LogBroker,
) -> None:
    assert await asyncio.wait_for(collect(broker.subscribe(SERVICE, ONCE)), STEP) == []
    await add(store_of(broker), task("t9", "svc", "", state=types_pb2.PENDING))
    with pytest.raises(IncompleteLogs, match="task t9 has not been scheduled"):
        await collect(broker.subscribe(logs_pb2.LogSelector(task_ids=["t9"]), ONCE))


async def test_follow_reaches_nodes_of_later_tasks_and_resumes_after_a_reconnection(
    broker: LogBroker,
) -> None:
    await add(store_of(broker), task("t1", "svc", "n1"))
    n1, n2 = Node(broker, "n1"), Node(broker, "n2")
    await until_async(lambda: broker._term and len(broker._term.listeners) == 2, "2 listeners")
    lines = broker.subscribe(SERVICE, FOLLOW)
    first = asyncio.ensure_future(lines.__anext__())
    sub = await n1.next()
    assert sub.options.follow and n2.received.empty()

    await add(store_of(broker), task("t2", "svc", "n2"))  # a task that starts later
    assert (await n2.next()).id == sub.id
    await broker.publish(
        "n2",
        stream(
            logs_pb2.PublishLogsMessage(subscription_id=sub.id, messages=[line("n2", "t2", "x")])
        ),
    )
    assert [m.data for m in await asyncio.wait_for(first, STEP)] == [b"x"]

    # n2 listens again (its stream dropped): it gets the subscription again, from after its
    # last line, so nothing is repeated.
    await n2.stop()
    n2 = Node(broker, "n2")
    again = await n2.next()
    assert again.id == sub.id and again.options.tail == -1
    assert again.options.since.ToSeconds() == 1_700_000_000 and again.options.since.nanos == 1

    await lines.aclose()  # the subscriber leaves: both nodes hear the end
    assert (await n1.next()).close and (await n2.next()).close
    await n1.stop()
    await n2.stop()


async def test_what_a_node_may_not_publish(broker: LogBroker) -> None:
    await add(store_of(broker), task("t1", "svc", "n1"), task("t2", "svc", "n2"))
    n1, n2 = Node(broker, "n1"), Node(broker, "n2")
    await until_async(lambda: broker._term and len(broker._term.listeners) == 2, "2 listeners")
    lines = broker.subscribe(logs_pb2.LogSelector(task_ids=["t1"]), FOLLOW)
    first = asyncio.ensure_future(lines.__anext__())
    sub = await n1.next()
    publish = logs_pb2.PublishLogsMessage

    with pytest.raises(UnknownSubscription, match="no log subscription 'nope'"):
        await broker.publish("n1", stream(publish(subscription_id="nope")))
    with pytest.raises(NotYourSubscription, match="expects no \\(more\\) lines from node n2"):
        await broker.publish(
            "n2", stream(publish(subscription_id=sub.id, messages=[line("n2", "t2", "x")]))
        )
    with pytest.raises(NotYourSubscription, match="node n1 published a line of node n2"):
        await broker.publish(
            "n1", stream(publish(subscription_id=sub.id, messages=[line("n2", "t1", "x")]))
        )
    with pytest.raises(NotYourSubscription, match="did not select task t2"):
        await broker.publish(
            "n1", stream(publish(subscription_id=sub.id, messages=[line("n1", "t2", "x")]))
        )
    assert not first.done()  # nothing of it reached the subscriber
    first.cancel()  # the subscriber leaves
    await asyncio.gather(first, return_exceptions=True)
    assert (await n1.next()).close
    await n1.stop()
    await n2.stop()


async def test_bad_selectors_and_a_broker_that_is_not_running() -> None:
    broker = LogBroker(local_store())
    with pytest.raises(NotRunning):
        await collect(broker.subscribe(SERVICE, ONCE))
    run = asyncio.create_task(broker.run())
    await until_async(lambda: broker.running, "the broker running")
    with pytest.raises(InvalidSelector, match="names no service, node or task"):
        await collect(broker.subscribe(logs_pb2.LogSelector(), ONCE))
    with pytest.raises(InvalidSelector, match="empty task id"):
        await collect(broker.subscribe(logs_pb2.LogSelector(task_ids=[""]), ONCE))

    # Losing leadership ends the subscriptions of the term.
    reading = asyncio.create_task(collect(broker.subscribe(SERVICE, FOLLOW)))
    await asyncio.sleep(0)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    with pytest.raises(NotRunning, match="no longer the leader"):
        await asyncio.wait_for(reading, STEP)


def test_users_subscribe_through_managers_and_every_node_publishes() -> None:
    assert {method: policy.roles for method, policy in LOGS_POLICIES.items()} == {
        "/shoal.v1.Logs/SubscribeLogs": {Role.MANAGER},
        "/shoal.v1.LogBroker/ListenSubscriptions": {Role.WORKER, Role.MANAGER},
        "/shoal.v1.LogBroker/PublishLogs": {Role.WORKER, Role.MANAGER},
    }
    assert not any(policy.anonymous for policy in LOGS_POLICIES.values())


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_metrics_follow_subscriptions_listeners_and_lines() -> None:
    running = LogBroker(local_store(), BrokerConfig(silence_timeout=0.5))
    run = asyncio.create_task(running.run())
    await until_async(lambda: running.running, "the broker running")
    await add(store_of(running), task("t1", "svc", "n1"), task("t2", "svc", "n2"))
    lines, refused = (
        sample("shoal_logbroker_lines_total"),
        sample("shoal_logbroker_refused_publications_total"),
    )
    n1, n2 = Node(running, "n1"), Node(running, "n2")
    await until_async(lambda: sample("shoal_logbroker_listeners") == 2, "2 listeners counted")
    received = asyncio.create_task(collect(running.subscribe(SERVICE, ONCE)))
    sub = await n1.next()
    await n2.next()
    assert sample("shoal_logbroker_subscriptions") == 1

    publish = logs_pb2.PublishLogsMessage
    with pytest.raises(NotYourSubscription):
        await running.publish(
            "n1", stream(publish(subscription_id=sub.id, messages=[line("n2", "t2", "x")]))
        )
    for node_id, task_id in (("n1", "t1"), ("n2", "t2")):
        await running.publish(
            node_id,
            stream(
                publish(subscription_id=sub.id, messages=[line(node_id, task_id, "a")] * 2),
                publish(subscription_id=sub.id, close=True),
            ),
        )
    await asyncio.wait_for(received, STEP)
    assert sample("shoal_logbroker_lines_total") - lines == 4
    assert sample("shoal_logbroker_refused_publications_total") - refused == 1
    assert sample("shoal_logbroker_subscriptions") == 0

    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert sample("shoal_logbroker_listeners") == 0
    for node in (n1, n2):
        await node.stop()
