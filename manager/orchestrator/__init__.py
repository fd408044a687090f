"""The orchestrators (leader only): they turn services into tasks and keep them so.

Each is a `Reconciler`: built from a store (plus a wall `manager.clock.Clock` and settings),
`await run()` works until cancelled, rebuilding its view from the store when it starts, so a
new leader picks up where the old one stopped. They never call each other: they meet in the
store, where every decision is a transaction that re-reads what it changes.

- `ReplicatedOrchestrator`: slots of replicated services (create, scale, replace tasks of
  lost nodes).
- `GlobalOrchestrator`: one task per eligible node for global services. (The two share
  their loop, `ModeOrchestrator`: services of one mode, their slots, their nodes.)
- `RestartSupervisor`: restart policy (condition, delay, attempts within a window).
- `TaskReaper`: history retention, deletion of removed tasks and services.
- `ConstraintEnforcer`: tasks off nodes that no longer meet their constraints or resources.
- `Updater`: rolling updates, pause, rollback (`RollingUpdate` is one of them).
- `Orchestrators`: all of the above in one asyncio TaskGroup.
"""

from manager.orchestrator.config import OrchestratorConfig
from manager.orchestrator.constraint_enforcer import ConstraintEnforcer
from manager.orchestrator.dirty import is_dirty
from manager.orchestrator.errors import OrchestratorConfigError, OrchestratorError
from manager.orchestrator.global_service import GlobalOrchestrator
from manager.orchestrator.orchestrators import Orchestrators
from manager.orchestrator.reaper import TaskReaper
from manager.orchestrator.reconciler import Reconciler
from manager.orchestrator.replicated import ReplicatedOrchestrator
from manager.orchestrator.restart import RestartSupervisor
from manager.orchestrator.restart_policy import RestartPolicy
from manager.orchestrator.rolling_update import RollingUpdate
from manager.orchestrator.update_policy import UpdatePolicy
from manager.orchestrator.updater import Updater

__all__ = [
    "ConstraintEnforcer",
    "GlobalOrchestrator",
    "OrchestratorConfig",
    "OrchestratorConfigError",
    "OrchestratorError",
    "Orchestrators",
    "Reconciler",
    "ReplicatedOrchestrator",
    "RestartPolicy",
    "RestartSupervisor",
    "RollingUpdate",
    "TaskReaper",
    "UpdatePolicy",
    "Updater",
    "is_dirty",
]
