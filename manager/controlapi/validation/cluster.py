"""The cluster spec: orchestration, raft, dispatcher and CA settings, task defaults."""

from __future__ import annotations

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import (
    check_count,
    check_driver,
    check_labels,
    check_object_name,
    check_spec_size,
    duration_nanos,
)
from shoal.v1 import specs_pb2

MAX_CLUSTER_SPEC_BYTES = 64 * 1024
# Shorter node certificates would be renewed faster than a cluster can sensibly sign them
# (SwarmKit's minimum).
MIN_NODE_CERT_EXPIRY_NANOS = 3600 * 1_000_000_000


def check_cluster_spec(spec: specs_pb2.ClusterSpec, field: str = "spec") -> None:
    check_spec_size(field, spec, MAX_CLUSTER_SPEC_BYTES)
    check_object_name(f"{field}.annotations.name", spec.annotations.name)
    check_labels(f"{field}.annotations.labels", spec.annotations.labels)
    raft = spec.raft
    for name in ("snapshot_interval", "keep_old_snapshots", "log_entries_for_slow_followers"):
        check_count(f"{field}.raft.{name}", getattr(raft, name))
    if raft.heartbeat_tick and raft.election_tick and raft.election_tick <= raft.heartbeat_tick:
        raise InvalidArgument(
            f"{field}.raft.election_tick",
            f"{raft.election_tick} must be more than heartbeat_tick ({raft.heartbeat_tick})",
        )
    if spec.dispatcher.HasField("heartbeat_period"):
        duration_nanos(f"{field}.dispatcher.heartbeat_period", spec.dispatcher.heartbeat_period)
    if spec.ca_config.HasField("node_cert_expiry"):
        path = f"{field}.ca_config.node_cert_expiry"
        expiry = duration_nanos(path, spec.ca_config.node_cert_expiry)
        if 0 < expiry < MIN_NODE_CERT_EXPIRY_NANOS:
            raise InvalidArgument(path, "must be 0 (the default, 90 days) or at least 1 hour")
    if spec.task_defaults.HasField("log_driver"):
        check_driver(f"{field}.task_defaults.log_driver", spec.task_defaults.log_driver)
    if spec.encryption_config.auto_lock_managers:
        raise InvalidArgument(
            f"{field}.encryption_config.auto_lock_managers",
            "Shoal has no autolock: managers' raft data is not encrypted with an unlock key",
        )
