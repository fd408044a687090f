"""An in-process fake Control server on a unix socket: just enough store for swarmctl's tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from shoal.v1 import control_pb2, control_pb2_grpc, objects_pb2, types_pb2


def _matches(filters: Any, object_id: str, name: str) -> bool:
    if filters.names and name not in filters.names:
        return False
    return not (
        filters.id_prefixes and not any(object_id.startswith(p) for p in filters.id_prefixes)
    )


class FakeControl(control_pb2_grpc.ControlServicer):
    """Services, tasks, nodes and one cluster; records the requests that change them."""

    def __init__(self) -> None:
        self.nodes: dict[str, objects_pb2.Node] = {}
        self.services: dict[str, objects_pb2.Service] = {}
        self.tasks: dict[str, objects_pb2.Task] = {}
        self.secrets: dict[str, objects_pb2.Secret] = {}
        self.cluster = objects_pb2.Cluster(id="cluster1")
        self.cluster.meta.version = 1
        self.cluster.root_ca.join_tokens.worker = "SWMTKN-1-a-worker0"
        self.requests: list[Any] = []
        # When set, CreateService also makes one task per replica in this state.
        self.start_state: int | None = None
        self._next = 0

    def new_id(self, prefix: str) -> str:
        self._next += 1
        return prefix + hashlib.sha256(str(self._next).encode()).hexdigest()[:20]

    def ListNodes(self, request: Any, context: Any) -> Any:
        nodes = [
            n
            for n in self.nodes.values()
            if _matches(request.filters, n.id, n.spec.annotations.name or n.description.hostname)
        ]
        return control_pb2.ListNodesResponse(nodes=nodes)

    def GetNode(self, request: Any, context: Any) -> Any:
        if request.node_id not in self.nodes:
            context.abort(grpc.StatusCode.NOT_FOUND, f"node {request.node_id} not found")
        return control_pb2.GetNodeResponse(node=self.nodes[request.node_id])

    def UpdateNode(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        node = self.nodes[request.node_id]
        if request.node_version != node.meta.version:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "update out of sequence")
        node.spec.CopyFrom(request.spec)
        node.meta.version += 1
        return control_pb2.UpdateNodeResponse(node=node)

    def ListServices(self, request: Any, context: Any) -> Any:
        found = [
            s
            for s in self.services.values()
            if _matches(request.filters, s.id, s.spec.annotations.name)
        ]
        return control_pb2.ListServicesResponse(services=found)

    def GetService(self, request: Any, context: Any) -> Any:
        if request.service_id not in self.services:
            context.abort(grpc.StatusCode.NOT_FOUND, f"service {request.service_id} not found")
        return control_pb2.GetServiceResponse(service=self.services[request.service_id])

    def CreateService(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        if not request.spec.annotations.name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "spec.annotations.name: required")
        service = objects_pb2.Service(id=self.new_id("svc"), spec=request.spec)
        service.meta.version = 1
        service.spec_version.index = 1
        self.services[service.id] = service
        if self.start_state is not None:
            for slot in range(1, request.spec.replicated_service.replicas + 1):
                self.add_task(service, slot, self.start_state)
        return control_pb2.CreateServiceResponse(service=service)

    def UpdateService(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        service = self.services[request.service_id]
        if request.service_version != service.meta.version:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "update out of sequence")
        if request.rollback == control_pb2.UpdateServiceRequest.PREVIOUS:
            spec = service.previous_spec
        else:
            spec = request.spec
        previous = objects_pb2.Service().spec
        previous.CopyFrom(service.spec)
        service.spec.CopyFrom(spec)
        service.previous_spec.CopyFrom(previous)
        service.meta.version += 1
        service.spec_version.index += 1
        return control_pb2.UpdateServiceResponse(service=service)

    def RemoveService(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        del self.services[request.service_id]
        return control_pb2.RemoveServiceResponse()

    def ListTasks(self, request: Any, context: Any) -> Any:
        filters = request.filters
        found = [
            t
            for t in self.tasks.values()
            if _matches(filters, t.id, t.annotations.name)
            and (not filters.service_ids or t.service_id in filters.service_ids)
        ]
        return control_pb2.ListTasksResponse(tasks=found)

    def ListClusters(self, request: Any, context: Any) -> Any:
        return control_pb2.ListClustersResponse(clusters=[self.cluster])

    def UpdateCluster(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        self.cluster.spec.CopyFrom(request.spec)
        if request.rotation.worker_join_token:
            self.cluster.root_ca.join_tokens.worker = "SWMTKN-1-a-worker1"
        self.cluster.meta.version += 1
        return control_pb2.UpdateClusterResponse(cluster=self.cluster)

    def CreateSecret(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        secret = objects_pb2.Secret(id=self.new_id("sec"), spec=request.spec)
        self.secrets[secret.id] = secret
        return control_pb2.CreateSecretResponse(secret=secret)

    def ListSecrets(self, request: Any, context: Any) -> Any:
        found = [
            s
            for s in self.secrets.values()
            if _matches(request.filters, s.id, s.spec.annotations.name)
        ]
        return control_pb2.ListSecretsResponse(secrets=found)

    def RemoveSecret(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        del self.secrets[request.secret_id]
        return control_pb2.RemoveSecretResponse()

    def add_node(self, hostname: str, role: int = types_pb2.WORKER) -> objects_pb2.Node:
        node = objects_pb2.Node(id=self.new_id("node"), role=role)  # type: ignore[arg-type]
        node.description.hostname = hostname
        node.status.state = types_pb2.NodeStatus.READY
        node.meta.version = 1
        self.nodes[node.id] = node
        return node

    def add_task(self, service: objects_pb2.Service, slot: int, state: int, **fields: Any) -> None:
        task = objects_pb2.Task(
            id=self.new_id("task"),
            service_id=service.id,
            slot=slot,
            desired_state=types_pb2.RUNNING,
            spec=service.spec.task,
            **fields,
        )
        task.status.state = state  # type: ignore[assignment]
        task.spec_version.CopyFrom(service.spec_version)
        self.tasks[task.id] = task


@contextmanager
def serve(tmp_path: Path) -> Iterator[tuple[FakeControl, str]]:
    """The fake on a unix socket in `tmp_path`; yields it with the socket path."""
    fake = FakeControl()  # type: ignore[abstract]  # the calls swarmctl makes are all here
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServicer_to_server(fake, server)
    socket_path = str(tmp_path / "control.sock")
    server.add_insecure_port(f"unix://{socket_path}")
    server.start()
    try:
        yield fake, socket_path
    finally:
        server.stop(grace=None)
