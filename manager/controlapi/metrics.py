"""The Control API's Prometheus metrics (prometheus-client), exported by swarmd."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "shoal_controlapi_requests",
    "Control API calls answered, by method and gRPC status code",
    ["method", "code"],
)
REQUEST_SECONDS = Histogram(
    "shoal_controlapi_request_seconds",
    "Time to answer a Control API call, forwarding to the leader included",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FORWARDED = Counter(
    "shoal_controlapi_forwarded",
    "Control API writes a follower relayed to the raft leader",
    ["method"],
)
