"""The ResourceAllocator gRPC service: standalone containers on attachable overlay networks.

`shoal run --network NAME` on any node asks its swarmd, whose agent calls AttachNetwork: a
task of no service, preassigned to the calling node, with `spec.attachment` instead of a
container and the network in `spec.networks`. From there it is a task like any other: the
allocator gives it an address on the network, the scheduler confirms it on its node, the
dispatcher sends it to the node (which reports it RUNNING and serves the network) and lists
it among the network's endpoints (other tasks reach the container by address and name). As
in SwarmKit, which this follows. DetachNetwork deletes the task, and the allocator frees its
address. Workers and managers alike may call both; a node detaches only its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import grpc

from common.errors import shown
from manager.ca.auth import Policy, requires, rpc_method
from manager.ca.roles import Role
from manager.clock import WALL_CLOCK, Clock, timestamp_of
from manager.node_rpc import Identify, caller_node
from manager.orchestrator.tasks import is_attachment
from manager.store import ReadTx, Store, StoreError, WriteTx, new_id
from shoal.v1 import objects_pb2, resource_pb2, resource_pb2_grpc, types_pb2

METHODS = ("AttachNetwork", "DetachNetwork")
RESOURCE_POLICIES: dict[str, Policy] = {
    rpc_method(resource_pb2.DESCRIPTOR, "ResourceAllocator", method): requires(
        Role.WORKER, Role.MANAGER
    )
    for method in METHODS
}
# A container id or name as the engine makes them.
CONTAINER_REF = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def attachable_network(tx: ReadTx, reference: str) -> objects_pb2.Network:
    """The network a standalone container may join, by id or name; refused clearly."""
    network = tx.get(objects_pb2.Network, reference) or tx.get_by_name(
        objects_pb2.Network, reference
    )
    if network is None:
        raise _Refused(grpc.StatusCode.NOT_FOUND, f"no network {shown(reference)}")
    name = network.spec.annotations.name
    if network.spec.ingress:
        raise _Refused(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{name!r} is the ingress network: containers reach it through published ports",
        )
    if not network.spec.attachable:
        raise _Refused(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"network {name!r} is not attachable: standalone containers join only networks "
            "created with --attachable",
        )
    if network.pending_delete:
        raise _Refused(grpc.StatusCode.FAILED_PRECONDITION, f"network {name!r} is being removed")
    return network


class ResourceAllocatorServicer(resource_pb2_grpc.ResourceAllocatorServicer):
    def __init__(self, store: Store, identify: Identify, clock: Clock = WALL_CLOCK) -> None:
        self._store = store
        self._identify = identify
        self._clock = clock

    async def AttachNetwork(
        self, request: resource_pb2.AttachNetworkRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.AttachNetworkResponse:
        node_id = await caller_node(self._identify, context)
        for field, value in (
            ("container_id", request.container_id),
            ("container_name", request.container_name),
        ):
            if not CONTAINER_REF.match(value):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{field}: not a container's {shown(value)}"
                )
        if not request.config.target:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "config.target: no network")
        now = timestamp_of(self._clock.now())

        def create(tx: WriteTx) -> str:
            network = attachable_network(tx, request.config.target)
            if tx.get(objects_pb2.Node, node_id) is None:
                raise _Refused(grpc.StatusCode.NOT_FOUND, f"node {node_id!r} is not in the cluster")
            task = objects_pb2.Task(id=new_id(), node_id=node_id)
            task.annotations.name = request.container_name
            task.spec.attachment.container_id = request.container_id
            config = task.spec.networks.add()
            config.CopyFrom(request.config)
            config.target = network.id
            task.desired_state = types_pb2.RUNNING
            task.status.state = types_pb2.NEW
            task.status.message = "network attachment created"
            task.status.timestamp.CopyFrom(now)
            tx.create(task)
            return task.id

        attachment_id = await self._write(context, create)
        return resource_pb2.AttachNetworkResponse(attachment_id=attachment_id)

    async def DetachNetwork(
        self, request: resource_pb2.DetachNetworkRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.DetachNetworkResponse:
        node_id = await caller_node(self._identify, context)

        def delete(tx: WriteTx) -> str:
            task = tx.get(objects_pb2.Task, request.attachment_id)
            if task is None:
                return ""  # gone already: detaching twice is no error
            if not is_attachment(task):
                raise _Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"task {task.id!r} is not a network attachment",
                )
            if task.node_id != node_id:
                raise _Refused(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"attachment {task.id!r} belongs to another node",
                )
            tx.delete(objects_pb2.Task, task.id)
            return task.id

        await self._write(context, delete)
        return resource_pb2.DetachNetworkResponse()

    async def _write(self, context: grpc.aio.ServicerContext, fn: Callable[[WriteTx], str]) -> str:
        try:
            return (await self._store.update(fn)).value
        except _Refused as exc:
            await context.abort(exc.code, str(exc))
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store refused: {exc}")
        raise AssertionError("abort raises")


def add_resource_allocator_service(
    server: grpc.aio.Server, store: Store, identify: Identify
) -> None:
    """Adds the service to `server`, which must run an AuthorizationInterceptor with
    RESOURCE_POLICIES."""
    resource_pb2_grpc.add_ResourceAllocatorServicer_to_server(
        ResourceAllocatorServicer(store, identify), server
    )
