"""A task's restart policy with its defaults filled in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from manager.clock import duration_seconds
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

Condition: TypeAlias = types_pb2.RestartPolicy.Condition.ValueType


@dataclass(frozen=True)
class RestartPolicy:
    condition: Condition
    delay_s: float
    # Restarts allowed within the window; 0 = unlimited.
    max_attempts: int
    # 0 = the whole life of the spec version.
    window_s: float

    @classmethod
    def of(cls, spec: specs_pb2.TaskSpec, default_delay_s: float) -> RestartPolicy:
        policy = spec.restart
        return cls(
            condition=policy.condition,
            delay_s=duration_seconds(policy.delay) if policy.HasField("delay") else default_delay_s,
            max_attempts=policy.max_attempts,
            window_s=duration_seconds(policy.window),
        )

    def wants_restart(self, task: objects_pb2.Task) -> bool:
        """Whether the condition asks to restart this ended task (attempts aside)."""
        if self.condition == types_pb2.RestartPolicy.ANY:
            return True
        if self.condition == types_pb2.RestartPolicy.ON_FAILURE:
            return task.status.state != types_pb2.COMPLETE
        return False
