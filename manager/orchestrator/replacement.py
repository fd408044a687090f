"""Taking tasks out of service, and what follows in their slot.

Shared by the orchestrators and the constraint enforcer so that a task is always shut down
and succeeded in the same transaction: no slot is ever left empty in between, even when the
leader changes.
"""

from __future__ import annotations

from typing import TypeAlias

from manager.orchestrator import metrics
from manager.orchestrator.dirty import is_dirty
from manager.orchestrator.eligibility import (
    is_global,
    is_live,
    is_lost,
    is_replicated,
    may_run_global_task,
)
from manager.orchestrator.metrics import Tally
from manager.orchestrator.slots import SlotKey, cluster_of, runnable, slot_key, slot_tasks
from manager.orchestrator.tasks import copy_task, has_ended, new_task, newest_first
from manager.store import ReadTx, WriteTx
from shoal.v1 import objects_pb2, types_pb2

DesiredState: TypeAlias = types_pb2.TaskState.ValueType


def set_desired(
    tx: WriteTx,
    task: objects_pb2.Task,
    desired: DesiredState,
    tally: Tally,
    reason: str,
) -> None:
    """Move a task's desired state forward (never back)."""
    if task.desired_state >= desired:
        return
    changed = copy_task(task)
    changed.desired_state = desired
    tx.update(changed)
    tally.add(metrics.TASKS_STOPPED, reason)


def create_successor(
    tx: WriteTx,
    service: objects_pb2.Service,
    key: SlotKey,
    now: float,
    tally: Tally,
    reason: str,
    desired: DesiredState = types_pb2.RUNNING,
) -> objects_pb2.Task | None:
    """A new task for the slot `key` of `service` (for a global slot, only while the node
    may run one)."""
    if key.slot and is_replicated(service):
        task = new_task(service, now=now, slot=key.slot, desired=desired, cluster=cluster_of(tx))
    elif not key.slot and key.node_id and is_global(service):
        node = tx.get(objects_pb2.Node, key.node_id)
        if node is None or not may_run_global_task(node, service):
            return None
        task = new_task(
            service, now=now, node_id=key.node_id, desired=desired, cluster=cluster_of(tx)
        )
    else:
        return None
    tally.add(metrics.TASKS_CREATED, reason)
    return tx.create(task)


def replace_task(
    tx: WriteTx, task_id: str, now: float, tally: Tally, reason: str
) -> objects_pb2.Task | None:
    """Shut a runnable task down and, unless another runnable task of the current spec
    still covers its slot, create its successor there (for a global task: only if its node
    may still run one). Returns the successor, if any.

    An old-spec task left in the slot (a start-first update in flight) does not count: it
    is retired once the successor runs."""
    task = tx.get(objects_pb2.Task, task_id)
    if task is None or task.desired_state > types_pb2.RUNNING:
        return None
    set_desired(tx, task, types_pb2.SHUTDOWN, tally, reason)
    service = tx.get(objects_pb2.Service, task.service_id)
    if service is None or not is_live(service):
        return None
    key = slot_key(task)
    if current_spec_holds(tx, service, key):
        return None
    return create_successor(tx, service, key, now, tally, reason)


def current_spec_holds(tx: ReadTx, service: objects_pb2.Service, key: SlotKey) -> bool:
    """Whether a runnable task of the service's current spec holds the slot."""
    return any(
        not is_dirty(service, t, tx.get(objects_pb2.Node, t.node_id))
        for t in runnable(slot_tasks(tx, key))
    )


def retire_superseded(
    tx: WriteTx, service: objects_pb2.Service, key: SlotKey, tally: Tally
) -> None:
    """Once a slot has a RUNNING task of the current spec, shut down every other runnable
    task of the slot: this finishes a start-first update (even one whose updater stopped)
    and removes duplicates."""
    candidates = runnable(slot_tasks(tx, key))
    if len(candidates) < 2:
        return
    running_clean = [
        t
        for t in candidates
        if t.status.state == types_pb2.RUNNING
        and not is_dirty(service, t, tx.get(objects_pb2.Node, t.node_id))
    ]
    if not running_clean:
        return
    keep = newest_first(running_clean)[0]
    for task in candidates:
        if task.id != keep.id:
            set_desired(tx, task, types_pb2.SHUTDOWN, tally, "superseded")


def keep_slot(
    tx: WriteTx, service: objects_pb2.Service, key: SlotKey, now: float, tally: Tally
) -> None:
    """Upkeep of one slot: its runnable tasks on a lost node (gone, DOWN, drained) are
    replaced, and once it has a RUNNING task of the current spec the others go."""
    for task in runnable(slot_tasks(tx, key)):
        lost = bool(task.node_id) and is_lost(tx.get(objects_pb2.Node, task.node_id))
        if lost and not has_ended(task):
            replace_task(tx, task.id, now, tally, "node lost")
    retire_superseded(tx, service, key, tally)
