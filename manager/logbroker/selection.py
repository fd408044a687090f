"""Which tasks, and so which nodes, a log selector names; whether a published line fits it.

A selector is the union of its services, nodes and tasks (as in SwarmKit). Without follow,
only tasks that have run are looked for (a task before RUNNING has written nothing yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from manager.logbroker.errors import InvalidSelector
from manager.store import ReadTx
from shoal.v1 import logs_pb2, objects_pb2, types_pb2


def check_selector(selector: logs_pb2.LogSelector) -> None:
    if not (selector.service_ids or selector.node_ids or selector.task_ids):
        raise InvalidSelector("the log selector names no service, node or task")
    for kind, ids in (
        ("service", selector.service_ids),
        ("node", selector.node_ids),
        ("task", selector.task_ids),
    ):
        if any(not i for i in ids):
            raise InvalidSelector(f"the log selector has an empty {kind} id")


@dataclass
class Selection:
    """The nodes a subscription goes to, and the selected tasks that have no node yet."""

    nodes: set[str] = field(default_factory=set)
    unscheduled: set[str] = field(default_factory=set)

    def add(self, task: objects_pb2.Task) -> None:
        if task.node_id:
            self.nodes.add(task.node_id)
            self.unscheduled.discard(task.id)
        else:
            self.unscheduled.add(task.id)


def select(tx: ReadTx, selector: logs_pb2.LogSelector, follow: bool) -> Selection:
    selection = Selection(nodes=set(selector.node_ids))
    for task_id in selector.task_ids:
        task = tx.get(objects_pb2.Task, task_id)
        if task is not None:
            selection.add(task)
    for service_id in selector.service_ids:
        for task in tx.find(objects_pb2.Task, "service", service_id):
            if follow or task.status.state >= types_pb2.RUNNING:
                selection.add(task)
    return selection


def selects_task(selector: logs_pb2.LogSelector, task: objects_pb2.Task) -> bool:
    """Whether `task` is one of the selector's tasks (by id, service or node)."""
    return (
        task.id in selector.task_ids
        or task.service_id in selector.service_ids
        or (bool(task.node_id) and task.node_id in selector.node_ids)
    )


def selects_context(selector: logs_pb2.LogSelector, context: logs_pb2.LogContext) -> bool:
    """Whether a published line's context is one the selector asked for."""
    return (
        context.task_id in selector.task_ids
        or context.service_id in selector.service_ids
        or context.node_id in selector.node_ids
    )
