"""The scheduler as a leader-only subsystem: store events in, assignments committed out.

It follows the protocol of `driver.Scheduler`: one read view plus a watch (no gap, no
overlap), decisions in batches, each batch committed in store transactions of at most
`CHUNK` tasks. An assignment is written only while the stored task is still PENDING and
unassigned; otherwise (or when the commit is refused) the scheduler is told, and tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from manager.scheduler.driver import Scheduler
from manager.scheduler.scheduler import Assignment, Decisions, Unschedulable
from manager.store import (
    Event,
    EventAction,
    Kind,
    ReadTx,
    Store,
    StoreError,
    TransactionTooLarge,
    WriteTx,
)
from shoal.v1 import objects_pb2, types_pb2

CHUNK = 500  # tasks per store transaction
log = logging.getLogger(__name__)


def _feed(scheduler: Scheduler, event: Event) -> None:
    obj = event.object
    if isinstance(obj, objects_pb2.Node):
        if event.action is EventAction.DELETE:
            scheduler.node_removed(obj.id)
        else:
            scheduler.node_changed(obj)
    elif isinstance(obj, objects_pb2.Task):
        if event.action is EventAction.DELETE:
            scheduler.task_removed(obj.id)
        else:
            scheduler.task_changed(obj)


class SchedulerService:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.monotonic,
        debounce_s: float | None = None,
        max_delay_s: float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        timing = {}
        if debounce_s is not None:
            timing["debounce_s"] = debounce_s
        if max_delay_s is not None:
            timing["max_delay_s"] = max_delay_s
        self.scheduler = Scheduler(clock=clock, **timing)

    async def run(self) -> None:
        """Schedule until cancelled."""

        def load(tx: ReadTx) -> tuple[list[objects_pb2.Node], list[objects_pb2.Task]]:
            return tx.list(objects_pb2.Node), tx.list(objects_pb2.Task)

        (nodes, tasks), events = self.store.view_and_watch(load, kinds=(Kind.NODE, Kind.TASK))
        try:
            for node in nodes:
                self.scheduler.node_changed(node)
            for task in tasks:
                self.scheduler.task_changed(task)
            while True:
                due = self.scheduler.next_tick_at()
                timeout = None if due is None else max(0.0, due - self.clock())
                try:
                    event = await asyncio.wait_for(events.get(), timeout)
                except TimeoutError:
                    event = None
                if event is not None:
                    _feed(self.scheduler, event)
                    for _ in range(events.pending()):
                        _feed(self.scheduler, await events.get())
                decisions = self.scheduler.tick()
                if decisions.assigned or decisions.unschedulable:
                    await self.commit(decisions)
        finally:
            events.close()

    async def commit(self, decisions: Decisions) -> None:
        assigned, unschedulable = decisions.assigned, decisions.unschedulable
        for start in range(0, max(len(assigned), len(unschedulable)), CHUNK):
            await self._commit_chunk(
                assigned[start : start + CHUNK], unschedulable[start : start + CHUNK]
            )

    async def _commit_chunk(
        self, assigned: Sequence[Assignment], unschedulable: Sequence[Unschedulable]
    ) -> None:
        def write(tx: WriteTx) -> list[objects_pb2.Task]:
            lost: list[objects_pb2.Task] = []
            for decision in assigned:
                current = tx.get(objects_pb2.Task, decision.task_id)
                if current is None:
                    continue
                taken = current.node_id and current.node_id != decision.node_id
                if current.status.state != types_pb2.PENDING or taken:
                    lost.append(current)
                    continue
                if current.desired_state > types_pb2.RUNNING:
                    continue  # an orchestrator stopped it meanwhile: no node needed
                task = objects_pb2.Task()
                task.CopyFrom(current)
                task.node_id = decision.node_id
                task.status.state = types_pb2.ASSIGNED
                task.status.message = "scheduler assigned task to node"
                task.status.err = ""
                task.status.timestamp.GetCurrentTime()
                tx.update(task)
            for verdict in unschedulable:
                current = tx.get(objects_pb2.Task, verdict.task_id)
                if current is None or current.status.state != types_pb2.PENDING:
                    continue
                task = objects_pb2.Task()
                task.CopyFrom(current)
                task.status.err = verdict.message
                tx.update(task)
            return lost

        try:
            lost = (await self.store.update(write)).value
        except TransactionTooLarge:
            if len(assigned) + len(unschedulable) <= 1:
                raise  # one task's write: nothing to split
            # Large tasks: half the decisions each time, until each part fits.
            half_a, half_u = len(assigned) // 2, len(unschedulable) // 2
            await self._commit_chunk(assigned[:half_a], unschedulable[:half_u])
            await self._commit_chunk(assigned[half_a:], unschedulable[half_u:])
            return
        except StoreError as exc:  # another write won a race: take the tasks as they are now
            log.info("scheduler batch refused (%s); trying those tasks again", exc)
            ids = [a.task_id for a in assigned]
            lost = self.store.view(
                lambda tx: [t for i in ids if (t := tx.get(objects_pb2.Task, i)) is not None]
            )
        for task in lost:
            self.scheduler.assignment_failed(task)
