"""The orchestrators' Prometheus metrics (prometheus-client), exported by swarmd."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS_CREATED = Counter(
    "shoal_orchestrator_tasks_created",
    "Tasks created by the orchestrators, by why: a new slot or node, a restart, a "
    "replacement of a task whose node was lost, an update",
    ["reason"],
)
TASKS_STOPPED = Counter(
    "shoal_orchestrator_tasks_stopped",
    "Tasks whose desired state the orchestrators moved past RUNNING, by why",
    ["reason"],
)
RESTARTS_REFUSED = Counter(
    "shoal_orchestrator_restarts_refused",
    "Ended tasks not restarted, by the part of the restart policy that refused",
    ["reason"],
)
TASKS_REAPED = Counter(
    "shoal_orchestrator_tasks_reaped", "Tasks deleted by the task reaper, by why", ["reason"]
)
UPDATES = Counter(
    "shoal_orchestrator_updates",
    "Rolling updates and rollbacks that reached a final or paused state, by state",
    ["state"],
)
UPDATES_RUNNING = Gauge(
    "shoal_orchestrator_updates_running", "Rolling updates or rollbacks being driven now"
)
RECONCILE_SECONDS = Histogram(
    "shoal_orchestrator_reconcile_seconds",
    "Time one reconciliation step takes (read, decide, commit), by subsystem",
    ["subsystem"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REFUSED_WRITES = Counter(
    "shoal_orchestrator_refused_writes",
    "Orchestrator transactions the store refused (e.g. a concurrent change), retried later",
    ["subsystem", "error"],
)
RESYNCS = Counter(
    "shoal_orchestrator_resyncs",
    "Times a subsystem re-read the whole store because its watch ended (snapshot restore, "
    "overflow)",
    ["subsystem"],
)


class Tally:
    """Counts made inside a store transaction, added to the metrics only once it commits
    (a refused transaction changed nothing, so it counts nothing)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[Counter, str], int] = {}

    def add(self, metric: Counter, label: str, amount: int = 1) -> None:
        key = (metric, label)
        self._counts[key] = self._counts.get(key, 0) + amount

    @property
    def total(self) -> int:
        """Everything counted so far (the changes a transaction made)."""
        return sum(self._counts.values())

    def commit(self) -> None:
        for (metric, label), amount in self._counts.items():
            metric.labels(label).inc(amount)
        self._counts.clear()
