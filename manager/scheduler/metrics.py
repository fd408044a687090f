"""The scheduler's Prometheus metrics (prometheus-client), exported by swarmd."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISIONS = Counter(
    "shoal_scheduler_decisions",
    "Scheduling decisions handed to the store: tasks assigned, or left pending with a reason",
    ["result"],
)
ASSIGNED = DECISIONS.labels(result="assigned")
UNSCHEDULABLE = DECISIONS.labels(result="unschedulable")
LATENCY_SECONDS = Histogram(
    "shoal_scheduler_latency_seconds",
    "Time the decision core takes for one batch (one tick)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PENDING_TASKS = Gauge(
    "shoal_scheduler_pending_tasks", "PENDING tasks waiting for a node, queued or unschedulable"
)
