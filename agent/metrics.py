"""The agent's Prometheus metrics (prometheus-client), exported by swarmd."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TASKS = Gauge("shoal_agent_tasks", "Tasks held by this agent, by their current state", ["state"])
SESSION_RECONNECTS = Counter(
    "shoal_agent_session_reconnects",
    "Sessions with a dispatcher that ended or could not be opened, each followed by a reconnect",
)
ASSIGNMENTS = Gauge("shoal_agent_assignments", "Tasks in the node's assignment set")
