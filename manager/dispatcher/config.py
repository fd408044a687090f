"""The dispatcher's settings; the defaults are SwarmKit's numbers."""

from __future__ import annotations

from dataclasses import dataclass, fields

from manager.clock import duration_seconds
from manager.dispatcher.errors import ConfigError
from shoal.v1 import objects_pb2


@dataclass(frozen=True)
class DispatcherConfig:
    # Used while the cluster spec sets no dispatcher.heartbeat_period.
    default_heartbeat_period: float = 5.0
    # The period handed to agents varies by this fraction either way, so that nodes spread out.
    heartbeat_jitter: float = 0.1
    # Periods without a heartbeat before a node is marked DOWN.
    missed_heartbeats: int = 3
    # Periods a node known before a leader change gets to reconnect to the new leader.
    leader_change_grace: int = 6
    # A node may re-register this many times in `reregistration_window` seconds.
    max_reregistrations: int = 3
    reregistration_window: float = 8.0
    # Task status updates are committed together, at most one transaction per this long (the
    # first update after a quiet spell at once, the rest at the end of its window)...
    status_flush_interval: float = 0.1
    # ...and at once when this many are waiting.
    status_batch_size: int = 10_000
    # Assignment changes are sent together: up to this many per message, at most one message
    # per this long to a node (the first change after a quiet spell at once).
    assignment_batch_size: int = 100
    assignment_batch_interval: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "heartbeat_jitter":
                if not 0 <= value < 1:
                    raise ConfigError(f"heartbeat_jitter must be in [0, 1), not {value}")
            elif value <= 0:
                raise ConfigError(f"dispatcher setting {f.name} must be positive, not {value}")

    def heartbeat_period(self, cluster: objects_pb2.Cluster | None) -> float:
        """The cluster's heartbeat period in seconds, or the default while it sets none."""
        if cluster is not None and cluster.spec.dispatcher.HasField("heartbeat_period"):
            seconds = duration_seconds(cluster.spec.dispatcher.heartbeat_period)
            if seconds > 0:
                return seconds
        return self.default_heartbeat_period
