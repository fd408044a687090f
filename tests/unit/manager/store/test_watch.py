"""Watch events: commit order, filters, no gap with view_and_watch, overflow, close."""

from __future__ import annotations

import asyncio
import threading

import pytest

from manager.store import (
    Event,
    EventAction,
    Kind,
    Subscription,
    WatchClosed,
    WatchOverflow,
    WriteTx,
)
from shoal.v1 import objects_pb2, store_pb2
from tests.unit.manager.store.helpers import local_store, service, task


async def next_events(sub: Subscription, count: int) -> list[Event]:
    return [await asyncio.wait_for(sub.get(), 5) for _ in range(count)]


def labels(obj: object) -> dict[str, str]:
    assert isinstance(obj, objects_pb2.Service)
    return dict(obj.spec.annotations.labels)


def name(event: Event) -> str:
    obj = event.object
    assert isinstance(obj, objects_pb2.Service)
    return obj.spec.annotations.name


async def test_events_follow_commit_order_with_old_and_new_objects() -> None:
    store = local_store()
    sub = store.watch()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    stored = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert stored is not None
    stored.spec.annotations.labels["v"] = "2"
    await store.update(lambda tx: tx.update(stored))
    await store.update(lambda tx: tx.delete(objects_pb2.Service, web.id))

    created, updated, deleted = await next_events(sub, 3)
    assert (created.action, created.index, created.old) == (EventAction.CREATE, 1, None)
    assert created.new is not None and created.new.meta.version == 1
    assert updated.action is EventAction.UPDATE and updated.index == 2
    assert "v" not in labels(updated.old)
    assert labels(updated.new)["v"] == "2"
    assert (deleted.action, deleted.new, deleted.object.id) == (EventAction.DELETE, None, web.id)
    assert sub.pending() == 0


async def test_filters_by_kind_action_and_predicate() -> None:
    store = local_store()
    web = service("web")
    tasks_only = store.watch(kinds=[Kind.TASK])
    creates_only = store.watch(actions=[EventAction.CREATE])
    slot_two = store.watch(predicate=lambda e: getattr(e.object, "slot", 0) == 2)

    def create(tx: WriteTx) -> None:
        tx.create(web)
        tx.create(task(web.id, 1))
        tx.create(task(web.id, 2))

    await store.update(create)
    await store.update(lambda tx: tx.delete(objects_pb2.Service, web.id))

    assert [e.kind for e in await next_events(tasks_only, 2)] == [Kind.TASK, Kind.TASK]
    assert tasks_only.pending() == 0
    assert [e.action for e in await next_events(creates_only, 3)] == [EventAction.CREATE] * 3
    assert creates_only.pending() == 0
    [event] = await next_events(slot_two, 1)
    assert isinstance(event.new, objects_pb2.Task) and event.new.slot == 2
    assert slot_two.pending() == 0


async def test_a_refused_transaction_publishes_nothing() -> None:
    store = local_store()
    sub = store.watch()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    await next_events(sub, 1)
    batch = store_pb2.StoreActions()
    batch.actions.add(kind=store_pb2.StoreAction.CREATE, service=service("other"))
    batch.actions.add(kind=store_pb2.StoreAction.CREATE, service=web)  # exists already
    assert store.apply(store.index + 1, batch).error is not None
    await store.update(lambda tx: tx.create(service("after")))
    [event] = await next_events(sub, 1)
    assert name(event) == "after"


async def test_view_and_watch_has_no_gap_and_no_overlap() -> None:
    store = local_store()
    await store.update(lambda tx: tx.create(service("before")))
    names, sub = store.view_and_watch(
        lambda tx: [s.spec.annotations.name for s in tx.list(objects_pb2.Service)]
    )
    await store.update(lambda tx: tx.create(service("after")))
    assert names == ["before"]
    [event] = await next_events(sub, 1)
    assert name(event) == "after"
    assert sub.pending() == 0


async def test_a_slow_subscriber_is_dropped_without_blocking_apply() -> None:
    store = local_store()
    slow = store.watch(maxsize=3)
    fast = store.watch()
    for i in range(5):
        await store.update(lambda tx, i=i: tx.create(service(f"s{i}")))  # type: ignore[misc]
    await asyncio.sleep(0)  # let the loop deliver what apply handed over
    assert len(await next_events(fast, 5)) == 5
    assert [name(e) for e in await next_events(slow, 3)] == ["s0", "s1", "s2"]
    with pytest.raises(WatchOverflow, match="fell more than 3 events behind"):
        await slow.get()
    await store.update(lambda tx: tx.create(service("later")))
    assert [e.index for e in await next_events(fast, 1)] == [6]


async def test_close_ends_iteration_after_received_events() -> None:
    store = local_store()
    sub = store.watch()
    await store.update(lambda tx: tx.create(service("web")))
    await asyncio.sleep(0)
    sub.close()
    seen = [event async for event in sub]
    assert len(seen) == 1
    with pytest.raises(WatchClosed):
        await sub.get()


async def test_events_applied_on_another_thread_arrive_in_order() -> None:
    store = local_store()
    sub = store.watch()

    def apply_many() -> None:
        for i in range(1, 201):
            batch = store_pb2.StoreActions()
            batch.actions.add(kind=store_pb2.StoreAction.CREATE, task=task(slot=i))
            assert store.apply(i, batch).error is None

    thread = threading.Thread(target=apply_many)
    thread.start()
    events = await next_events(sub, 200)
    thread.join()
    assert [e.index for e in events] == list(range(1, 201))


async def test_restore_closes_open_watches() -> None:
    store = local_store()
    sub = store.watch()
    store.restore(store.capture())
    with pytest.raises(WatchClosed, match="restored from a snapshot"):
        await asyncio.wait_for(sub.get(), 5)
