"""The task reaper: bounds the history the store keeps, and finishes removals.

- Per slot (per node for a global service) the newest `task_history_retention_limit` old
  tasks are kept (the cluster's orchestration setting; 5 when the cluster sets none;
  negative keeps all) and older ones deleted. Old tasks are those no longer runnable that
  have finished: ended, never assigned, or on a node that is gone or DOWN (it will never
  report them). A slot left without a runnable task keeps its newest one, whatever the
  limit: it is what tells the orchestrators the slot ended for good.
- Tasks with desired state REMOVE (scaled away) and every task of a removed service are
  deleted once finished; a service marked pending_delete is deleted with its last task.
"""

from __future__ import annotations

from dataclasses import dataclass

from manager.orchestrator import metrics
from manager.orchestrator.eligibility import is_live
from manager.orchestrator.metrics import Tally
from manager.orchestrator.reconciler import Reconciler, commit
from manager.orchestrator.slots import (
    SlotKey,
    cluster_of,
    group_by_slot,
    runnable,
    slot_key,
    slot_tasks,
)
from manager.orchestrator.tasks import has_ended, is_attachment, is_runnable, newest_first
from manager.orchestrator.work import NodeWork, ServiceWork, SlotWork
from manager.store import Event, EventAction, Kind, ReadTx, WriteTx
from shoal.v1 import objects_pb2, types_pb2


@dataclass(frozen=True)
class EverythingWork:
    pass


Work = SlotWork | ServiceWork | NodeWork | EverythingWork


def history_limit(tx: ReadTx, default: int) -> int:
    cluster = cluster_of(tx)
    if cluster is None or not cluster.spec.HasField("orchestration"):
        return default
    return cluster.spec.orchestration.task_history_retention_limit


def finished(tx: ReadTx, task: objects_pb2.Task) -> bool:
    """The task will not run (again) and nobody will report on it any more."""
    if has_ended(task) or task.status.state < types_pb2.ASSIGNED:
        return True
    node = tx.get(objects_pb2.Node, task.node_id)
    return node is None or node.status.state == types_pb2.NodeStatus.DOWN


class TaskReaper(Reconciler[Work]):
    name = "reaper"
    kinds = (Kind.TASK, Kind.SERVICE, Kind.CLUSTER, Kind.NODE)

    def load(self, tx: ReadTx) -> None:
        self.agenda.add(EverythingWork())

    def observe(self, event: Event) -> None:
        obj = event.object
        if isinstance(obj, objects_pb2.Task):
            new = event.new
            if isinstance(new, objects_pb2.Task) and (not is_runnable(new) or has_ended(new)):
                self.agenda.add(SlotWork(slot_key(new)))
        elif isinstance(obj, objects_pb2.Service):
            if event.action is EventAction.DELETE or obj.pending_delete:
                self.agenda.add(ServiceWork(obj.id))
        elif isinstance(obj, objects_pb2.Cluster):
            old, new_cluster = event.old, event.new
            if (
                not isinstance(old, objects_pb2.Cluster)
                or not isinstance(new_cluster, objects_pb2.Cluster)
                or old.spec.orchestration != new_cluster.spec.orchestration
            ):
                self.agenda.add(EverythingWork())
        elif isinstance(obj, objects_pb2.Node):
            new_node = event.new
            if not isinstance(new_node, objects_pb2.Node) or (
                new_node.status.state == types_pb2.NodeStatus.DOWN
            ):
                self.agenda.add(NodeWork(obj.id))

    async def reconcile(self, key: Work) -> None:
        if isinstance(key, EverythingWork):
            for slot in self.store.view(self._slots_with_history):
                self.agenda.add(SlotWork(slot))
            return
        if isinstance(key, NodeWork):
            for slot in self.store.view(
                lambda tx: {slot_key(t) for t in tx.find(objects_pb2.Task, "node", key.node_id)}
            ):
                self.agenda.add(SlotWork(slot))
            return
        await commit(self.store, lambda tx, tally: self._reap(tx, tally, key))

    def _slots_with_history(self, tx: ReadTx) -> set[SlotKey]:
        """Slots with old tasks, and those holding attachments of nodes gone meanwhile."""
        groups = group_by_slot(tx.list(objects_pb2.Task))
        return {
            key
            for key, tasks in groups.items()
            if len(runnable(tasks)) < len(tasks)
            or any(is_attachment(t) and tx.get(objects_pb2.Node, t.node_id) is None for t in tasks)
        }

    # -- transactions -----------------------------------------------------------------------

    def _reap(self, tx: WriteTx, tally: Tally, work: SlotWork | ServiceWork) -> None:
        if isinstance(work, SlotWork):
            service_id = work.key.service_id
            groups = {work.key: slot_tasks(tx, work.key)}
        else:
            service_id = work.service_id
            groups = group_by_slot(tx.find(objects_pb2.Task, "service", service_id))
        service = tx.get(objects_pb2.Service, service_id)
        limit = history_limit(tx, self.config.default_history_limit)
        for tasks in groups.values():
            self._reap_slot(tx, tally, tasks, is_live(service), limit)
        if (
            service is not None
            and service.pending_delete
            and not tx.find(objects_pb2.Task, "service", service_id)
        ):
            tx.delete(objects_pb2.Service, service_id)

    def _reap_slot(
        self,
        tx: WriteTx,
        tally: Tally,
        tasks: list[objects_pb2.Task],
        service_live: bool,
        limit: int,
    ) -> None:
        doomed: dict[str, str] = {}
        for task in tasks:
            if is_attachment(task):
                # Its node detaches it; only a node gone from the cluster leaves it behind.
                if tx.get(objects_pb2.Node, task.node_id) is None:
                    doomed[task.id] = "removed"
                continue
            if (not service_live or task.desired_state == types_pb2.REMOVE) and finished(tx, task):
                doomed[task.id] = "removed"
        if service_live:
            history = newest_first(
                t
                for t in tasks
                if t.id not in doomed
                and not is_attachment(t)
                and not is_runnable(t)
                and t.desired_state != types_pb2.REMOVE
                and finished(tx, t)
            )
            keep = len(history) if limit < 0 else limit
            if not runnable(tasks):
                keep = max(keep, 1)
            for task in history[keep:]:
                doomed[task.id] = "history"
        for task_id, reason in doomed.items():
            tx.delete(objects_pb2.Task, task_id)
            tally.add(metrics.TASKS_REAPED, reason)
