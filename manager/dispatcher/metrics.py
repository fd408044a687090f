"""The dispatcher's Prometheus metrics (prometheus-client), exported by swarmd.

Only the leader's dispatcher runs, so only the leader reports sessions, queued status
updates and nodes by state; a manager that loses the leadership resets them to zero.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SESSIONS = Gauge("shoal_dispatcher_sessions", "Agent sessions open on this (leader) dispatcher")
HEARTBEATS = Counter("shoal_dispatcher_heartbeats", "Heartbeats received from agents")
STATUS_UPDATES = Counter(
    "shoal_dispatcher_status_updates",
    "Task status updates from agents: committed, or dropped as stale or for a gone task",
    ["result"],
)
STATUS_UPDATES_QUEUED = Gauge(
    "shoal_dispatcher_status_updates_queued",
    "Task status updates from agents waiting for the next batched commit",
)
SCHEDULING_DELAY_SECONDS = Histogram(
    "shoal_dispatcher_scheduling_delay_seconds",
    "Time from a task's creation (NEW) to its agent reporting it RUNNING",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
NODES = Gauge("shoal_manager_nodes", "Nodes of the cluster by status", ["state"])
