"""Settings of the orchestrators that are not part of any spec."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from manager.orchestrator.errors import OrchestratorConfigError
from shoal.v1 import specs_pb2

# What a task holds beyond its spec: ids, names, status, endpoint, networks (generous).
TASK_OVERHEAD_BYTES = 2048


@dataclass(frozen=True)
class OrchestratorConfig:
    # Wait before a restarted task starts when its restart policy sets no delay (SwarmKit's).
    default_restart_delay_s: float = 5.0
    # Old tasks kept per slot when the cluster object sets no retention limit.
    default_history_limit: int = 5
    # A task of a rolling update that is not RUNNING this long after its creation counts as
    # a failure of the update, so an update never waits forever on an unschedulable task.
    update_start_timeout_s: float = 300.0
    # A stop-first successor starts anyway when the task it replaces has not reported
    # stopping this long after its stop grace period (its node may never answer).
    stop_timeout_margin_s: float = 30.0
    # First wait before a work item whose transaction was refused is tried again; doubles
    # with each refusal in a row, up to max_retry_delay_s.
    retry_delay_s: float = 0.1
    max_retry_delay_s: float = 30.0
    # Task creations and desired-state changes per store transaction (one raft entry); a
    # reconciliation that needs more goes on in further transactions.
    max_changes_per_transaction: int = 500
    # And bytes: under raft's limit on one entry (RaftConfig.max_proposal_bytes, 1.5 MiB),
    # so a service of large tasks is reconciled in several transactions, never refused.
    max_transaction_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise OrchestratorConfigError(
                    f"orchestrator setting {field.name} must be a number, not {value!r}"
                )
            if not math.isfinite(value) or value < 0:
                raise OrchestratorConfigError(
                    f"orchestrator setting {field.name} must be finite and >= 0, not {value!r}"
                )
        if self.max_changes_per_transaction < 1:
            raise OrchestratorConfigError(
                "orchestrator setting max_changes_per_transaction must be at least 1, not "
                f"{self.max_changes_per_transaction!r}"
            )
        if self.max_retry_delay_s < self.retry_delay_s:
            raise OrchestratorConfigError(
                f"orchestrator setting max_retry_delay_s ({self.max_retry_delay_s}) is below "
                f"retry_delay_s ({self.retry_delay_s})"
            )

    def changes_for(self, spec: specs_pb2.TaskSpec) -> int:
        """Changes to tasks of this spec one transaction may hold (each writes a whole task:
        about its spec, plus its status and the rest)."""
        task_bytes = spec.ByteSize() + TASK_OVERHEAD_BYTES
        by_size = self.max_transaction_bytes // task_bytes
        return max(1, min(self.max_changes_per_transaction, by_size))

    def retry_delay(self, refusals: int) -> float:
        """The wait before trying again after `refusals` (>= 1) refusals in a row."""
        return min(self.retry_delay_s * 2.0 ** (refusals - 1), self.max_retry_delay_s)
