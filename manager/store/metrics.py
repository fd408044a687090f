"""The store's Prometheus metrics, and the cluster's objects counted from it."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shoal.v1 import objects_pb2, types_pb2

if TYPE_CHECKING:
    from manager.store.readtx import ReadTx
    from manager.store.store import Store

TRANSACTION_SECONDS = Histogram(
    "shoal_store_transaction_seconds",
    "Store transactions: read views, and write transactions until committed and applied",
    ["mode"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
READ_SECONDS = TRANSACTION_SECONDS.labels(mode="read")
WRITE_SECONDS = TRANSACTION_SECONDS.labels(mode="write")

TASK_STATES = [(name.lower(), value) for name, value in types_pb2.TaskState.items()]


def _count(tx: ReadTx) -> tuple[collections.Counter[types_pb2.TaskState.ValueType], int]:
    states = collections.Counter(t.status.state for t in tx.list(objects_pb2.Task))
    return states, tx.count(objects_pb2.Service)


class ClusterObjectsCollector(Collector):
    """`shoal_manager_tasks{state}` and `shoal_manager_services`, read from the store at each
    scrape, so they can never drift from it.

    `leader_store` returns the store while this process's manager is the raft leader, else
    None (a follower, a worker, a manager stopped by a demotion): then the numbers are zeros,
    as `shoal_manager_nodes` is on followers, so a sum over all nodes counts every task once.
    Register one per process: `prometheus_client.REGISTRY.register(ClusterObjectsCollector(
    leader_store))`.
    """

    def __init__(self, leader_store: Callable[[], Store | None]) -> None:
        self._leader_store = leader_store

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without samples: registering checks names without reading the store."""
        yield _tasks_family()
        yield _services_family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self._leader_store()
        states, services = store.view(_count) if store is not None else (None, 0)
        tasks = _tasks_family()
        for name, value in TASK_STATES:
            tasks.add_metric([name], states[value] if states else 0)
        yield tasks
        count = _services_family()
        count.add_metric([], services)
        yield count


def _tasks_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "shoal_manager_tasks",
        "Tasks of the cluster by their current state (reported by the raft leader)",
        labels=["state"],
    )


def _services_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "shoal_manager_services", "Services of the cluster (reported by the raft leader)"
    )
