"""All the orchestrators of a leader, started and stopped together."""

from __future__ import annotations

import asyncio
from typing import Any

from manager.clock import WALL_CLOCK, Clock
from manager.orchestrator.config import OrchestratorConfig
from manager.orchestrator.constraint_enforcer import ConstraintEnforcer
from manager.orchestrator.global_service import GlobalOrchestrator
from manager.orchestrator.reaper import TaskReaper
from manager.orchestrator.reconciler import Reconciler
from manager.orchestrator.replicated import ReplicatedOrchestrator
from manager.orchestrator.restart import RestartSupervisor
from manager.orchestrator.updater import Updater
from manager.store import Store


class Orchestrators:
    """The manager starts `run()` once its leadership barrier has committed and cancels it
    the moment leadership is lost. A new instance (or this one, run again) rebuilds
    everything from the store."""

    def __init__(
        self,
        store: Store,
        clock: Clock = WALL_CLOCK,
        config: OrchestratorConfig | None = None,
    ) -> None:
        config = config if config is not None else OrchestratorConfig()
        self.replicated = ReplicatedOrchestrator(store, clock, config)
        self.global_ = GlobalOrchestrator(store, clock, config)
        self.restart = RestartSupervisor(store, clock, config)
        self.reaper = TaskReaper(store, clock, config)
        self.constraint_enforcer = ConstraintEnforcer(store, clock, config)
        self.updater = Updater(store, clock, config)

    @property
    def subsystems(self) -> tuple[Reconciler[Any], ...]:
        return (
            self.replicated,
            self.global_,
            self.restart,
            self.reaper,
            self.constraint_enforcer,
            self.updater,
        )

    async def run(self) -> None:
        """Run every orchestrator until cancelled (or until one fails, which stops all)."""
        async with asyncio.TaskGroup() as group:
            for subsystem in self.subsystems:
                group.create_task(subsystem.run(), name=f"orchestrator {subsystem.name}")
