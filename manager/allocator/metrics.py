"""The allocator's Prometheus metrics (prometheus-client), exported by swarmd."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ALLOCATIONS = Counter(
    "shoal_allocator_allocations",
    "Objects the allocator handled: networks, services and tasks, allocated or failed",
    ["kind", "result"],
)
WAITING_TASKS = Gauge(
    "shoal_allocator_waiting_tasks",
    "NEW tasks the allocator could not allocate yet (a network or service they need failed)",
)
