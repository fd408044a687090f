"""The restart supervisor: a task that ended without being asked to (COMPLETE, FAILED,
REJECTED, or SHUTDOWN while its desired state was still RUNNING) is shut down for good
(desired SHUTDOWN) and, if its restart policy says so, succeeded in its slot (on its node,
for a global service) in the same transaction.

- Condition: any (always), on-failure (not after a clean exit), none (never).
- Delay (default 5 s): the successor is created with desired state READY, so the agent can
  prepare it, and set to desired RUNNING once the delay has passed since its creation (see
  `delayed_start`). Every READY task is started from what the store shows, so a new leader
  picks the timers up where the old one left them.
- max_attempts within window: restarts are counted per slot and spec version (a new spec
  starts afresh), from the store: a slot's tasks of one spec version are its first task
  and its restarts (replacements of tasks whose node was lost count too, as in SwarmKit).
  Restarts are also remembered in memory, since the reaper deletes old tasks; a new leader
  may therefore count fewer restarts than happened, never more.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from manager.clock import WALL_CLOCK, Clock
from manager.orchestrator import metrics
from manager.orchestrator.config import OrchestratorConfig
from manager.orchestrator.delayed_start import start_when_due
from manager.orchestrator.eligibility import is_global, is_live, is_replicated
from manager.orchestrator.metrics import Tally
from manager.orchestrator.reconciler import Reconciler, commit
from manager.orchestrator.replacement import create_successor, current_spec_holds, set_desired
from manager.orchestrator.restart_policy import RestartPolicy
from manager.orchestrator.slots import SlotKey, slot_key, slot_tasks
from manager.orchestrator.tasks import created_at, has_ended, is_runnable
from manager.store import Event, EventAction, Kind, ReadTx, Store, WriteTx
from shoal.v1 import objects_pb2, types_pb2


@dataclass(frozen=True)
class EndedWork:
    task_id: str


@dataclass(frozen=True)
class StartWork:
    task_id: str


Work = EndedWork | StartWork


@dataclass
class Attempts:
    """The restarts of one slot for one spec version: (time, id of the task it created);
    the last `max_attempts` suffice."""

    spec_version: int
    restarts: deque[tuple[float, str]]

    def within(self, now: float, window_s: float) -> int:
        if window_s <= 0:
            return len(self.restarts)
        return sum(1 for time, _ in self.restarts if time >= now - window_s)


def ended_unasked(task: objects_pb2.Task) -> bool:
    return is_runnable(task) and has_ended(task)


class RestartSupervisor(Reconciler[Work]):
    name = "restart"
    kinds = (Kind.TASK, Kind.NODE, Kind.SERVICE)

    def __init__(
        self, store: Store, clock: Clock = WALL_CLOCK, config: OrchestratorConfig | None = None
    ) -> None:
        self._attempts: dict[SlotKey, Attempts] = {}
        super().__init__(store, clock, config)

    def reset(self) -> None:
        # READY tasks waiting to start, by slot: a change in the slot may make them due.
        self._waiting: dict[SlotKey, set[str]] = {}
        self._waiting_slot: dict[str, SlotKey] = {}

    def load(self, tx: ReadTx) -> None:
        for desired in (types_pb2.READY, types_pb2.RUNNING):
            for task in tx.find(objects_pb2.Task, "desired_state", desired):
                self._note(task)

    def observe(self, event: Event) -> None:
        obj = event.object
        if isinstance(obj, objects_pb2.Task):
            if event.action is EventAction.DELETE:
                self._forget(obj.id)
            else:
                assert isinstance(event.new, objects_pb2.Task)
                self._note(event.new)
            for task_id in self._waiting.get(slot_key(obj), ()):
                self.agenda.add(StartWork(task_id))
        elif isinstance(obj, objects_pb2.Node):
            new = event.new
            if new is None or (
                isinstance(new, objects_pb2.Node) and new.status.state == types_pb2.NodeStatus.DOWN
            ):
                for task_id in self._waiting_slot:
                    self.agenda.add(StartWork(task_id))
        elif isinstance(obj, objects_pb2.Service) and event.action is EventAction.DELETE:
            for key in [k for k in self._attempts if k.service_id == obj.id]:
                del self._attempts[key]

    def _note(self, task: objects_pb2.Task) -> None:
        if ended_unasked(task):
            self.agenda.add(EndedWork(task.id))
        if task.desired_state == types_pb2.READY:
            key = slot_key(task)
            self._waiting.setdefault(key, set()).add(task.id)
            self._waiting_slot[task.id] = key
            self.agenda.add(StartWork(task.id))
        else:
            self._forget(task.id)

    def _forget(self, task_id: str) -> None:
        key = self._waiting_slot.pop(task_id, None)
        if key is not None:
            waiting = self._waiting[key]
            waiting.discard(task_id)
            if not waiting:
                del self._waiting[key]

    async def reconcile(self, key: Work) -> None:
        now = self.clock.now()
        if isinstance(key, StartWork):
            retry_at = await commit(self.store, lambda tx, _: self._start(tx, key.task_id, now))
            if retry_at is not None:
                self.agenda.add(key, retry_at)
        else:
            restart = await commit(self.store, lambda tx, tally: self._ended(tx, tally, key, now))
            if restart is not None:
                slot, attempts = restart
                self._attempts[slot] = attempts

    # -- transactions -----------------------------------------------------------------------

    def _start(self, tx: WriteTx, task_id: str, now: float) -> float | None:
        task = tx.get(objects_pb2.Task, task_id)
        if task is None:
            return None
        delay = RestartPolicy.of(task.spec, self.config.default_restart_delay_s).delay_s
        return start_when_due(tx, task_id, now, delay, self.config.stop_timeout_margin_s)

    def _ended(
        self, tx: WriteTx, tally: Tally, work: EndedWork, now: float
    ) -> tuple[SlotKey, Attempts] | None:
        """Shut the ended task down; restart it if its policy says so. Returns the restart
        to record once the transaction committed."""
        task = tx.get(objects_pb2.Task, work.task_id)
        if task is None or not ended_unasked(task):
            return None
        set_desired(tx, task, types_pb2.SHUTDOWN, tally, "ended")
        service = tx.get(objects_pb2.Service, task.service_id)
        if service is None or not is_live(service):
            return None
        key = slot_key(task)
        if not (key.slot and is_replicated(service)) and not (
            not key.slot and key.node_id and is_global(service)
        ):
            return None
        if current_spec_holds(tx, service, key):
            return None
        policy = RestartPolicy.of(task.spec, self.config.default_restart_delay_s)
        if not policy.wants_restart(task):
            tally.add(metrics.RESTARTS_REFUSED, "condition")
            return None
        attempts = self._attempts_of(tx, key, task)
        if policy.max_attempts and attempts.within(now, policy.window_s) >= policy.max_attempts:
            tally.add(metrics.RESTARTS_REFUSED, "max_attempts")
            return None
        desired = types_pb2.READY if policy.delay_s > 0 else types_pb2.RUNNING
        successor = create_successor(tx, service, key, now, tally, "restart", desired)
        if successor is None:
            return None
        if not policy.max_attempts:
            return None
        restarts = deque(
            (*attempts.restarts, (created_at(successor), successor.id)), policy.max_attempts
        )
        return key, Attempts(attempts.spec_version, restarts)

    def _attempts_of(self, tx: WriteTx, key: SlotKey, task: objects_pb2.Task) -> Attempts:
        """Restarts of the slot for the task's spec version: its tasks of that version but
        the first, and those remembered (which the reaper may have deleted since)."""
        version = task.spec_version.index
        same_spec = sorted(
            (created_at(t), t.meta.version, t.id)
            for t in slot_tasks(tx, key)
            if t.spec_version.index == version
        )
        restarts = {(time, task_id) for time, _, task_id in same_spec[1:]}
        known = self._attempts.get(key)
        if known is not None and known.spec_version == version:
            restarts.update(known.restarts)
        return Attempts(version, deque(sorted(restarts)))
