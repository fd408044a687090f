"""What the orchestrators ask of a task, and how they make new ones.

A task is *runnable* while its desired state is at most RUNNING (READY counts: a restarted
task waiting for its delay still holds its slot). It has *ended* once its observed state is
past RUNNING. It is *alive* while it may be running on a node that can still answer:
assigned, not ended, its node known and not DOWN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from manager.clock import timestamp_of, timestamp_seconds
from manager.store import new_id
from shoal.v1 import objects_pb2, types_pb2

NodeLookup = Callable[[str], objects_pb2.Node | None]


def is_runnable(task: objects_pb2.Task) -> bool:
    return task.desired_state <= types_pb2.RUNNING


def has_ended(task: objects_pb2.Task) -> bool:
    return task.status.state > types_pb2.RUNNING


def is_alive(task: objects_pb2.Task, nodes: NodeLookup) -> bool:
    if not task.node_id or not types_pb2.ASSIGNED <= task.status.state <= types_pb2.RUNNING:
        return False
    node = nodes(task.node_id)
    return node is not None and node.status.state != types_pb2.NodeStatus.DOWN


def created_at(task: objects_pb2.Task) -> float:
    return timestamp_seconds(task.meta.created_at)


def newest_first(tasks: Iterable[objects_pb2.Task]) -> list[objects_pb2.Task]:
    """Tasks by creation, newest first (the raft index breaks ties: it only grows)."""
    return sorted(tasks, key=lambda t: (created_at(t), t.meta.version, t.id), reverse=True)


def copy_task(task: objects_pb2.Task) -> objects_pb2.Task:
    copy = objects_pb2.Task()
    copy.CopyFrom(task)
    return copy


def new_task(
    service: objects_pb2.Service,
    *,
    now: float,
    slot: int = 0,
    node_id: str = "",
    desired: types_pb2.TaskState.ValueType = types_pb2.RUNNING,
    cluster: objects_pb2.Cluster | None = None,
) -> objects_pb2.Task:
    """A NEW task of `service` from its current task template: for `slot` (replicated) or
    preassigned to `node_id` (global)."""
    spec = service.spec
    task = objects_pb2.Task(
        id=new_id(),
        service_id=service.id,
        slot=slot,
        node_id=node_id,
        desired_state=desired,
    )
    task.spec.CopyFrom(spec.task)
    if service.HasField("spec_version"):
        task.spec_version.CopyFrom(service.spec_version)
    task.annotations.name = f"{spec.annotations.name}.{slot or node_id}.{task.id}"
    task.service_annotations.CopyFrom(spec.annotations)
    task.status.state = types_pb2.NEW
    task.status.message = "created"
    task.status.timestamp.CopyFrom(timestamp_of(now))
    task.endpoint.spec.CopyFrom(spec.endpoint)
    if spec.task.HasField("log_driver"):
        task.log_driver.CopyFrom(spec.task.log_driver)
    elif cluster is not None and cluster.spec.task_defaults.HasField("log_driver"):
        task.log_driver.CopyFrom(cluster.spec.task_defaults.log_driver)
    return task


def is_attachment(task: objects_pb2.Task) -> bool:
    """A standalone container's network attachment (manager.resource_allocator), not a
    service's task: its node detaches it."""
    return task.spec.WhichOneof("runtime") == "attachment"
