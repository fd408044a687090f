"""Test stand-ins: a caller identity from metadata, and builders.

`metadata_identity` is a TEST-ONLY hook: it trusts whatever node id the caller puts in its
metadata. Production servers identify callers by their certificate (`certificate_identity`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

from manager.ca.errors import Unauthenticated
from manager.store import LocalProposer, Store, WriteTx, new_id
from shoal.v1 import objects_pb2, types_pb2
from tests.polling import until_async
from tests.unit.manager.fake_clock import FakeClock

T = TypeVar("T")
NODE_ID_METADATA = "x-shoal-test-node-id"


def metadata_identity(context: grpc.aio.ServicerContext) -> str:
    """TEST ONLY: the node id the caller claims in its metadata."""
    for key, value in context.invocation_metadata() or ():
        if key == NODE_ID_METADATA:
            return str(value)
    raise Unauthenticated(f"no {NODE_ID_METADATA} metadata")


def local_store() -> Store:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")
    return store


async def advance_until(
    clock: FakeClock, check: Callable[[], T], what: str, step: float = 0.05
) -> T:
    """Move the fake clock in steps of `step` until `check` holds (5 s of real time at most)."""

    def probe() -> T:
        value = check()
        if not value:
            clock.advance(step)
        return value

    return await until_async(probe, what, timeout_s=5.0, interval_s=0.002)


def node(
    node_id: str,
    state: types_pb2.NodeStatus.State.ValueType = types_pb2.NodeStatus.UNKNOWN,
    role: types_pb2.NodeRole.ValueType = types_pb2.WORKER,
    manager_addr: str = "",
) -> objects_pb2.Node:
    result = objects_pb2.Node(id=node_id, role=role)
    result.spec.annotations.name = node_id
    result.status.state = state
    if manager_addr:
        result.manager_status.addr = manager_addr
    return result


def task(
    node_id: str,
    state: types_pb2.TaskState.ValueType = types_pb2.ASSIGNED,
    desired: types_pb2.TaskState.ValueType = types_pb2.RUNNING,
    task_id: str = "",
) -> objects_pb2.Task:
    result = objects_pb2.Task(id=task_id or new_id(), node_id=node_id, desired_state=desired)
    result.status.state = state
    result.spec.container.image = "busybox"
    return result


def description(hostname: str = "host") -> types_pb2.NodeDescription:
    result = types_pb2.NodeDescription(hostname=hostname)
    result.platform.os = "linux"
    result.platform.architecture = "amd64"
    result.resources.nano_cpus = 2 * 10**9
    result.resources.memory_bytes = 1 << 30
    return result


async def put(
    store: Store,
    *objects: objects_pb2.Node
    | objects_pb2.Task
    | objects_pb2.Cluster
    | objects_pb2.Secret
    | objects_pb2.Config,
) -> None:
    def write(tx: WriteTx) -> None:
        for obj in objects:
            tx.create(obj)

    await store.update(write)


def get_node(store: Store, node_id: str) -> objects_pb2.Node:
    found = store.view(lambda tx: tx.get(objects_pb2.Node, node_id))
    assert found is not None
    return found


def get_task(store: Store, task_id: str) -> objects_pb2.Task:
    found = store.view(lambda tx: tx.get(objects_pb2.Task, task_id))
    assert found is not None
    return found
