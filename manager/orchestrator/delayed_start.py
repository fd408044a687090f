"""Delayed start, READY -> RUNNING: when a task created to wait may start.

Restarted tasks wait out their restart delay; stop-first update tasks wait for the task
they replace to stop. Both are created with desired state READY (so the agent can pull and
prepare meanwhile) and set to desired RUNNING by `start_when_due`. The time is derived from
the store alone (the task's creation time and its slot's other tasks), so a new leader
recomputes every pending start.
"""

from __future__ import annotations

from manager.clock import duration_seconds
from manager.orchestrator.slots import slot_key, slot_tasks
from manager.orchestrator.tasks import copy_task, created_at, is_alive
from manager.store import ReadTx, WriteTx
from shoal.v1 import objects_pb2, types_pb2

DEFAULT_STOP_GRACE_S = 10.0


def stop_grace_s(task: objects_pb2.Task) -> float:
    container = task.spec.container
    if container.HasField("stop_grace_period"):
        return duration_seconds(container.stop_grace_period)
    return DEFAULT_STOP_GRACE_S


def start_time(tx: ReadTx, task: objects_pb2.Task, delay_s: float, stop_margin_s: float) -> float:
    """When `task` may go from READY to RUNNING: `delay_s` after its creation, and not while
    another task of its slot is still stopping (unless that task has not reported
    stopping by its stop grace period plus `stop_margin_s` after `task` was created: its node
    may never answer, and the slot must not stay empty forever)."""
    created = created_at(task)
    due = created + delay_s

    def node(node_id: str) -> objects_pb2.Node | None:
        return tx.get(objects_pb2.Node, node_id)

    stopping = [
        t
        for t in slot_tasks(tx, slot_key(task))
        if t.id != task.id and t.desired_state > types_pb2.RUNNING and is_alive(t, node)
    ]
    if stopping:
        due = max(due, created + max(stop_grace_s(t) for t in stopping) + stop_margin_s)
    return due


def start_when_due(
    tx: WriteTx, task_id: str, now: float, delay_s: float, stop_margin_s: float
) -> float | None:
    """Start the task (desired RUNNING) if it is READY and due. Returns when to try again
    (it is not due yet), or None (started, or nothing waits to start any more)."""
    task = tx.get(objects_pb2.Task, task_id)
    if task is None or task.desired_state != types_pb2.READY:
        return None
    due = start_time(tx, task, delay_s, stop_margin_s)
    if now < due:
        return due
    started = copy_task(task)
    started.desired_state = types_pb2.RUNNING
    tx.update(started)
    return None
