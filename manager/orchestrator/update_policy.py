"""The update (or rollback) settings a rolling update runs with, defaults filled in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from manager.clock import duration_seconds
from shoal.v1 import objects_pb2, types_pb2

DEFAULT_MONITOR_S = 5.0

FailureAction: TypeAlias = types_pb2.UpdateConfig.FailureAction.ValueType
Order: TypeAlias = types_pb2.UpdateConfig.Order.ValueType


@dataclass(frozen=True)
class UpdatePolicy:
    # Slots replaced per batch; 0 = all at once.
    parallelism: int
    delay_s: float
    failure_action: FailureAction
    monitor_s: float
    max_failure_ratio: float
    order: Order

    @classmethod
    def of(cls, config: types_pb2.UpdateConfig | None) -> UpdatePolicy:
        if config is None:
            return cls(
                parallelism=1,
                delay_s=0.0,
                failure_action=types_pb2.UpdateConfig.PAUSE,
                monitor_s=DEFAULT_MONITOR_S,
                max_failure_ratio=0.0,
                order=types_pb2.UpdateConfig.STOP_FIRST,
            )
        return cls(
            parallelism=config.parallelism,
            delay_s=duration_seconds(config.delay),
            failure_action=config.failure_action,
            monitor_s=(
                duration_seconds(config.monitor)
                if config.HasField("monitor")
                else DEFAULT_MONITOR_S
            ),
            max_failure_ratio=config.max_failure_ratio,
            order=config.order,
        )

    @classmethod
    def for_service(cls, service: objects_pb2.Service, rolling_back: bool) -> UpdatePolicy:
        """The update config of the spec, or while rolling back the rollback config of the
        spec being rolled back from (now previous_spec: the user's latest word), else of
        the spec itself."""
        if not rolling_back:
            spec = service.spec
            return cls.of(spec.update if spec.HasField("update") else None)
        for spec in (service.previous_spec, service.spec):
            if spec.HasField("rollback"):
                return cls.of(spec.rollback)
        return cls.of(None)
