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
from manager.orchestrator.mode_orchestrator import ModeOrchestrator
from manager.orchestrator.reconciler import commit
from manager.orchestrator.replacement import create_successor, keep_slot, set_desired
from manager.orchestrator.slots import SlotKey, runnable, slot_tasks
from manager.orchestrator.work import NodeWork
from manager.scheduler import NodeAttributes
from manager.store import WriteTx
from shoal.v1 import objects_pb2, types_pb2


def became_eligible(old: objects_pb2.Node | None, new: objects_pb2.Node) -> bool:
    """The node may now run tasks it could not before: it is new, it started taking new
    tasks, or what constraints look at changed."""
    if not takes_new_tasks(new):
        return False
    return (
        old is None or not takes_new_tasks(old) or NodeAttributes.of(old) != NodeAttributes.of(new)
    )


class GlobalOrchestrator(ModeOrchestrator):
    name = "global"

    def reset(self) -> None:
        super().reset()
        # Nodes whose next reconciliation revives dead slots (they became eligible).
        self._revive_nodes: set[str] = set()

    def serves(self, service: objects_pb2.Service) -> bool:
        return is_global(service)

    def owns(self, task: objects_pb2.Task) -> bool:
        return task.slot == 0 and bool(task.node_id)

    def slot_changed(self, old: objects_pb2.Task, new: objects_pb2.Task) -> bool:
        """RUNNING now."""
        return old.status.state != new.status.state and new.status.state == types_pb2.RUNNING

    def node_changed(
        self, node_id: str, old: objects_pb2.Node | None, new: objects_pb2.Node | None
    ) -> None:
        if new is not None and became_eligible(old, new):
            self._revive_nodes.add(node_id)
        self.agenda.add(NodeWork(node_id))

    async def reconcile_node(self, node_id: str, now: float) -> None:
        revive = node_id in self._revive_nodes
        await commit(self.store, lambda tx, tally: self._node(tx, tally, node_id, now, revive))
        self._revive_nodes.discard(node_id)

    # -- transactions -----------------------------------------------------------------------

    def keep_service(
        self, tx: WriteTx, tally: Tally, service: objects_pb2.Service, now: float, revive: bool
    ) -> bool:
        """The service on every node."""
        limit = self.config.changes_for(service.spec.task)
        tasks = [t for t in tx.find(objects_pb2.Task, "service", service.id) if self.owns(t)]
        nodes: dict[str, objects_pb2.Node | None] = {
            node.id: node for node in tx.list(objects_pb2.Node)
        }
        nodes.update((t.node_id, None) for t in tasks if t.node_id not in nodes)
        for node_id, node in nodes.items():
            if tally.total >= limit:
                return True
            self._keep_node(tx, tally, service, node_id, node, now, revive)
        return False

    def keep_slot(
        self, tx: WriteTx, tally: Tally, service: objects_pb2.Service, key: SlotKey, now: float
    ) -> None:
        node = tx.get(objects_pb2.Node, key.node_id)
        self._keep_node(tx, tally, service, key.node_id, node, now, self.refilling(key))

    def _node(self, tx: WriteTx, tally: Tally, node_id: str, now: float, revive: bool) -> None:
        node = tx.get(objects_pb2.Node, node_id)
        services = {s.id: s for s in tx.list(objects_pb2.Service) if is_global(s) and is_live(s)}
        if node is None:
            services = {
                t.service_id: services[t.service_id]
                for t in tx.find(objects_pb2.Task, "node", node_id)
                if self.owns(t) and t.service_id in services
            }
        for service in services.values():
            self._keep_node(tx, tally, service, node_id, node, now, revive)

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
