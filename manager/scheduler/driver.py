"""The Scheduler: the decision core kept fed by store events, deciding in batches.

How the leader's store wiring drives it (one Scheduler per leadership term, one thread or
event loop; the class is not thread-safe):

1. From one read view: `node_changed(node)` for every node and `task_changed(task)` for every
   task. Then, for every watch event in commit order: CREATE/UPDATE -> `node_changed` /
   `task_changed`, DELETE -> `node_removed` / `task_removed`.
2. Sleep until `next_tick_at()` (or the next event) and call `tick()`. It returns decisions
   only when a batch is due: at once for a change after a quiet spell; within a burst, 50 ms
   after the last change, never more than 1 s after the first (see `batching`). Feed every
   event already queued before calling `tick()`, so one transaction's tasks are one batch.
3. Commit the decisions in batched transactions: an `Assignment` sets node_id and status
   ASSIGNED ("scheduler assigned task to node"); an `Unschedulable` keeps the task PENDING and
   sets status.err to its message (only changed messages are returned, so writing them does
   not loop). Commit an assignment only while the stored task is still the PENDING task it
   was decided for; when it is not (another write got there first), call
   `assignment_failed(current_task)`.

The scheduler counts its own assignments at once (provisionally, with the task's
meta.version); events carrying an older version of such a task are ignored, the committed
version confirms it. Unschedulable tasks are parked and tried again, at the next batch, as
soon as capacity may have appeared: a node added or changed (ready, active, labels,
resources...), or a task leaving a node or stopping (moby/moby#32999 fixed), not on a timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from manager.scheduler import metrics
from manager.scheduler.batching import DEBOUNCE_S, MAX_DELAY_S, Debouncer
from manager.scheduler.node_info import TaskUsage, awaits_scheduling, consumes_resources
from manager.scheduler.node_set import NodeSet
from manager.scheduler.scheduler import Decisions, Unschedulable, place_tasks
from shoal.v1 import objects_pb2, types_pb2

_FAILED_STATES = (types_pb2.FAILED, types_pb2.REJECTED)


class Scheduler:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        debounce_s: float = DEBOUNCE_S,
        max_delay_s: float = MAX_DELAY_S,
    ) -> None:
        self._clock = clock
        self._batch = Debouncer(debounce_s, max_delay_s)
        self._nodes = NodeSet()
        # Task id -> node id, for every task accounted on a node.
        self._accounted: dict[str, str] = {}
        # Task id -> meta.version of the PENDING task this scheduler placed (not yet seen back).
        self._provisional: dict[str, int] = {}
        # PENDING tasks to try at the next batch, and those that found no node.
        self._queued: dict[str, objects_pb2.Task] = {}
        self._parked: dict[str, objects_pb2.Task] = {}
        # Tasks whose node an orchestrator chose: their failures say nothing about our choice.
        self._preassigned: set[str] = set()
        # Last unschedulable message handed out per parked task.
        self._reported: dict[str, str] = {}
        # Capacity may have appeared since the last batch: retry the parked tasks.
        self._retry = False

    @property
    def nodes(self) -> NodeSet:
        """The node infos as the scheduler sees them (read them, do not change them)."""
        return self._nodes

    @property
    def pending_tasks(self) -> int:
        return len(self._queued) + len(self._parked)

    # --- events ------------------------------------------------------------------------

    def node_changed(self, node: objects_pb2.Node) -> None:
        if self._nodes.set_node(node):
            self._capacity_changed()

    def node_removed(self, node_id: str) -> None:
        self._nodes.remove_node(node_id)

    def task_changed(self, task: objects_pb2.Task) -> None:
        task_id = task.id
        placed_at = self._provisional.get(task_id)
        if placed_at is not None:
            if task.meta.version <= placed_at:
                return  # written before our assignment was committed
            del self._provisional[task_id]
        state = task.status.state
        if state < types_pb2.PENDING:
            return
        if awaits_scheduling(task):
            self._await(task)
        elif consumes_resources(task):
            self._account(task)
        else:
            if (
                state in _FAILED_STATES
                and task_id in self._accounted
                and task_id not in self._preassigned
            ):
                info = self._nodes.get(self._accounted[task_id])
                if info is not None:
                    info.record_failure((task.service_id, task.spec_version.index), self._clock())
            self.task_removed(task_id)

    def task_removed(self, task_id: str) -> None:
        self._release(task_id)
        self._queued.pop(task_id, None)
        self._parked.pop(task_id, None)
        self._preassigned.discard(task_id)
        self._reported.pop(task_id, None)

    def assignment_failed(self, task: objects_pb2.Task) -> None:
        """Committing our assignment of `task` failed; take it as the store has it now."""
        self._provisional.pop(task.id, None)
        self._release(task.id)
        self.task_changed(task)

    def _await(self, task: objects_pb2.Task) -> None:
        task_id = task.id
        self._release(task_id)
        if task.node_id:
            self._preassigned.add(task_id)
        if task_id in self._parked:
            self._parked[task_id] = task  # e.g. our own message written back: nothing new
            return
        if task_id not in self._queued:
            self._batch.changed(self._clock())
        self._queued[task_id] = task

    def _account(self, task: objects_pb2.Task) -> None:
        task_id = task.id
        self._queued.pop(task_id, None)
        self._parked.pop(task_id, None)
        self._reported.pop(task_id, None)
        usage = TaskUsage.of(task)
        node_id = self._accounted.get(task_id)
        if node_id is not None and node_id == task.node_id:
            info = self._nodes.get(node_id)
            old = info.tasks.get(task_id) if info is not None else None
            if old == usage:
                return
            self._nodes.add_task(task_id, node_id, usage)
            if old is not None and old.active and not usage.active:
                self._capacity_changed()  # a max_replicas slot and a spread count freed
            return
        self._release(task_id)
        self._nodes.add_task(task_id, task.node_id, usage)
        self._accounted[task_id] = task.node_id

    def _release(self, task_id: str) -> None:
        self._provisional.pop(task_id, None)
        node_id = self._accounted.pop(task_id, None)
        if node_id is not None and self._nodes.remove_task(task_id, node_id) is not None:
            self._capacity_changed()

    def _capacity_changed(self) -> None:
        self._retry = True
        if self._parked:
            self._batch.changed(self._clock())

    # --- batches -----------------------------------------------------------------------

    def next_tick_at(self) -> float | None:
        """When `tick` will next have a batch to decide (clock time), or None."""
        return self._batch.due_at()

    def tick(self, now: float | None = None) -> Decisions:
        """Decide the batch if it is due at `now` (default: the clock); else decide nothing."""
        if now is None:
            now = self._clock()
        if not self._batch.is_due(now):
            metrics.PENDING_TASKS.set(self.pending_tasks)
            return Decisions()
        self._batch.reset(now)
        if self._retry:
            self._queued.update(self._parked)
            self._parked.clear()
            self._retry = False
        batch, self._queued = self._queued, {}
        started = time.perf_counter()
        decided = place_tasks(self._nodes, batch.values(), now)
        metrics.LATENCY_SECONDS.observe(time.perf_counter() - started)

        for assignment in decided.assigned:
            task = batch[assignment.task_id]
            self._accounted[task.id] = assignment.node_id
            self._provisional[task.id] = task.meta.version
            self._reported.pop(task.id, None)
        unschedulable: list[Unschedulable] = []
        for outcome in decided.unschedulable:
            task = batch[outcome.task_id]
            self._parked[task.id] = task
            previous = self._reported.get(task.id, task.status.err)
            if outcome.message != previous:
                self._reported[task.id] = outcome.message
                unschedulable.append(outcome)

        metrics.ASSIGNED.inc(len(decided.assigned))
        metrics.UNSCHEDULABLE.inc(len(unschedulable))
        metrics.PENDING_TASKS.set(self.pending_tasks)
        return Decisions(decided.assigned, unschedulable)
