"""One rolling update (or rollback) of one service's spec, driven from the store.

The slots whose runnable tasks all differ from the service's spec (see `dirty`) are
replaced in batches of `parallelism` (0: all at once):

- stop-first: in one transaction the old tasks get desired SHUTDOWN and the new one is
  created with desired READY (the agent pulls and prepares it meanwhile); it is set to
  desired RUNNING once the old ones have stopped (or never report: see `delayed_start`).
  When nothing old is running any more, the new task is created RUNNING at once.
- start-first: the new task is created RUNNING next to the old ones, which are shut down
  once it runs.

A batch is done when each of its new tasks is RUNNING, has ended, or has not started
within the start timeout (which counts as a failure: an update never waits forever on a
task that cannot be placed). A new task taken away meanwhile (its node lost...) is followed
by its successor in the slot, or the slot is replaced again (a few times at most). Then
`delay`, then the next batch; after the last one the update waits out the `monitor` window
of its newest tasks. A failure is a new task that ends without being asked to before it
runs or within `monitor` of running. When
failures exceed max_failure_ratio of the slots to update, the failure action runs: pause
(PAUSED), continue, or rollback: spec and previous_spec (and their versions) swap and the
status becomes ROLLBACK_STARTED, so a new rolling update (with the rollback config) takes
the service back. A rollback that fails pauses (ROLLBACK_PAUSED), whatever its action says:
it never loops.

Everything the run needs is in the store: a new leader starts a run for the same spec,
which finds the update's status, the slots already done, the new tasks still starting (it
waits for them), and the failures so far (the update's FAILED/REJECTED tasks: an
approximation, it cannot tell when they ran).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias

from manager.clock import Clock, timestamp_of, timestamp_seconds
from manager.orchestrator import metrics
from manager.orchestrator.config import OrchestratorConfig
from manager.orchestrator.delayed_start import start_when_due
from manager.orchestrator.dirty import is_dirty
from manager.orchestrator.eligibility import is_global, is_live, is_replicated
from manager.orchestrator.metrics import Tally
from manager.orchestrator.reconciler import commit, next_event
from manager.orchestrator.replacement import create_successor, retire_superseded, set_desired
from manager.orchestrator.slots import SlotKey, group_by_slot, runnable, slot_tasks
from manager.orchestrator.tasks import (
    created_at,
    has_ended,
    is_alive,
    is_runnable,
    newest_first,
)
from manager.orchestrator.update_policy import UpdatePolicy
from manager.store import Event, Kind, ReadTx, Store, Subscription, WriteTx
from shoal.v1 import objects_pb2, types_pb2

SpecKey = tuple[int, bytes]
UpdateState: TypeAlias = types_pb2.UpdateStatus.UpdateState.ValueType

# Times one update replaces one slot whose new tasks keep being taken away (their nodes
# lost...) before it leaves the slot as it is.
MAX_REPLACEMENTS = 3

IN_PROGRESS = (types_pb2.UpdateStatus.UPDATING, types_pb2.UpdateStatus.ROLLBACK_STARTED)
PAUSED = (types_pb2.UpdateStatus.PAUSED, types_pb2.UpdateStatus.ROLLBACK_PAUSED)
FAILED_STATES = (types_pb2.FAILED, types_pb2.REJECTED)


def spec_key(service: objects_pb2.Service) -> SpecKey:
    """What identifies one update: the spec and its version."""
    return service.spec_version.index, service.spec.SerializeToString(deterministic=True)


def ended_on_its_own(task: objects_pb2.Task) -> bool:
    """An ended task that nobody asked to stop: it exited or failed, or was stopped while
    still wanted. (Stopping on request ends in SHUTDOWN with a desired state past
    RUNNING.)"""
    return task.status.state != types_pb2.SHUTDOWN or is_runnable(task)


class Superseded(Exception):
    """The service changed spec (or went) under the rolling update."""


@dataclass
class Tracked:
    """A new task of the update, followed until it runs and through its monitor window."""

    key: SlotKey
    task_id: str
    created: float
    running_since: float | None = None
    settled: bool = False
    failed: bool = False


@dataclass(frozen=True)
class Plan:
    rolling_back: bool
    # The status already says an update is in progress (a new leader resumes it).
    resuming: bool
    policy: UpdatePolicy
    todo: list[SlotKey]
    in_flight: list[Tracked]
    failures: list[str]


def _own_tasks(
    service: objects_pb2.Service, tasks: list[objects_pb2.Task]
) -> list[objects_pb2.Task]:
    if is_replicated(service):
        return [t for t in tasks if t.slot]
    if is_global(service):
        return [t for t in tasks if not t.slot and t.node_id]
    return []


class RollingUpdate:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: OrchestratorConfig,
        service_id: str,
        key: SpecKey,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.service_id = service_id
        self.key = key
        self._policy = UpdatePolicy.of(None)
        self._rolling_back = False
        self._tracked: dict[str, Tracked] = {}
        self._failed: list[str] = []
        self._total = 0
        # Slots whose new task was taken away while old ones still hold them, and how often
        # each slot was replaced by this update.
        self._retry: list[SlotKey] = []
        self._replaced: Counter[SlotKey] = Counter()

    async def run(self) -> None:
        """Drive the update until it completes, pauses or rolls back; return at once when
        there is nothing to do, or as soon as the service's spec changes."""
        plan, events = self.store.view_and_watch(
            self._plan, kinds=(Kind.TASK, Kind.NODE), predicate=self._concerns
        )
        try:
            if plan is not None:
                await self._drive(plan, events)
        except Superseded:
            return
        finally:
            events.close()

    def _concerns(self, event: Event) -> bool:
        obj = event.object
        return not isinstance(obj, objects_pb2.Task) or obj.service_id == self.service_id

    # -- reading ----------------------------------------------------------------------------

    def _current(self, tx: ReadTx) -> objects_pb2.Service:
        service = tx.get(objects_pb2.Service, self.service_id)
        if service is None or not is_live(service) or spec_key(service) != self.key:
            raise Superseded(self.service_id)
        return service

    def _dirty(self, tx: ReadTx, service: objects_pb2.Service, task: objects_pb2.Task) -> bool:
        return is_dirty(service, task, tx.get(objects_pb2.Node, task.node_id))

    def _plan(self, tx: ReadTx) -> Plan | None:
        try:
            service = self._current(tx)
        except Superseded:
            return None
        status = service.update_status
        if status.state in PAUSED:
            return None
        resuming = status.state in IN_PROGRESS
        started = timestamp_seconds(status.started_at) if resuming else math.inf
        tasks = _own_tasks(service, tx.find(objects_pb2.Task, "service", self.service_id))
        todo: list[tuple[tuple[bool, int, str], SlotKey]] = []
        in_flight: list[Tracked] = []
        for key, slot in group_by_slot(tasks).items():
            current = runnable(slot)
            clean = [t for t in current if not self._dirty(tx, service, t)]
            if clean:
                newest = newest_first(clean)[0]
                if newest.status.state < types_pb2.RUNNING and created_at(newest) >= started:
                    in_flight.append(Tracked(key, newest.id, created_at(newest)))
            elif current:
                running = any(t.status.state == types_pb2.RUNNING for t in current)
                todo.append(((running, key.slot, key.node_id), key))
        failures = [
            t.id
            for t in tasks
            if created_at(t) >= started
            and t.status.state in FAILED_STATES
            and not self._dirty(tx, service, t)
        ]
        rolling_back = status.state == types_pb2.UpdateStatus.ROLLBACK_STARTED
        return Plan(
            rolling_back=rolling_back,
            resuming=resuming,
            policy=UpdatePolicy.for_service(service, rolling_back),
            todo=[key for _, key in sorted(todo)],
            in_flight=in_flight,
            failures=failures,
        )

    # -- driving ----------------------------------------------------------------------------

    async def _drive(self, plan: Plan, events: Subscription) -> None:
        self._policy = plan.policy
        self._rolling_back = plan.rolling_back
        self._failed = list(plan.failures)
        self._tracked = {t.task_id: t for t in plan.in_flight}
        todo = plan.todo
        self._total = len(todo) + len(plan.in_flight)
        if not self._total:
            if plan.resuming:
                await self._finish()
            return
        if not plan.resuming:
            await self._set_status(
                types_pb2.UpdateStatus.UPDATING, "update in progress", started=True
            )
        metrics.UPDATES_RUNNING.inc()
        try:
            if await self._roll(todo, list(plan.in_flight), events):
                await self._finish()
        finally:
            metrics.UPDATES_RUNNING.dec()

    async def _roll(self, todo: list[SlotKey], batch: list[Tracked], events: Subscription) -> bool:
        """Replace the slots batch by batch; False when a failure action ended the update."""
        size = self._policy.parallelism or max(1, len(todo))
        while True:
            if not batch:
                if not todo:
                    todo = self._retries()
                if not todo:
                    break
                keys, todo = todo[:size], todo[size:]
                batch = await self._replace(keys)
                continue
            if not await self._settle(batch, events):
                return False
            batch = []
            delay = self._policy.delay_s
            if todo and delay > 0 and not await self._wait(self.clock.now() + delay, events):
                return False
        ran = [t.running_since for t in self._tracked.values() if t.running_since is not None]
        if ran and not await self._wait(max(ran) + self._policy.monitor_s, events):
            return False
        return not await self._failure_action_taken()

    def _retries(self) -> list[SlotKey]:
        retry = [k for k in dict.fromkeys(self._retry) if self._replaced[k] < MAX_REPLACEMENTS]
        self._retry = []
        return retry

    async def _replace(self, keys: list[SlotKey]) -> list[Tracked]:
        now = self.clock.now()
        stop_first = self._policy.order == types_pb2.UpdateConfig.STOP_FIRST

        def replace(keys: list[SlotKey], tx: WriteTx, tally: Tally) -> list[Tracked]:
            service = self._current(tx)
            batch = []
            for key in keys:
                current = runnable(slot_tasks(tx, key))
                clean = [t for t in current if not self._dirty(tx, service, t)]
                if clean:  # updated meanwhile (e.g. restarted with the new spec)
                    newest = newest_first(clean)[0]
                    if newest.status.state < types_pb2.RUNNING:
                        batch.append(Tracked(key, newest.id, created_at(newest)))
                    continue
                if not current:
                    continue  # the slot went meanwhile
                desired = types_pb2.RUNNING
                if stop_first:

                    def node(node_id: str) -> objects_pb2.Node | None:
                        return tx.get(objects_pb2.Node, node_id)

                    if any(is_alive(t, node) for t in current):
                        desired = types_pb2.READY
                    for task in current:
                        set_desired(tx, task, types_pb2.SHUTDOWN, tally, "updated")
                successor = create_successor(tx, service, key, now, tally, "update", desired)
                self._replaced[key] += 1
                if successor is not None:
                    batch.append(Tracked(key, successor.id, created_at(successor)))
            return batch

        batch = []
        service = self.store.view(lambda tx: tx.get(objects_pb2.Service, self.service_id))
        per_transaction = self.config.changes_for(service.spec.task) if service else 1
        step = max(1, per_transaction // 2)  # two changes per slot
        for start in range(0, len(keys), step):
            batch += await commit(self.store, partial(replace, keys[start : start + step]))
        for tracked in batch:
            self._tracked.setdefault(tracked.task_id, tracked)
        return [self._tracked[t.task_id] for t in batch]

    async def _settle(self, batch: list[Tracked], events: Subscription) -> bool:
        """Wait until every task of the batch is settled; False when a failure action ended
        the update."""
        while True:
            wake_at = await commit(self.store, lambda tx, tally: self._check(tx, tally, batch))
            if await self._failure_action_taken():
                return False
            if all(t.settled for t in batch):
                return True
            await self._next(events, wake_at)

    def _check(self, tx: WriteTx, tally: Tally, batch: list[Tracked]) -> float | None:
        """Settle what can be settled, start stop-first tasks whose predecessors stopped;
        returns when to look again at the latest."""
        service = self._current(tx)
        now = self.clock.now()
        wake_at: float | None = None
        for tracked in batch:
            if tracked.settled:
                continue
            task = tx.get(objects_pb2.Task, tracked.task_id)
            if task is not None and has_ended(task) and ended_on_its_own(task):
                self._fail_if_early(tracked, now)
                tracked.settled = True
                continue
            if task is None or not is_runnable(task):
                # Taken away (node lost, constraints, scale-down): no failure. Follow its
                # successor, or replace the slot again if old tasks still hold it.
                successor = self._successor(tx, service, tracked)
                if successor is not None:
                    self._follow(tracked, successor)
                    wake_at = now
                    continue
                if runnable(slot_tasks(tx, tracked.key)):
                    self._retry.append(tracked.key)
                tracked.settled = True
                continue
            if task.status.state == types_pb2.RUNNING:
                if tracked.running_since is None:
                    tracked.running_since = now
                tracked.settled = True
                if self._policy.order == types_pb2.UpdateConfig.START_FIRST:
                    retire_superseded(tx, service, tracked.key, tally)
                continue
            deadline = tracked.created + self.config.update_start_timeout_s
            if now >= deadline:
                self._fail(tracked)
                tracked.settled = True
                continue
            due = start_when_due(tx, task.id, now, 0.0, self.config.stop_timeout_margin_s)
            for time in (deadline, due):
                if time is not None and (wake_at is None or time < wake_at):
                    wake_at = time
        return wake_at

    async def _wait(self, until: float, events: Subscription) -> bool:
        """Follow events until `until`; False when a failure action ended the update."""
        while self.clock.now() < until:
            await self._next(events, until)
            if await self._failure_action_taken():
                return False
        return True

    async def _next(self, events: Subscription, wake_at: float | None) -> None:
        event = await next_event(events, self.clock, wake_at)
        if event is not None:
            self._observe(event)
            for _ in range(events.pending()):
                self._observe(await events.get())

    def _observe(self, event: Event) -> None:
        old, new = event.old, event.new
        if not isinstance(old, objects_pb2.Task) or not isinstance(new, objects_pb2.Task):
            return
        tracked = self._tracked.get(new.id)
        if tracked is None:
            return
        now = self.clock.now()
        if new.status.state == types_pb2.RUNNING and tracked.running_since is None:
            tracked.running_since = now
        if old.status.state <= types_pb2.RUNNING < new.status.state and ended_on_its_own(new):
            self._fail_if_early(tracked, now)

    def _successor(
        self, tx: ReadTx, service: objects_pb2.Service, tracked: Tracked
    ) -> objects_pb2.Task | None:
        clean = [
            t
            for t in runnable(slot_tasks(tx, tracked.key))
            if t.id != tracked.task_id and not self._dirty(tx, service, t)
        ]
        return newest_first(clean)[0] if clean else None

    def _follow(self, tracked: Tracked, successor: objects_pb2.Task) -> None:
        del self._tracked[tracked.task_id]
        tracked.task_id = successor.id
        tracked.created = created_at(successor)
        tracked.running_since = None
        self._tracked[successor.id] = tracked

    def _fail_if_early(self, tracked: Tracked, now: float) -> None:
        """A new task that ended before it ran, or within the monitor window of running,
        is a failure of the update."""
        since = tracked.running_since
        if since is None or now - since <= self._policy.monitor_s:
            self._fail(tracked)

    def _fail(self, tracked: Tracked) -> None:
        if not tracked.failed:
            tracked.failed = True
            self._failed.append(tracked.task_id)

    # -- outcomes ---------------------------------------------------------------------------

    async def _failure_action_taken(self) -> bool:
        policy = self._policy
        if not self._failed or len(self._failed) <= policy.max_failure_ratio * self._total:
            return False
        action = policy.failure_action
        if action == types_pb2.UpdateConfig.CONTINUE:
            return False
        why = f"due to failure or early termination of task {self._failed[-1]}"
        if self._rolling_back:
            await self._set_status(
                types_pb2.UpdateStatus.ROLLBACK_PAUSED, f"rollback paused {why}", completed=True
            )
        elif action == types_pb2.UpdateConfig.ROLLBACK:
            await self._roll_back(why)
        else:
            await self._set_status(
                types_pb2.UpdateStatus.PAUSED, f"update paused {why}", completed=True
            )
        return True

    async def _finish(self) -> None:
        if self._rolling_back:
            state, message = types_pb2.UpdateStatus.ROLLBACK_COMPLETED, "rollback completed"
        else:
            state, message = types_pb2.UpdateStatus.COMPLETED, "update completed"
        await self._set_status(state, message, completed=True)

    async def _set_status(
        self, state: UpdateState, message: str, *, started: bool = False, completed: bool = False
    ) -> None:
        now = timestamp_of(self.clock.now())

        def write(tx: WriteTx, tally: Tally) -> None:
            service = self._current(tx)
            status = service.update_status
            text = message
            if (
                state == types_pb2.UpdateStatus.ROLLBACK_COMPLETED
                and status.state == types_pb2.UpdateStatus.ROLLBACK_STARTED
                and status.message
            ):
                # Keep why it rolled back ("update rolled back due to ...") for the user.
                text = f"{status.message}; {message}"
            status.state = state
            status.message = text
            if started:
                status.started_at.CopyFrom(now)
                status.ClearField("completed_at")
            if completed:
                status.completed_at.CopyFrom(now)
            tx.update(service)
            if state != types_pb2.UpdateStatus.UPDATING:
                tally.add(metrics.UPDATES, types_pb2.UpdateStatus.UpdateState.Name(state).lower())

        await commit(self.store, write)

    async def _roll_back(self, why: str) -> None:
        now = timestamp_of(self.clock.now())

        def write(tx: WriteTx, tally: Tally) -> None:
            service = self._current(tx)
            status = service.update_status
            if not service.HasField("previous_spec"):
                status.state = types_pb2.UpdateStatus.PAUSED
                status.message = f"update paused {why}; there is no previous spec to roll back to"
                status.completed_at.CopyFrom(now)
                tx.update(service)
                tally.add(metrics.UPDATES, "paused")
                return
            spec, version = service.previous_spec, service.previous_spec_version
            had_version = service.HasField("previous_spec_version")
            rolled_back = objects_pb2.Service()
            rolled_back.CopyFrom(service)
            rolled_back.spec.CopyFrom(spec)
            rolled_back.previous_spec.CopyFrom(service.spec)
            if had_version:
                rolled_back.spec_version.CopyFrom(version)
            else:
                rolled_back.ClearField("spec_version")
            if service.HasField("spec_version"):
                rolled_back.previous_spec_version.CopyFrom(service.spec_version)
            else:
                rolled_back.ClearField("previous_spec_version")
            rolled_back.update_status.CopyFrom(
                types_pb2.UpdateStatus(
                    state=types_pb2.UpdateStatus.ROLLBACK_STARTED,
                    started_at=now,
                    message=f"update rolled back {why}",
                )
            )
            tx.update(rolled_back)
            tally.add(metrics.UPDATES, "rollback_started")

        await commit(self.store, write)
