"""A real Control server on 127.0.0.1 over a real Store with a LocalProposer, and builders
of valid specs for tests to spoil one field at a time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest

from manager.controlapi import ControlServicer, add_control_service
from manager.store import LocalProposer, Store, StoreObject, new_id
from shoal.v1 import control_pb2_grpc, objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock


def local_store(clock: FakeClock) -> Store:
    store = Store(clock=clock.timestamp)
    store.proposer = LocalProposer(store, proposer_id="controlapi-test")
    return store


@contextlib.asynccontextmanager
async def control_server(servicer: ControlServicer) -> AsyncIterator[str]:
    """Serves `servicer` on an ephemeral loopback port; yields "127.0.0.1:port"."""
    server = grpc.aio.server()
    add_control_service(server, servicer)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def async_stub(channel: grpc.aio.Channel) -> control_pb2_grpc.ControlAsyncStub:
    """ControlStub over an aio channel (the stub's overloads cannot tell the channel kinds
    apart: grpc has no type information)."""
    return cast("control_pb2_grpc.ControlAsyncStub", control_pb2_grpc.ControlStub(channel))


@dataclass
class Control:
    """A running Control API and what it works on."""

    store: Store
    stub: control_pb2_grpc.ControlAsyncStub
    clock: FakeClock

    async def put(self, *objects: StoreObject) -> None:
        """Store objects the API cannot create (nodes, tasks, clusters) or hostile ones."""

        def create(tx: Any) -> None:
            for obj in objects:
                tx.create(obj)

        await self.store.update(create)

    def get(self, cls: type[Any], object_id: str) -> Any:
        return self.store.view(lambda tx: tx.get(cls, object_id))


async def refused(call: Awaitable[Any], code: grpc.StatusCode, *parts: str) -> str:
    """Awaits a call that must fail with `code` and a message containing every part."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    details = info.value.details() or ""
    assert info.value.code() == code, details
    for part in parts:
        assert part in details, details
    return details


def container(image: str = "registry:5000/busybox:1") -> specs_pb2.ContainerSpec:
    return specs_pb2.ContainerSpec(image=image, command=["httpd", "-f"])


def service_spec(name: str = "web", replicas: int = 1) -> specs_pb2.ServiceSpec:
    spec = specs_pb2.ServiceSpec(task=specs_pb2.TaskSpec(container=container()))
    spec.annotations.name = name
    spec.replicated_service.replicas = replicas
    return spec


def network_spec(name: str = "backend", subnet: str = "") -> specs_pb2.NetworkSpec:
    spec = specs_pb2.NetworkSpec()
    spec.annotations.name = name
    if subnet:
        spec.ipam.configs.add(subnet=subnet)
    return spec


def node(
    name: str = "",
    role: types_pb2.NodeRole.ValueType = types_pb2.WORKER,
    state: types_pb2.NodeStatus.State.ValueType = types_pb2.NodeStatus.READY,
    hostname: str = "host",
) -> objects_pb2.Node:
    result = objects_pb2.Node(id=new_id(), role=role)
    result.spec.annotations.name = name
    result.spec.desired_role = role
    result.spec.membership = specs_pb2.NodeSpec.ACCEPTED
    result.description.hostname = hostname
    result.status.state = state
    return result


def task(
    service: objects_pb2.Service,
    slot: int = 1,
    node_id: str = "",
    desired: types_pb2.TaskState.ValueType = types_pb2.RUNNING,
    state: types_pb2.TaskState.ValueType = types_pb2.NEW,
) -> objects_pb2.Task:
    result = objects_pb2.Task(
        id=new_id(),
        service_id=service.id,
        slot=slot,
        node_id=node_id,
        desired_state=desired,
        spec=service.spec.task,
    )
    result.service_annotations.CopyFrom(service.spec.annotations)
    result.status.state = state
    return result
