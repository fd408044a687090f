"""The store's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Histogram

TRANSACTION_SECONDS = Histogram(
    "shoal_store_transaction_seconds",
    "Store transactions: read views, and write transactions until committed and applied",
    ["mode"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
READ_SECONDS = TRANSACTION_SECONDS.labels(mode="read")
WRITE_SECONDS = TRANSACTION_SECONDS.labels(mode="write")
