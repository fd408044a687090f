"""The raft layer's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

TERM = Gauge("shoal_raft_term", "Current raft term of this manager")
COMMIT_INDEX = Gauge("shoal_raft_commit_index", "Raft commit index known to this manager")
LEADER = Gauge("shoal_raft_leader", "1 when this manager is the raft leader, else 0")
APPLY_SECONDS = Histogram(
    "shoal_raft_apply_seconds",
    "Time to apply one committed raft entry to the store",
    buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
)
PROPOSAL_SECONDS = Histogram(
    "shoal_raft_proposal_seconds",
    "Time from proposing a store transaction until it is committed and applied",
    buckets=_LATENCY_BUCKETS,
)
READ_BARRIER_SECONDS = Histogram(
    "shoal_raft_read_barrier_seconds",
    "Time a linearizable read waits for its read point (a barrier entry applied here)",
    buckets=_LATENCY_BUCKETS,
)
SNAPSHOT_SECONDS = Histogram(
    "shoal_raft_snapshot_seconds",
    "Time to write a raft snapshot to disk (encode, write, fsync)",
    buckets=(*_LATENCY_BUCKETS, 10, 30),
)
