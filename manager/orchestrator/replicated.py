"""The replicated orchestrator: every replicated service has `replicas` slots, each with one
runnable task.

- Missing slots get a task (NEW, desired RUNNING, the service's task template), numbered
  from the lowest free slot number up.
- Extra slots go on scale-down (their tasks' desired state REMOVE; the reaper deletes them
  once stopped), taken from the nodes with the most tasks of the service first, tasks not
  RUNNING first, the highest slot numbers first.
- A runnable task whose node is gone, DOWN or drained is replaced in its slot.
- A slot whose tasks have all ended for good (the restart policy gave up) stays empty until
  the service's spec changes; a change revives it. A slot whose runnable task was deleted
  gets a new one.
- A removed service's tasks all get desired state REMOVE.

Restarting ended tasks is the restart supervisor's job, replacing tasks of an old spec the
updater's; all of them meet only in the store.
"""

from __future__ import annotations

from manager.orchestrator.eligibility import is_lost, is_replicated
from manager.orchestrator.metrics import Tally
from manager.orchestrator.mode_orchestrator import ModeOrchestrator
from manager.orchestrator.reconciler import commit
from manager.orchestrator.replacement import create_successor, keep_slot, set_desired
from manager.orchestrator.slots import SlotKey, group_by_slot, runnable, slot_key, slot_tasks
from manager.orchestrator.tasks import is_runnable
from manager.orchestrator.work import NodeWork
from manager.store import WriteTx
from shoal.v1 import objects_pb2, types_pb2


def choose_removals(slots: dict[int, list[objects_pb2.Task]], count: int) -> list[int]:
    """The `count` slots a scale-down takes: each slot is ranked as the n-th of the service
    on its node (RUNNING tasks and low slot numbers ranked first); the highest ranks go,
    tasks not RUNNING before RUNNING ones, high slot numbers before low ones."""

    def representative(tasks: list[objects_pb2.Task]) -> objects_pb2.Task:
        running = [t for t in tasks if t.status.state == types_pb2.RUNNING]
        return (running or tasks)[0]

    entries = sorted(
        ((slot, representative(tasks)) for slot, tasks in slots.items()),
        key=lambda e: (e[1].status.state != types_pb2.RUNNING, e[0]),
    )
    per_node: dict[str, int] = {}
    ranked = []
    for slot, task in entries:
        rank = per_node[task.node_id] = per_node.get(task.node_id, 0) + 1
        ranked.append((rank, task.status.state != types_pb2.RUNNING, slot))
    ranked.sort()
    return [slot for _, _, slot in ranked[len(ranked) - count :]] if count > 0 else []


def lowest_free(taken: set[int], count: int) -> list[int]:
    free: list[int] = []
    number = 1
    while len(free) < count:
        if number not in taken:
            free.append(number)
        number += 1
    return free


class ReplicatedOrchestrator(ModeOrchestrator):
    name = "replicated"

    def serves(self, service: objects_pb2.Service) -> bool:
        return is_replicated(service)

    def owns(self, task: objects_pb2.Task) -> bool:
        return bool(task.slot)

    def slot_changed(self, old: objects_pb2.Task, new: objects_pb2.Task) -> bool:
        """Placed (ASSIGNED or RUNNING now), or moved to another node."""
        placed = old.status.state != new.status.state and new.status.state in (
            types_pb2.ASSIGNED,
            types_pb2.RUNNING,
        )
        return placed or old.node_id != new.node_id

    def node_changed(
        self, node_id: str, old: objects_pb2.Node | None, new: objects_pb2.Node | None
    ) -> None:
        if new is None or is_lost(new):
            self.agenda.add(NodeWork(node_id))

    async def reconcile_node(self, node_id: str, now: float) -> None:
        await commit(self.store, lambda tx, tally: self._node(tx, tally, node_id, now))

    # -- transactions -----------------------------------------------------------------------

    def keep_service(
        self, tx: WriteTx, tally: Tally, service: objects_pb2.Service, now: float, revive: bool
    ) -> bool:
        limit = self.config.changes_for(service.spec.task)

        def slot_groups() -> dict[SlotKey, list[objects_pb2.Task]]:
            return group_by_slot(
                t for t in tx.find(objects_pb2.Task, "service", service.id) if t.slot
            )

        for key in slot_groups():
            if tally.total >= limit:
                return True
            keep_slot(tx, service, key, now, tally)

        groups = slot_groups()
        running = {key.slot: tasks for key, tasks in groups.items() if runnable(tasks)}
        dead = {
            key.slot
            for key, tasks in groups.items()
            if not runnable(tasks) and any(t.desired_state != types_pb2.REMOVE for t in tasks)
        }
        replicas = service.spec.replicated_service.replicas
        removed = set(choose_removals(running, len(running) - replicas))
        kept = len(running) - len(removed)
        if revive:
            numbers = lowest_free(set(running), max(0, replicas - kept))
            removed |= dead - set(numbers)
        else:
            numbers = lowest_free(set(running) | dead, max(0, replicas - kept - len(dead)))
        for key, tasks in groups.items():
            if key.slot in removed:
                for task in tasks:
                    if tally.total >= limit:
                        return True
                    set_desired(tx, task, types_pb2.REMOVE, tally, "scaled down")
        for number in numbers:
            if tally.total >= limit:
                return True
            create_successor(tx, service, SlotKey(service.id, number, ""), now, tally, "new slot")
        return False

    def keep_slot(
        self, tx: WriteTx, tally: Tally, service: objects_pb2.Service, key: SlotKey, now: float
    ) -> None:
        keep_slot(tx, service, key, now, tally)
        if not self.refilling(key) or runnable(slot_tasks(tx, key)):
            return
        tasks = tx.find(objects_pb2.Task, "service", key.service_id)
        filled = {t.slot for t in tasks if t.slot and is_runnable(t)}
        if len(filled) < service.spec.replicated_service.replicas:
            create_successor(tx, service, key, now, tally, "task deleted")

    def _node(self, tx: WriteTx, tally: Tally, node_id: str, now: float) -> None:
        keys = {slot_key(t) for t in tx.find(objects_pb2.Task, "node", node_id) if t.slot}
        for key in keys:
            service = self.live_service(tx, key.service_id)
            if service is not None:
                keep_slot(tx, service, key, now, tally)
