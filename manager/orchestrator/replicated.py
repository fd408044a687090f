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

from manager.orchestrator.eligibility import is_live, is_lost, is_replicated
from manager.orchestrator.metrics import Tally
from manager.orchestrator.reconciler import Reconciler, commit
from manager.orchestrator.replacement import create_successor, keep_slot, set_desired
from manager.orchestrator.slots import SlotKey, group_by_slot, runnable, slot_key, slot_tasks
from manager.orchestrator.tasks import is_runnable
from manager.orchestrator.work import NodeWork, ServiceWork, SlotWork
from manager.store import Event, EventAction, Kind, ReadTx, WriteTx
from shoal.v1 import objects_pb2, types_pb2

Work = ServiceWork | SlotWork | NodeWork


def spec_changed(old: objects_pb2.Service, new: objects_pb2.Service) -> bool:
    return old.spec != new.spec or old.spec_version != new.spec_version


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


class ReplicatedOrchestrator(Reconciler[Work]):
    name = "replicated"
    kinds = (Kind.SERVICE, Kind.TASK, Kind.NODE)

    def reset(self) -> None:
        # Services whose next reconciliation revives dead slots (their spec changed).
        self._revive: set[str] = set()
        # Slots whose runnable task was deleted: they get a new one.
        self._refill: set[SlotKey] = set()

    def load(self, tx: ReadTx) -> None:
        for service in tx.list(objects_pb2.Service):
            if is_replicated(service):
                self.agenda.add(ServiceWork(service.id))
        for task in tx.list(objects_pb2.Task):
            work = ServiceWork(task.service_id)
            if (
                task.slot
                and work not in self.agenda
                and tx.get(objects_pb2.Service, task.service_id) is None
            ):
                self.agenda.add(work)

    def observe(self, event: Event) -> None:
        obj = event.object
        if isinstance(obj, objects_pb2.Service):
            old, new = event.old, event.new
            assert old is None or isinstance(old, objects_pb2.Service)
            assert new is None or isinstance(new, objects_pb2.Service)
            if not any(is_replicated(s) for s in (old, new) if s is not None):
                return
            if old is None or (new is not None and spec_changed(old, new)):
                self._revive.add(obj.id)
            self.agenda.add(ServiceWork(obj.id))
        elif isinstance(obj, objects_pb2.Task):
            if obj.slot:
                self._observe_task(event)
        elif isinstance(obj, objects_pb2.Node):
            new_node = event.new
            assert new_node is None or isinstance(new_node, objects_pb2.Node)
            if new_node is None or is_lost(new_node):
                self.agenda.add(NodeWork(obj.id))

    def _observe_task(self, event: Event) -> None:
        old, new = event.old, event.new
        assert old is None or isinstance(old, objects_pb2.Task)
        assert new is None or isinstance(new, objects_pb2.Task)
        if event.action is EventAction.DELETE:
            assert old is not None
            if is_runnable(old):
                self._refill.add(slot_key(old))
                self.agenda.add(SlotWork(slot_key(old)))
        elif old is not None and new is not None:
            placed = old.status.state != new.status.state and new.status.state in (
                types_pb2.ASSIGNED,
                types_pb2.RUNNING,
            )
            if placed or old.node_id != new.node_id:
                self.agenda.add(SlotWork(slot_key(new)))

    async def reconcile(self, key: Work) -> None:
        now = self.clock.now()
        if isinstance(key, ServiceWork):
            revive = key.service_id in self._revive
            more = await commit(
                self.store, lambda tx, tally: self._service(tx, tally, key, now, revive)
            )
            if more:
                self.agenda.add(key)  # the rest in the next transaction
            else:
                self._revive.discard(key.service_id)
        elif isinstance(key, SlotWork):
            refill = key.key in self._refill
            await commit(self.store, lambda tx, tally: self._slot(tx, tally, key.key, now, refill))
            self._refill.discard(key.key)
        else:
            await commit(self.store, lambda tx, tally: self._node(tx, tally, key.node_id, now))

    # -- transactions -----------------------------------------------------------------------

    def _service(
        self, tx: WriteTx, tally: Tally, work: ServiceWork, now: float, revive: bool
    ) -> bool:
        """Reconcile the whole service; True when it stopped at the change limit."""
        service_id = work.service_id
        limit = self.config.max_changes_per_transaction
        service = tx.get(objects_pb2.Service, service_id)

        def slot_groups() -> dict[SlotKey, list[objects_pb2.Task]]:
            return group_by_slot(
                t for t in tx.find(objects_pb2.Task, "service", service_id) if t.slot
            )

        if service is None or not is_live(service) or not is_replicated(service):
            for tasks in slot_groups().values():
                for task in tasks:
                    if tally.total >= limit:
                        return True
                    set_desired(tx, task, types_pb2.REMOVE, tally, "service removed")
            return False
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
            create_successor(tx, service, SlotKey(service_id, number, ""), now, tally, "new slot")
        return False

    def _slot(self, tx: WriteTx, tally: Tally, key: SlotKey, now: float, refill: bool) -> None:
        service = tx.get(objects_pb2.Service, key.service_id)
        if service is None or not is_live(service) or not is_replicated(service):
            self.agenda.add(ServiceWork(key.service_id))
            return
        keep_slot(tx, service, key, now, tally)
        if not refill or runnable(slot_tasks(tx, key)):
            return
        tasks = tx.find(objects_pb2.Task, "service", key.service_id)
        filled = {t.slot for t in tasks if t.slot and is_runnable(t)}
        if len(filled) < service.spec.replicated_service.replicas:
            create_successor(tx, service, key, now, tally, "task deleted")

    def _node(self, tx: WriteTx, tally: Tally, node_id: str, now: float) -> None:
        keys = {slot_key(t) for t in tx.find(objects_pb2.Task, "node", node_id) if t.slot}
        for key in keys:
            service = tx.get(objects_pb2.Service, key.service_id)
            if service is not None and is_live(service) and is_replicated(service):
                keep_slot(tx, service, key, now, tally)
