"""The constraint enforcer: when a node changes (labels, role, platform, address, resources)
so that tasks placed on it no longer meet their placement constraints, or their
reservations no longer fit in what it offers, those tasks are shut down and succeeded in
their slots, so the scheduler places them elsewhere (a global task only where its node may
still run one: after a resource shortage it waits there, PENDING, with the scheduler's
reason).

Tasks are checked against their own spec (the one they were placed with). When resources
fall short, the oldest tasks keep their place and the newest go, as long as later (smaller)
tasks still fit.
"""

from __future__ import annotations

from manager.orchestrator.eligibility import meets_constraints
from manager.orchestrator.metrics import Tally
from manager.orchestrator.reconciler import Reconciler, commit
from manager.orchestrator.replacement import replace_task
from manager.orchestrator.tasks import created_at, is_runnable
from manager.scheduler import NodeAttributes
from manager.scheduler.node_info import generic_counts
from manager.store import Event, Kind, ReadTx, WriteTx
from shoal.v1 import objects_pb2, types_pb2


def placement_changed(old: objects_pb2.Node | None, new: objects_pb2.Node) -> bool:
    return (
        old is None
        or NodeAttributes.of(old) != NodeAttributes.of(new)
        or old.description.resources != new.description.resources
    )


def _placed(task: objects_pb2.Task) -> bool:
    """Runnable and holding its node's resources (assigned, not ended)."""
    return is_runnable(task) and types_pb2.ASSIGNED <= task.status.state <= types_pb2.RUNNING


def over_reservations(node: objects_pb2.Node, tasks: list[objects_pb2.Task]) -> list[str]:
    """Ids of the tasks that do not fit, oldest tasks served first. A resource the node
    reports none of at all (not yet described) is not checked."""
    offered = node.description.resources
    cpus, memory = offered.nano_cpus, offered.memory_bytes
    generic = dict(generic_counts(offered))
    evicted = []
    for task in sorted(tasks, key=lambda t: (created_at(t), t.meta.version, t.id)):
        wanted = task.spec.resources.reservations
        wanted_generic = generic_counts(wanted)
        fits = (
            (not offered.nano_cpus or wanted.nano_cpus <= cpus)
            and (not offered.memory_bytes or wanted.memory_bytes <= memory)
            and all(generic.get(kind, 0) >= amount for kind, amount in wanted_generic)
        )
        if not fits:
            evicted.append(task.id)
            continue
        cpus -= wanted.nano_cpus
        memory -= wanted.memory_bytes
        for kind, amount in wanted_generic:
            generic[kind] = generic.get(kind, 0) - amount
    return evicted


class ConstraintEnforcer(Reconciler[str]):
    name = "constraint_enforcer"
    kinds = (Kind.NODE,)

    def load(self, tx: ReadTx) -> None:
        for node in tx.list(objects_pb2.Node):
            self.agenda.add(node.id)

    def observe(self, event: Event) -> None:
        old, new = event.old, event.new
        if isinstance(new, objects_pb2.Node):
            assert old is None or isinstance(old, objects_pb2.Node)
            if placement_changed(old, new):
                self.agenda.add(new.id)

    async def reconcile(self, key: str) -> None:
        now = self.clock.now()
        await commit(self.store, lambda tx, tally: self._enforce(tx, tally, key, now))

    def _enforce(self, tx: WriteTx, tally: Tally, node_id: str, now: float) -> None:
        node = tx.get(objects_pb2.Node, node_id)
        if node is None:
            return  # the orchestrators move tasks off nodes that are gone
        placed = [t for t in tx.find(objects_pb2.Task, "node", node_id) if _placed(t)]
        unfit = {t.id for t in placed if not meets_constraints(node, t.spec)}
        for task_id in unfit:
            replace_task(tx, task_id, now, tally, "constraints not met")
        fitting = [t for t in placed if t.id not in unfit]
        for task_id in over_reservations(node, fitting):
            replace_task(tx, task_id, now, tally, "insufficient resources")
