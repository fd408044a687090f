"""The updater: one rolling update at a time per service.

Whenever a service's spec (or spec version) is new to it, the updater starts a
`RollingUpdate` for it, which finds out from the store whether anything needs replacing;
a change of spec cancels the run in progress and starts the next one (the new update
supersedes the old, whose tasks are simply dirty for the new spec). A paused update stays
paused until the spec changes again (the Control API clears update_status on every update).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from manager.clock import WALL_CLOCK, Clock
from manager.orchestrator.config import OrchestratorConfig
from manager.orchestrator.eligibility import is_live
from manager.orchestrator.reconciler import Reconciler
from manager.orchestrator.rolling_update import RollingUpdate, SpecKey, spec_key
from manager.store import Event, Kind, ReadTx, Store, StoreError
from shoal.v1 import objects_pb2

log = logging.getLogger(__name__)


@dataclass
class Run:
    key: SpecKey
    task: asyncio.Task[None]


class Updater(Reconciler[str]):
    name = "updater"
    kinds = (Kind.SERVICE,)

    def __init__(
        self, store: Store, clock: Clock = WALL_CLOCK, config: OrchestratorConfig | None = None
    ) -> None:
        self._runs: dict[str, Run] = {}
        self._group: asyncio.TaskGroup | None = None
        super().__init__(store, clock, config)

    def reset(self) -> None:
        # The spec each service's last run ended on (completed, paused, nothing to do).
        self._done: dict[str, SpecKey] = {}
        self._failures: dict[str, int] = {}

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await super().run()
        finally:
            self._group = None
            self._runs.clear()

    def load(self, tx: ReadTx) -> None:
        for service in tx.list(objects_pb2.Service):
            self.agenda.add(service.id)

    def observe(self, event: Event) -> None:
        self.agenda.add(event.object.id)

    async def reconcile(self, key: str) -> None:
        service = self.store.view(lambda tx: tx.get(objects_pb2.Service, key))
        run = self._runs.get(key)
        if service is None or not is_live(service):
            self._cancel(key)
            self._done.pop(key, None)
            return
        wanted = spec_key(service)
        if run is not None and not run.task.done():
            if run.key == wanted:
                return
            # Superseded by a newer spec, or by a rollback.
            self._cancel(key)
        if self._done.get(key) == wanted:
            return
        assert self._group is not None, "the updater starts runs only while it runs"
        # What the last run completed stops meaning anything once another spec runs: this
        # one may end on a refused write, and a rollback to that spec must run again.
        self._done.pop(key, None)
        update = RollingUpdate(self.store, self.clock, self.config, key, wanted)
        task = self._group.create_task(self._drive(update), name=f"update {key}")
        self._runs[key] = Run(wanted, task)

    def _cancel(self, service_id: str) -> None:
        run = self._runs.pop(service_id, None)
        if run is not None:
            run.task.cancel()

    async def _drive(self, update: RollingUpdate) -> None:
        service_id = update.service_id
        try:
            await update.run()
        except StoreError as error:
            # Refused writes or a watch that ended: the store still says where the update
            # is, so a new run picks it up after a growing delay.
            count = self._failures.get(service_id, 0) + 1
            self._failures[service_id] = count
            delay = self.config.retry_delay(count)
            log.warning(
                "update of service %r interrupted (%s); resuming in %.1f s",
                service_id,
                error,
                delay,
            )
            self.agenda.add(service_id, self.clock.now() + delay)
        else:
            self._failures.pop(service_id, None)
            self._done[service_id] = update.key
        finally:
            run = self._runs.get(service_id)
            if run is not None and run.task is asyncio.current_task():
                del self._runs[service_id]
            self.wake()
