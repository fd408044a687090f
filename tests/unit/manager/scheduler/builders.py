"""Builders for scheduler tests: nodes and tasks as the store would hold them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from manager.scheduler import Decisions
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

CPU = 10**9
MIB = 1 << 20
GIB = 1 << 30


def node(
    node_id: str,
    *,
    cpus: float = 4,
    memory: int = 8 * GIB,
    labels: Mapping[str, str] | None = None,
    engine_labels: Mapping[str, str] | None = None,
    state: types_pb2.NodeStatus.State.ValueType = types_pb2.NodeStatus.READY,
    availability: specs_pb2.NodeSpec.Availability.ValueType = specs_pb2.NodeSpec.ACTIVE,
    role: types_pb2.NodeRole.ValueType = types_pb2.WORKER,
    hostname: str | None = None,
    os: str = "linux",
    arch: str = "amd64",
    addr: str = "",
    generic: Mapping[str, int] | None = None,
) -> objects_pb2.Node:
    result = objects_pb2.Node(id=node_id, role=role)
    result.spec.annotations.name = node_id
    result.spec.annotations.labels.update(labels or {})
    result.spec.availability = availability
    description = result.description
    description.hostname = hostname if hostname is not None else f"{node_id}-host"
    description.platform.os = os
    description.platform.architecture = arch
    description.resources.nano_cpus = int(cpus * CPU)
    description.resources.memory_bytes = memory
    for kind, count in (generic or {}).items():
        description.resources.generic.add(kind=kind, discrete_value=count)
    description.engine.labels.update(engine_labels or {})
    result.status.state = state
    result.status.addr = addr
    return result


def task(
    task_id: str,
    service: str = "svc",
    *,
    version: int | None = 1,
    slot: int = 0,
    state: types_pb2.TaskState.ValueType = types_pb2.PENDING,
    desired: types_pb2.TaskState.ValueType = types_pb2.RUNNING,
    node_id: str = "",
    cpus: float = 0,
    memory: int = 0,
    generic: Mapping[str, int] | None = None,
    constraints: Iterable[str] = (),
    spread: Iterable[str] = (),
    platforms: Iterable[tuple[str, str]] = (),
    max_replicas: int = 0,
    host_ports: Iterable[int] = (),
    meta_version: int = 1,
) -> objects_pb2.Task:
    result = objects_pb2.Task(
        id=task_id, service_id=service, slot=slot, node_id=node_id, desired_state=desired
    )
    result.meta.version = meta_version
    if version is not None:
        result.spec_version.index = version
    result.status.state = state
    result.spec.container.image = "registry:5000/busybox:1"
    reservations = result.spec.resources.reservations
    reservations.nano_cpus = int(cpus * CPU)
    reservations.memory_bytes = memory
    for kind, count in (generic or {}).items():
        reservations.generic.add(kind=kind, discrete_value=count)
    placement = result.spec.placement
    placement.constraints.extend(constraints)
    for descriptor in spread:
        placement.preferences.add().spread.spread_descriptor = descriptor
    for os, arch in platforms:
        placement.platforms.add(os=os, architecture=arch)
    placement.max_replicas = max_replicas
    for port in host_ports:
        result.endpoint.ports.add(
            target_port=80, published_port=port, publish_mode=types_pb2.PortConfig.HOST
        )
    return result


def replicas(service: str, count: int, **kwargs: Any) -> list[objects_pb2.Task]:
    """`count` PENDING tasks of one service, slots 1..count, ids "<service>-<slot>"."""
    return [
        task(f"{service}-{slot:03d}", service, slot=slot, **kwargs) for slot in range(1, count + 1)
    ]


def running(task_id: str, service: str, node_id: str, **kwargs: Any) -> objects_pb2.Task:
    """A task RUNNING on `node_id`."""
    return task(task_id, service, node_id=node_id, state=types_pb2.RUNNING, **kwargs)


def placements(decisions: Decisions) -> dict[str, str]:
    """Task id -> node id."""
    return {a.task_id: a.node_id for a in decisions.assigned}


def per_node(decisions: Decisions) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in decisions.assigned:
        counts[a.node_id] = counts.get(a.node_id, 0) + 1
    return counts


def messages(decisions: Decisions) -> dict[str, str]:
    return {u.task_id: u.message for u in decisions.unschedulable}
