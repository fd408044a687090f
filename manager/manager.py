"""One manager: raft + the replicated store, the gRPC API, and the leader-only subsystems.

Every manager serves the API (the cluster port with mutual TLS, the join port for nodes that
have no certificate yet, and Control on a root-only unix socket); only the raft leader runs
the subsystems that write on their own (scheduler, orchestrators, allocator, dispatcher's
timers). They start after a barrier entry of the new term commits and are cancelled the
moment leadership is lost, so two managers never act at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.grpc_limits import MESSAGE_LIMITS
from manager import cluster_state
from manager.allocator import Allocator
from manager.ca.auth import AuthorizationInterceptor, Authorizer, Policy
from manager.ca.client import NodeCredentials
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role
from manager.ca.server import CA_POLICIES, add_ca_services
from manager.ca.store_registry import StoreNodeRegistry
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS
from manager.controlapi import (
    CONTROL_POLICIES,
    ControlServicer,
    StoreLeaderChannels,
    add_control_service,
)
from manager.controlapi.hooks import RaftView
from manager.dispatcher import (
    DISPATCHER_POLICIES,
    Dispatcher,
    add_dispatcher_service,
)
from manager.logbroker import LOGS_POLICIES, LogBroker, add_log_broker_service, add_logs_service
from manager.node_rpc import certificate_identity
from manager.node_standing import raft_standing, store_standing
from manager.orchestrator import Orchestrators
from manager.ports import JOIN_PORT, RAFT_PORT, REMOTE_API_PORT
from manager.raft import Raft, RaftConfig
from manager.raft_membership import POLICIES as RAFT_POLICIES
from manager.raft_membership import RaftMembershipServicer, raft_addresses
from manager.reloadable_tls import ReloadableServerCredentials
from manager.resource_allocator import RESOURCE_POLICIES, add_resource_allocator_service
from manager.role_manager import RaftRemovalCheck, RoleManager
from manager.scheduler.service import SchedulerService
from manager.store import NotLeader, Store
from shoal.v1 import objects_pb2, raft_pb2_grpc

log = logging.getLogger(__name__)

JOIN_STREAMS_PER_PEER = 16

CLUSTER_WAIT_SECONDS = 60.0


class LeaderSubsystem(Protocol):
    async def run(self) -> None: ...


@dataclass
class ManagerConfig:
    state_dir: Path
    advertise_host: str
    remote_api_port: int = REMOTE_API_PORT
    raft_port: int = RAFT_PORT
    join_port: int = JOIN_PORT
    control_socket: Path | None = None
    # The other managers' raft addresses by node id (an address book, see RaftConfig).
    raft_peers: dict[str, str] = field(default_factory=dict)
    # Start a new raft group when the raft data dir is empty (`swarmd init`).
    bootstrap: bool = False

    @property
    def remote_api_address(self) -> str:
        return f"{self.advertise_host}:{self.remote_api_port}"

    @property
    def raft_address(self) -> str:
        return f"{self.advertise_host}:{self.raft_port}"

    @property
    def join_address(self) -> str:
        return f"{self.advertise_host}:{self.join_port}"


class Manager:
    def __init__(self, config: ManagerConfig, credentials: NodeCredentials) -> None:
        self.config = config
        self.credentials = credentials
        self.store = Store()
        self.raft = Raft(
            RaftConfig(
                node_id=credentials.identity.node_id,
                address=config.raft_address,
                peers=config.raft_peers,
                data_dir=config.state_dir / "raft",
                bootstrap=config.bootstrap,
            ),
            self.store,
            credentials,
            standing=raft_standing(self.store),
            addresses=raft_addresses(self.store),
        )
        self.store.proposer = self.raft
        # Serves agents on every manager, works (and answers) only while this one leads.
        self.dispatcher = Dispatcher(self.store)
        # Like the dispatcher: agents listen and publish here, it answers while leading.
        self.log_broker = LogBroker(self.store)
        self.ca: ClusterCA | None = None
        self.authorizer: Authorizer | None = None
        self.health = health.aio.HealthServicer()
        self.leader_channels: StoreLeaderChannels | None = None
        self._servers: list[grpc.aio.Server] = []
        self._server_tls: list[ReloadableServerCredentials] = []
        self.ready = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, on_leader: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve until cancelled; `on_leader` runs once each time this manager becomes the
        leader, before the subsystems start (swarmd's init writes the Cluster there)."""
        await self.raft.start()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow_leadership(on_leader))
                group.create_task(self._raft_failure())
                cluster = await self._wait_for_cluster()
                self.ca = cluster_state.cluster_ca(cluster)
                self.authorizer = Authorizer(
                    self.ca.root, self.ca.cluster_id, standing=store_standing(self.store)
                )
                group.create_task(cluster_state.follow_cluster_ca(self.store, self.ca))
                await self._serve()
                self.ready.set()
                await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        finally:
            for server in self._servers:
                await server.stop(grace=1)
            if self.leader_channels is not None:
                await self.leader_channels.close()
            await self.raft.stop()

    async def _raft_failure(self) -> None:
        failure = await self.raft.wait_stopped()
        if failure is not None:
            raise failure

    async def _wait_for_cluster(self) -> objects_pb2.Cluster:
        """The Cluster object, once this manager's store has it (at once on the first
        manager, after catching up on a joining one)."""
        deadline = asyncio.get_running_loop().time() + CLUSTER_WAIT_SECONDS
        while (cluster := self.store.view(cluster_state.current_cluster)) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no Cluster object replicated to this manager in time")
            await asyncio.sleep(0.05)
        return cluster

    async def _follow_leadership(self, on_leader: Callable[[], Awaitable[None]] | None) -> None:
        running: asyncio.Task[None] | None = None
        async for leadership in self.raft.leadership.changes():
            if leadership.is_leader and running is None:
                log.info("leader for term %d: starting the leader subsystems", leadership.term)
                running = asyncio.create_task(self._lead(on_leader))
            elif not leadership.is_leader and running is not None:
                log.info("leadership lost: stopping the leader subsystems")
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                running = None

    async def _lead(self, on_leader: Callable[[], Awaitable[None]] | None) -> None:
        if on_leader is not None:
            await on_leader()
        subsystems: list[LeaderSubsystem] = [
            self.dispatcher,
            self.log_broker,
            Allocator(self.store),
            SchedulerService(self.store),
            Orchestrators(self.store),
            RoleManager(self.store, self.raft, self.raft.config.node_id),
        ]
        async with asyncio.TaskGroup() as group:
            for subsystem in subsystems:
                group.create_task(subsystem.run())

    # -- gRPC ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        assert self.ca is not None and self.authorizer is not None
        cert_pem = certificate_pem(self.credentials.certificate)
        key_pem = private_key_pem(self.credentials.key)
        registry = StoreNodeRegistry(self.store)

        policies: dict[str, Policy] = {
            **CA_POLICIES,
            **RAFT_POLICIES,
            **DISPATCHER_POLICIES,
            **CONTROL_POLICIES,
            **LOGS_POLICIES,
            **RESOURCE_POLICIES,
        }

        def connect(address: str) -> grpc.aio.Channel:
            return grpc.aio.secure_channel(
                address, self.credentials.channel_credentials(), MANAGER_CHANNEL_OPTIONS
            )

        self.leader_channels = StoreLeaderChannels(self.store, connect)
        self.control = ControlServicer(
            self.store,
            leader_channel=self.leader_channels,
            raft_member=RaftRemovalCheck(self.raft, self.raft.config.node_id),
            raft_view=self._raft_view,
            read_barrier=self.raft.read_barrier,
        )

        def build(tls: ReloadableServerCredentials, address: str) -> grpc.aio.Server:
            assert self.authorizer is not None
            options = list(MESSAGE_LIMITS)
            if address == self.config.join_address:
                # Open to nodes without a certificate: a bounded number of streams each.
                options.append(("grpc.max_concurrent_streams", JOIN_STREAMS_PER_PEER))
            server = grpc.aio.server(
                interceptors=[AuthorizationInterceptor(self.authorizer, policies)],
                options=options,
            )
            assert self.ca is not None
            add_ca_services(server, self.ca, registry, self.authorizer)
            raft_pb2_grpc.add_RaftMembershipServicer_to_server(
                RaftMembershipServicer(self.store, self.raft, self.authorizer), server
            )
            add_dispatcher_service(server, self.dispatcher, certificate_identity(self.authorizer))
            add_resource_allocator_service(
                server, self.store, certificate_identity(self.authorizer)
            )
            add_log_broker_service(server, self.log_broker, certificate_identity(self.authorizer))
            add_logs_service(server, self.log_broker, self._leader_channel)
            add_control_service(server, self.control)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            server.add_secure_port(address, tls.credentials)
            return server

        cluster_tls = ReloadableServerCredentials(cert_pem, key_pem, self.ca.root.cert_pem)
        join_tls = ReloadableServerCredentials(cert_pem, key_pem, None)
        self._server_tls = [cluster_tls, join_tls]
        cluster = build(cluster_tls, self.config.remote_api_address)
        join = build(join_tls, self.config.join_address)
        self._servers = [cluster, join]
        for server in self._servers:
            await server.start()
        if self.config.control_socket is not None:
            await self._serve_control_socket(self.config.control_socket)

    async def _leader_channel(self) -> grpc.aio.Channel | None:
        """A channel to the leader's API (for calls a follower relays), None if unknown."""
        if self.leader_channels is None:
            return None
        return await self.leader_channels(NotLeader(self.raft.leader_address()))

    async def _raft_view(self) -> RaftView:
        status = await self.raft.status()
        return RaftView(leader=status.leader, reachable=frozenset(status.reachable))

    def reload_credentials(self, credentials: NodeCredentials) -> None:
        """Serve and dial with a renewed manager certificate from now on (new connections;
        established ones keep the old certificate, still valid)."""
        if credentials.identity.role is not Role.MANAGER:
            raise ValueError("a manager serves only with a manager certificate")
        self.credentials = credentials
        self.raft.reload_credentials(credentials)
        cert_pem = certificate_pem(credentials.certificate)
        key_pem = private_key_pem(credentials.key)
        for tls in self._server_tls:
            tls.replace(cert_pem, key_pem)

    async def _serve_control_socket(self, path: Path) -> None:
        """Control for local root (`swarmctl` on a manager): file mode 0600, owner root."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = grpc.aio.server(options=MESSAGE_LIMITS)
        add_control_service(server, self.control)
        add_logs_service(server, self.log_broker, self._leader_channel)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        old_umask = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix://{path}")
            await server.start()
        finally:
            os.umask(old_umask)
        self._servers.append(server)
