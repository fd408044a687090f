"""The Control service (grpc.aio): every RPC runs its handler over the store, answers
refusals with the status `errors.status_of` gives, and replays writes that hit a follower on
the leader (see forwarding.py). Reads (Get, List) are linearizable: they run after the read
barrier, so any manager answers every write acknowledged before the read began.

Serve it behind the CA's AuthorizationInterceptor with CONTROL_POLICIES (managers only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from manager.controlapi import clusters, metrics, networks, nodes, payloads, services, tasks
from manager.controlapi.backend import Backend
from manager.controlapi.errors import status_of
from manager.controlapi.forwarding import LeaderChannel, forward, not_forwarding, was_forwarded
from manager.controlapi.hooks import (
    JoinTokenRotation,
    RaftMemberCheck,
    RaftViewSource,
    ReadBarrier,
    has_manager_status,
    no_raft_view,
    no_read_barrier,
    rotate_join_token,
)
from manager.store import NotLeader, Store
from shoal.v1 import control_pb2, control_pb2_grpc

LOG = logging.getLogger(__name__)

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Handler = Callable[[Backend, Req], Awaitable[Resp]]


class ControlServicer(control_pb2_grpc.ControlServicer):
    """The Control API of one manager.

    `leader_channel` finds the leader when a call hits NotLeader (None: such calls answer
    UNAVAILABLE); `raft_member`, `rotate_join_token`, `raft_view` and `read_barrier` are the
    hooks of hooks.py; `clock` stamps update statuses.
    """

    def __init__(
        self,
        store: Store,
        *,
        leader_channel: LeaderChannel | None = None,
        raft_member: RaftMemberCheck = has_manager_status,
        rotate_join_token: JoinTokenRotation = rotate_join_token,
        clock: Callable[[], float] = time.time,
        raft_view: RaftViewSource = no_raft_view,
        read_barrier: ReadBarrier = no_read_barrier,
    ) -> None:
        self._backend = Backend(store, raft_member, rotate_join_token, clock, raft_view)
        self._leader_channel = leader_channel
        self._read_barrier = read_barrier

    async def _serve(
        self,
        method: str,
        request: Req,
        context: grpc.aio.ServicerContext,
        handler: Handler[Req, Resp],
        *,
        read: bool = False,
    ) -> Resp:
        start = time.perf_counter()
        try:
            try:
                if read:
                    await self._read_barrier()
                response = await handler(self._backend, request)
            except NotLeader as not_leader:
                response = await self._forward(method, request, context, not_leader)
        except Exception as error:  # every failure becomes a status, in status_of
            code, message = status_of(error)
            if code == grpc.StatusCode.INTERNAL:
                LOG.exception("Control.%s failed", method)
            # Counted before the answer leaves: a caller that has it sees it counted.
            _count(method, code, start)
            await context.abort(code, message)
        _count(method, grpc.StatusCode.OK, start)
        return response

    async def _forward(
        self,
        method: str,
        request: Req,
        context: grpc.aio.ServicerContext,
        not_leader: NotLeader,
    ) -> Resp:
        if was_forwarded(context.invocation_metadata()):
            raise not_forwarding(not_leader, "this call was already forwarded once")
        if self._leader_channel is None:
            raise not_forwarding(not_leader, "this manager does not forward")
        channel = await self._leader_channel(not_leader)
        if channel is None:
            raise not_forwarding(not_leader, "the leader's Control address is not known")
        metrics.FORWARDED.labels(method=method).inc()
        response: Resp = await forward(channel, method, request, context.time_remaining())
        return response

    async def GetNode(
        self, request: control_pb2.GetNodeRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetNodeResponse:
        return await self._serve("GetNode", request, context, nodes.get_node, read=True)

    async def ListNodes(
        self, request: control_pb2.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListNodesResponse:
        return await self._serve("ListNodes", request, context, nodes.list_nodes, read=True)

    async def UpdateNode(
        self, request: control_pb2.UpdateNodeRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.UpdateNodeResponse:
        return await self._serve("UpdateNode", request, context, nodes.update_node)

    async def RemoveNode(
        self, request: control_pb2.RemoveNodeRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RemoveNodeResponse:
        return await self._serve("RemoveNode", request, context, nodes.remove_node)

    async def GetTask(
        self, request: control_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetTaskResponse:
        return await self._serve("GetTask", request, context, tasks.get_task, read=True)

    async def ListTasks(
        self, request: control_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListTasksResponse:
        return await self._serve("ListTasks", request, context, tasks.list_tasks, read=True)

    async def RemoveTask(
        self, request: control_pb2.RemoveTaskRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RemoveTaskResponse:
        return await self._serve("RemoveTask", request, context, tasks.remove_task)

    async def CreateService(
        self, request: control_pb2.CreateServiceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.CreateServiceResponse:
        return await self._serve("CreateService", request, context, services.create_service)

    async def GetService(
        self, request: control_pb2.GetServiceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetServiceResponse:
        return await self._serve("GetService", request, context, services.get_service, read=True)

    async def ListServices(
        self, request: control_pb2.ListServicesRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListServicesResponse:
        return await self._serve(
            "ListServices", request, context, services.list_services, read=True
        )

    async def UpdateService(
        self, request: control_pb2.UpdateServiceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.UpdateServiceResponse:
        return await self._serve("UpdateService", request, context, services.update_service)

    async def RemoveService(
        self, request: control_pb2.RemoveServiceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RemoveServiceResponse:
        return await self._serve("RemoveService", request, context, services.remove_service)

    async def CreateNetwork(
        self, request: control_pb2.CreateNetworkRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.CreateNetworkResponse:
        return await self._serve("CreateNetwork", request, context, networks.create_network)

    async def GetNetwork(
        self, request: control_pb2.GetNetworkRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetNetworkResponse:
        return await self._serve("GetNetwork", request, context, networks.get_network, read=True)

    async def ListNetworks(
        self, request: control_pb2.ListNetworksRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListNetworksResponse:
        return await self._serve(
            "ListNetworks", request, context, networks.list_networks, read=True
        )

    async def UpdateNetwork(
        self, request: control_pb2.UpdateNetworkRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.UpdateNetworkResponse:
        return await self._serve("UpdateNetwork", request, context, networks.update_network)

    async def RemoveNetwork(
        self, request: control_pb2.RemoveNetworkRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RemoveNetworkResponse:
        return await self._serve("RemoveNetwork", request, context, networks.remove_network)

    async def GetCluster(
        self, request: control_pb2.GetClusterRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetClusterResponse:
        return await self._serve("GetCluster", request, context, clusters.get_cluster, read=True)

    async def ListClusters(
        self, request: control_pb2.ListClustersRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListClustersResponse:
        return await self._serve(
            "ListClusters", request, context, clusters.list_clusters, read=True
        )

    async def UpdateCluster(
        self, request: control_pb2.UpdateClusterRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.UpdateClusterResponse:
        return await self._serve("UpdateCluster", request, context, clusters.update_cluster)

    async def GetSecret(
        self, request: control_pb2.GetSecretRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetSecretResponse:
        return await self._serve("GetSecret", request, context, payloads.get_secret, read=True)

    async def ListSecrets(
        self, request: control_pb2.ListSecretsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListSecretsResponse:
        return await self._serve("ListSecrets", request, context, payloads.list_secrets, read=True)

    async def CreateSecret(
        self, request: control_pb2.CreateSecretRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.CreateSecretResponse:
        return await self._serve("CreateSecret", request, context, payloads.create_secret)

    async def UpdateSecret(
        self, request: control_pb2.UpdateSecretRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.UpdateSecretResponse:
        return await self._serve("UpdateSecret", request, context, payloads.update_secret)

    async def RemoveSecret(
        self, request: control_pb2.RemoveSecretRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RemoveSecretResponse:
        return await self._serve("RemoveSecret", request, context, payloads.remove_secret)

    async def GetConfig(
        self, request: control_pb2.GetConfigRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetConfigResponse:
        return await self._serve("GetConfig", request, context, payloads.get_config, read=True)

    async def ListConfigs(
        self, request: control_pb2.ListConfigsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListConfigsResponse:
        return await self._serve("ListConfigs", request, context, payloads.list_configs, read=True)

    async def CreateConfig(
        self, request: control_pb2.CreateConfigRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.CreateConfigResponse:
        return await self._serve("CreateConfig", request, context, payloads.create_config)

    async def UpdateConfig(
        self, request: control_pb2.UpdateConfigRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.UpdateConfigResponse:
        return await self._serve("UpdateConfig", request, context, payloads.update_config)

    async def RemoveConfig(
        self, request: control_pb2.RemoveConfigRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RemoveConfigResponse:
        return await self._serve("RemoveConfig", request, context, payloads.remove_config)


def add_control_service(server: grpc.aio.Server, servicer: ControlServicer) -> None:
    """Adds Control to `server`, which must run an AuthorizationInterceptor with
    CONTROL_POLICIES."""
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)


def _count(method: str, code: grpc.StatusCode, start: float) -> None:
    metrics.REQUESTS.labels(method=method, code=code.name).inc()
    metrics.REQUEST_SECONDS.labels(method=method).observe(time.perf_counter() - start)
