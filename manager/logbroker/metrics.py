"""The log broker's Prometheus metrics (prometheus-client), exported by swarmd.

Only the leader's broker runs, so only the leader reports subscriptions and listening nodes;
a manager that loses the leadership resets them to zero.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SUBSCRIPTIONS = Gauge("shoal_logbroker_subscriptions", "Log subscriptions open (users' calls)")
LISTENERS = Gauge("shoal_logbroker_listeners", "Nodes listening for log subscriptions")
LINES = Counter("shoal_logbroker_lines", "Log lines relayed from nodes to subscribers")
REFUSED = Counter(
    "shoal_logbroker_refused_publications",
    "Node publications refused (an ended or unknown subscription, or lines it did not select)",
)
