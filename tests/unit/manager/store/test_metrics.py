"""shoal_manager_tasks and shoal_manager_services: counted from the store at each scrape."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from manager.store import ReadTx, Store, StoreObject, WriteTx
from manager.store.metrics import ClusterObjectsCollector
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.store.helpers import local_store, service, task

T = TypeVar("T")


def _task(service_id: str, state: types_pb2.TaskState.ValueType) -> objects_pb2.Task:
    made = task(service_id)
    made.status.state = state
    return made


async def _cluster(store: Store) -> list[objects_pb2.Task]:
    web, db = service("web"), service("db")
    tasks = [
        _task(web.id, types_pb2.RUNNING),
        _task(web.id, types_pb2.RUNNING),
        _task(web.id, types_pb2.PREPARING),
        _task(db.id, types_pb2.FAILED),
    ]

    def create(tx: WriteTx) -> None:
        objs: list[StoreObject] = [web, db, *tasks]
        for obj in objs:
            tx.create(obj)

    await store.update(create)
    return tasks


def _scraped(store: Store, leading: bool) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ClusterObjectsCollector(lambda: store if leading else None))
    return registry


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_the_leader_reports_tasks_by_state_and_services() -> None:
    store = local_store()
    await _cluster(store)
    registry = _scraped(store, leading=True)
    assert _value(registry, "shoal_manager_tasks", state="running") == 2
    assert _value(registry, "shoal_manager_tasks", state="preparing") == 1
    assert _value(registry, "shoal_manager_tasks", state="failed") == 1
    assert _value(registry, "shoal_manager_tasks", state="new") == 0
    assert _value(registry, "shoal_manager_services") == 2


async def test_every_scrape_reads_the_store_again() -> None:
    store = local_store()
    tasks = await _cluster(store)
    registry = _scraped(store, leading=True)
    assert _value(registry, "shoal_manager_tasks", state="running") == 2

    def finish(tx: WriteTx) -> None:
        done = tx.get(objects_pb2.Task, tasks[0].id)
        assert done is not None
        done.status.state = types_pb2.COMPLETE
        tx.update(done)

    await store.update(finish)
    assert _value(registry, "shoal_manager_tasks", state="running") == 1
    assert _value(registry, "shoal_manager_tasks", state="complete") == 1


async def test_a_follower_or_worker_reports_zeros_so_sums_over_nodes_count_once() -> None:
    store = local_store()
    await _cluster(store)
    registry = _scraped(store, leading=False)
    for name, _ in types_pb2.TaskState.items():
        assert _value(registry, "shoal_manager_tasks", state=name.lower()) == 0
    assert _value(registry, "shoal_manager_services") == 0


def test_registering_does_not_read_the_store_and_a_second_one_is_refused() -> None:
    class Unreadable(Store):
        def view(self, fn: Callable[[ReadTx], T]) -> T:
            raise AssertionError("describe() must not read the store")

    registry = CollectorRegistry()
    registry.register(ClusterObjectsCollector(lambda: Unreadable()))
    with pytest.raises(ValueError, match="shoal_manager_tasks"):
        registry.register(ClusterObjectsCollector(lambda: Unreadable()))
