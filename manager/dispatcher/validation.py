"""What an agent may send: a sane node description, and status updates of its own tasks
that move them forward through the states an agent reports."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from manager.dispatcher import metrics
from manager.dispatcher.errors import InvalidRequest, NotYourTask
from manager.store import ReadTx
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

log = logging.getLogger(__name__)

MAX_HOSTNAME = 255
# ASSIGNED and below are the managers' to set, REMOVE is a desired state only, ORPHANED is
# decided by managers about a node that is gone.
AGENT_STATES = frozenset(
    state
    for state in types_pb2.TaskState.values()
    if types_pb2.ACCEPTED <= state <= types_pb2.REJECTED
)


@dataclass(frozen=True)
class StatusUpdate:
    task_id: str
    status: types_pb2.TaskStatus


def state_name(state: int) -> str:
    if state in types_pb2.TaskState.values():
        return types_pb2.TaskState.Name(state)  # type: ignore[arg-type]
    return str(state)


def check_description(description: types_pb2.NodeDescription) -> None:
    hostname = description.hostname
    if not hostname:
        raise InvalidRequest("the node description has no hostname")
    if len(hostname) > MAX_HOSTNAME or not hostname.isprintable():
        raise InvalidRequest(
            f"the node description's hostname {hostname[:64]!r} is not a printable name of at "
            f"most {MAX_HOSTNAME} characters"
        )
    resources = description.resources
    if resources.nano_cpus < 0 or resources.memory_bytes < 0:
        raise InvalidRequest(
            f"the node description has negative resources (nano_cpus {resources.nano_cpus}, "
            f"memory_bytes {resources.memory_bytes})"
        )


def check_status_updates(
    tx: ReadTx,
    node_id: str,
    updates: Iterable[dispatcher_pb2.UpdateTaskStatusRequest.TaskStatusUpdate],
) -> list[StatusUpdate]:
    """The updates worth queueing. A malformed update, or one for another node's task,
    refuses the whole request; updates for unknown tasks or behind the stored state are
    dropped (a retry or a late report), as SwarmKit does."""
    result = []
    for update in updates:
        task_id = update.task_id
        if not task_id:
            raise InvalidRequest("a task status update has no task_id")
        if not update.HasField("status"):
            raise InvalidRequest(f"the status update of task {task_id} has no status")
        state = update.status.state
        if state not in AGENT_STATES:
            raise InvalidRequest(
                f"task {task_id}: an agent cannot report state {state_name(state)} "
                "(agents report ACCEPTED through REJECTED)"
            )
        task = tx.get(objects_pb2.Task, task_id)
        if task is None:
            log.debug("dispatcher: status update for unknown task %s dropped", task_id)
            metrics.STATUS_UPDATES.labels(result="unknown_task").inc()
            continue
        if task.node_id != node_id:
            raise NotYourTask(
                f"task {task_id} is assigned to node {task.node_id or '(none)'}, not to node "
                f"{node_id}: a node reports the status of its own tasks only"
            )
        if state < task.status.state:
            log.info(
                "dispatcher: stale status %s of task %s dropped (it is %s)",
                state_name(state),
                task_id,
                state_name(task.status.state),
            )
            metrics.STATUS_UPDATES.labels(result="stale").inc()
            continue
        result.append(StatusUpdate(task_id, update.status))
    return result
