"""The global orchestrator: a global service has one runnable task on every node that is
READY, ACTIVE and meets its placement constraints.

- Such a node without a task of the service gets one, created with node_id preassigned.
- A node that is gone, DOWN, drained, or no longer meets the constraints loses the
  service's runnable tasks (desired SHUTDOWN). A PAUSEd node, or one whose state is not yet
  known (UNKNOWN, DISCONNECTED), keeps what it has and gets nothing new.
- A node whose tasks ended for good (the restart policy gave up) gets a new one when the
  service's spec changes, or when the node itself becomes eligible again (it joined,
  recovered, was reactivated, its labels changed); a node whose runnable task was deleted
  gets a new one at once.
- A removed service's tasks all get desired state REMOVE.
"""

from __future__ import annotations

from manager.orchestrator.eligibility import (
    is_global,
    is_live,
    is_lost,
    meets_constraints,
    takes_new_tasks,
)
from manager.orchestrator.metrics import Tally
from manager.orchestrator.reconciler import Reconciler, commit
from manager.orchestrator.replacement import create_successor, keep_slot, set_desired
from manager.orchestrator.replicated import spec_changed
from manager.orchestrator.slots import SlotKey, runnable, slot_key, slot_tasks
from manager.orchestrator.tasks import is_runnable
from manager.orchestrator.work import NodeWork, ServiceWork, SlotWork
from manager.scheduler import NodeAttributes
from manager.store import Event, EventAction, Kind, ReadTx, WriteTx
from shoal.v1 import objects_pb2, types_pb2

Work = ServiceWork | NodeWork | SlotWork


def became_eligible(old: objects_pb2.Node | None, new: objects_pb2.Node) -> bool:
    """The node may now run tasks it could not before: it is new, it started taking new
    tasks, or what constraints look at changed."""
    if not takes_new_tasks(new):
        return False
    return (
        old is None or not takes_new_tasks(old) or NodeAttributes.of(old) != NodeAttributes.of(new)
    )


def _global_tasks(tasks: list[objects_pb2.Task]) -> list[objects_pb2.Task]:
    return [t for t in tasks if t.slot == 0 and t.node_id]


class GlobalOrchestrator(Reconciler[Work]):
    name = "global"
    kinds = (Kind.SERVICE, Kind.TASK, Kind.NODE)

    def reset(self) -> None:
        self._revive_services: set[str] = set()
        self._revive_nodes: set[str] = set()
        self._refill: set[SlotKey] = set()

    def load(self, tx: ReadTx) -> None:
        for service in tx.list(objects_pb2.Service):
            if is_global(service):
                self.agenda.add(ServiceWork(service.id))
        for task in _global_tasks(tx.list(objects_pb2.Task)):
            work = ServiceWork(task.service_id)
            if work not in self.agenda and tx.get(objects_pb2.Service, task.service_id) is None:
                self.agenda.add(work)

    def observe(self, event: Event) -> None:
        obj = event.object
        if isinstance(obj, objects_pb2.Service):
            old, new = event.old, event.new
            assert old is None or isinstance(old, objects_pb2.Service)
            assert new is None or isinstance(new, objects_pb2.Service)
            if not any(is_global(s) for s in (old, new) if s is not None):
                return
            if old is None or (new is not None and spec_changed(old, new)):
                self._revive_services.add(obj.id)
            self.agenda.add(ServiceWork(obj.id))
        elif isinstance(obj, objects_pb2.Node):
            old_node, new_node = event.old, event.new
            assert old_node is None or isinstance(old_node, objects_pb2.Node)
            assert new_node is None or isinstance(new_node, objects_pb2.Node)
            if new_node is not None and became_eligible(old_node, new_node):
                self._revive_nodes.add(obj.id)
            self.agenda.add(NodeWork(obj.id))
        elif isinstance(obj, objects_pb2.Task) and obj.slot == 0 and obj.node_id:
            old_task, new_task = event.old, event.new
            assert old_task is None or isinstance(old_task, objects_pb2.Task)
            assert new_task is None or isinstance(new_task, objects_pb2.Task)
            if event.action is EventAction.DELETE:
                assert old_task is not None
                if is_runnable(old_task):
                    self._refill.add(slot_key(old_task))
                    self.agenda.add(SlotWork(slot_key(old_task)))
            elif (
                old_task is not None
                and new_task is not None
                and old_task.status.state != new_task.status.state
                and new_task.status.state == types_pb2.RUNNING
            ):
                self.agenda.add(SlotWork(slot_key(new_task)))

    async def reconcile(self, key: Work) -> None:
        now = self.clock.now()
        if isinstance(key, ServiceWork):
            revive = key.service_id in self._revive_services
            more = await commit(
                self.store, lambda tx, tally: self._service(tx, tally, key, now, revive)
            )
            if more:
                self.agenda.add(key)  # the rest in the next transaction
            else:
                self._revive_services.discard(key.service_id)
        elif isinstance(key, NodeWork):
            revive = key.node_id in self._revive_nodes
            await commit(self.store, lambda tx, tally: self._node(tx, tally, key, now, revive))
            self._revive_nodes.discard(key.node_id)
        else:
            refill = key.key in self._refill
            await commit(self.store, lambda tx, tally: self._slot(tx, tally, key.key, now, refill))
            self._refill.discard(key.key)

    # -- transactions -----------------------------------------------------------------------

    def _service(
        self, tx: WriteTx, tally: Tally, work: ServiceWork, now: float, revive: bool
    ) -> bool:
        """Reconcile the service on every node; True when it stopped at the change limit."""
        limit = self.config.max_changes_per_transaction
        service = tx.get(objects_pb2.Service, work.service_id)
        tasks = _global_tasks(tx.find(objects_pb2.Task, "service", work.service_id))
        if service is None or not is_live(service) or not is_global(service):
            for task in tasks:
                if tally.total >= limit:
                    return True
                set_desired(tx, task, types_pb2.REMOVE, tally, "service removed")
            return False
        nodes: dict[str, objects_pb2.Node | None] = {
            node.id: node for node in tx.list(objects_pb2.Node)
        }
        nodes.update((t.node_id, None) for t in tasks if t.node_id not in nodes)
        for node_id, node in nodes.items():
            if tally.total >= limit:
                return True
            self._keep_node(tx, tally, service, node_id, node, now, revive)
        return False

    def _node(self, tx: WriteTx, tally: Tally, work: NodeWork, now: float, revive: bool) -> None:
        node = tx.get(objects_pb2.Node, work.node_id)
        services = {s.id: s for s in tx.list(objects_pb2.Service) if is_global(s) and is_live(s)}
        if node is None:
            services = {
                t.service_id: services[t.service_id]
                for t in _global_tasks(tx.find(objects_pb2.Task, "node", work.node_id))
                if t.service_id in services
            }
        for service in services.values():
            self._keep_node(tx, tally, service, work.node_id, node, now, revive)

    def _slot(self, tx: WriteTx, tally: Tally, key: SlotKey, now: float, refill: bool) -> None:
        service = tx.get(objects_pb2.Service, key.service_id)
        if service is None or not is_live(service) or not is_global(service):
            self.agenda.add(ServiceWork(key.service_id))
            return
        node = tx.get(objects_pb2.Node, key.node_id)
        self._keep_node(tx, tally, service, key.node_id, node, now, refill)

    def _keep_node(
        self,
        tx: WriteTx,
        tally: Tally,
        service: objects_pb2.Service,
        node_id: str,
        node: objects_pb2.Node | None,
        now: float,
        revive: bool,
    ) -> None:
        key = SlotKey(service.id, 0, node_id)
        tasks = slot_tasks(tx, key)
        if node is None or is_lost(node) or not meets_constraints(node, service.spec.task):
            for task in runnable(tasks):
                set_desired(tx, task, types_pb2.SHUTDOWN, tally, "node not eligible")
            return
        keep_slot(tx, service, key, now, tally)
        if not takes_new_tasks(node) or runnable(slot_tasks(tx, key)):
            return
        if revive or all(t.desired_state == types_pb2.REMOVE for t in tasks):
            create_successor(tx, service, key, now, tally, "new node")
