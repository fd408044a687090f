"""Tasks: get, list, remove (the orchestrator replaces a removed task if still wanted)."""

from __future__ import annotations

from manager.controlapi.backend import Backend
from manager.controlapi.errors import ObjectNotFound
from manager.controlapi.filters import matches, task_names
from manager.controlapi.requests import required_id
from manager.store import ReadTx
from shoal.v1 import control_pb2, objects_pb2


async def get_task(
    backend: Backend, request: control_pb2.GetTaskRequest
) -> control_pb2.GetTaskResponse:
    task_id = required_id("task_id", request.task_id)

    def get(tx: ReadTx) -> objects_pb2.Task:
        task = tx.get(objects_pb2.Task, task_id)
        if task is None:
            raise ObjectNotFound(f"task {task_id!r} not found")
        return task

    return control_pb2.GetTaskResponse(task=backend.read(get))


async def list_tasks(
    backend: Backend, request: control_pb2.ListTasksRequest
) -> control_pb2.ListTasksResponse:
    filters = request.filters

    def candidates(tx: ReadTx) -> list[objects_pb2.Task]:
        """Through an index when a filter allows it; every task otherwise."""
        if filters.service_ids:
            keys, index = filters.service_ids, "service"
        elif filters.node_ids:
            keys, index = filters.node_ids, "node"
        else:
            return tx.list(objects_pb2.Task)
        return [
            task for key in dict.fromkeys(keys) for task in tx.find(objects_pb2.Task, index, key)
        ]

    def wanted(task: objects_pb2.Task) -> bool:
        if filters.service_ids and task.service_id not in filters.service_ids:
            return False
        if filters.node_ids and task.node_id not in filters.node_ids:
            return False
        if filters.desired_states and task.desired_state not in filters.desired_states:
            return False
        return matches(filters, task.id, task_names(task), task.annotations.labels)

    tasks = backend.read(candidates)
    return control_pb2.ListTasksResponse(tasks=[t for t in tasks if wanted(t)])


async def remove_task(
    backend: Backend, request: control_pb2.RemoveTaskRequest
) -> control_pb2.RemoveTaskResponse:
    task_id = required_id("task_id", request.task_id)
    await backend.write(lambda tx: tx.delete(objects_pb2.Task, task_id))
    return control_pb2.RemoveTaskResponse()
