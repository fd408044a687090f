"""swarmd's work: create a cluster, join one, or start again from the state directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.protobuf.duration_pb2 import Duration

from agent.agent import Agent, AgentConfig
from manager.ca import base36
from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.client import NodeCredentials, join_cluster
from manager.ca.cluster_ca import ClusterCA
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS
from node.identity import Identity, NodeState
from node.renewal import CertificateRenewal
from runtime import metrics as runtime_metrics
from runtime.config import env_list
from shoal.v1 import objects_pb2, raft_pb2, raft_pb2_grpc, types_pb2

if TYPE_CHECKING:
    from manager.manager import Manager
    from manager.store import Store

log = logging.getLogger(__name__)
JOIN_ATTEMPTS = 5
JOIN_RETRY_SECONDS = 1.0
PROMOTION_RETRY_SECONDS = (1.0, 30.0)  # first and longest wait after a failed raft join


class SwarmdError(Exception):
    """A problem the user can fix; swarmd prints it as one line."""


class PromotionError(Exception):
    """A promoted worker could not join the raft group yet (retried)."""


@dataclass
class Addresses:
    advertise_host: str
    remote_api_port: int
    raft_port: int
    join_port: int


def _hostname(given: str | None) -> str:
    return given or socket.gethostname()


async def init(
    state_dir: Path,
    addresses: Addresses,
    hostname: str | None,
    heartbeat_period: Duration | None = None,
) -> None:
    from manager import cluster_state  # a manager's process only: see node/manager_node.py
    from node import manager_node

    spec = cluster_state.default_spec()
    if heartbeat_period is not None:
        if heartbeat_period.ToNanoseconds() <= 0:
            raise SwarmdError("the heartbeat period must be positive")
        spec.dispatcher.heartbeat_period.CopyFrom(heartbeat_period)
    identity = Identity(state_dir)
    if identity.exists:
        raise SwarmdError(f"{state_dir} already holds a node: start it with `swarmd run`")
    ca = ClusterCA.initialize(spec)
    node_id = base36.new_id()
    key = generate_node_key()
    certificate = ca.issue(create_csr(key), node_id, Role.MANAGER)
    credentials = NodeCredentials(key, certificate, RootCA(ca.root.certificate))
    host = addresses.advertise_host
    state = NodeState(
        node_id=node_id,
        role=Role.MANAGER.ou,
        cluster_id=ca.cluster_id,
        hostname=_hostname(hostname),
        remote_api=f"{host}:{addresses.remote_api_port}",
        raft_address=f"{host}:{addresses.raft_port}",
        join_address=f"{host}:{addresses.join_port}",
        raft_member=True,
    )
    identity.save(credentials, state)
    manager_node.write_cluster_files(identity, ca, spec)
    print(
        f"Cluster {ca.cluster_id} initialized; this node ({node_id}) is its first manager.",
        flush=True,
    )
    print(
        f"Join workers:  swarmd join --token {ca.join_tokens.worker} {state.join_address}",
        flush=True,
    )
    print(
        f"Join managers: swarmd join --token {ca.join_tokens.manager} {state.join_address}",
        flush=True,
    )


async def force_new_cluster(state_dir: Path) -> None:
    """`swarmd init --force-new-cluster` on a stopped manager: the only raft member from
    now on, its store kept (after most managers were lost for good)."""
    from manager.raft.errors import RaftError
    from manager.raft.recovery import force_new_cluster as make_only_member

    identity = Identity(state_dir)
    if not identity.exists:
        raise SwarmdError(
            f"{state_dir} holds no node: --force-new-cluster restarts an existing manager"
        )
    credentials, state = identity.load()
    if credentials.identity.role is not Role.MANAGER or not state.raft_member:
        raise SwarmdError(f"node {state.node_id} is not a manager: it holds no store to keep")
    try:
        gone = make_only_member(state_dir / "raft", state.node_id)
    except RaftError as exc:
        raise SwarmdError(f"--force-new-cluster: {exc}") from None
    state.raft_peers = {}
    state.managers = [state.remote_api]
    identity.save_state(state)
    removed = ", ".join(gone) or "none"
    print(
        f"This manager ({state.node_id}) is now the only raft member; removed: {removed}. "
        "Demote or remove those nodes, then add managers again.",
        flush=True,
    )


async def join(
    state_dir: Path,
    token: str,
    join_address: str,
    addresses: Addresses,
    hostname: str | None,
    manager_api: str | None,
) -> None:
    identity = Identity(state_dir)
    if identity.exists:
        raise SwarmdError(f"{state_dir} already holds a node: start it with `swarmd run`")
    key = generate_node_key()
    credentials = await join_cluster(join_address, token, key)
    node = credentials.identity
    host = addresses.advertise_host
    state = NodeState(
        node_id=node.node_id,
        role=node.role.ou,
        cluster_id=node.cluster_id,
        hostname=_hostname(hostname),
        remote_api=f"{host}:{addresses.remote_api_port}",
        raft_address=f"{host}:{addresses.raft_port}",
        join_address=f"{host}:{addresses.join_port}",
    )
    if node.role is Role.MANAGER:
        target = manager_api or f"{join_address.rpartition(':')[0]}:{addresses.remote_api_port}"
        response = await _raft_join(credentials, target, state)
        _joined_raft(state, response)
        identity.save(credentials, state)
    else:
        join_host = join_address.rpartition(":")[0]
        state.managers = [manager_api or f"{join_host}:{addresses.remote_api_port}"]
        identity.save(credentials, state)
    role = node.role.name.lower()
    print(f"This node joined cluster {node.cluster_id} as a {role} ({node.node_id}).", flush=True)


def _joined_raft(state: NodeState, response: raft_pb2.JoinResponse) -> None:
    """Record what a leader's answer to Join says: a member now, and who the others are."""
    state.raft_member = True
    state.raft_peers = {
        m.node_id: m.raft_addr for m in response.members if m.node_id != state.node_id
    }
    state.managers = [m.addr for m in response.members]


async def _raft_join(
    credentials: NodeCredentials, address: str, state: NodeState
) -> raft_pb2.JoinResponse:
    request = raft_pb2.JoinRequest(addr=state.remote_api, raft_addr=state.raft_address)
    for attempt in range(JOIN_ATTEMPTS):
        async with grpc.aio.secure_channel(
            address, credentials.channel_credentials(), MANAGER_CHANNEL_OPTIONS
        ) as channel:
            try:
                stub = raft_pb2_grpc.RaftMembershipStub(channel)
                response: raft_pb2.JoinResponse = await stub.Join(request, timeout=30)
                return response
            except grpc.aio.AioRpcError as exc:
                details = exc.details() or ""
                _, found, leader = details.partition("the leader is at ")
                if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and found and leader:
                    address = leader
                    continue
                if exc.code() is grpc.StatusCode.UNAVAILABLE and attempt + 1 < JOIN_ATTEMPTS:
                    await asyncio.sleep(JOIN_RETRY_SECONDS)  # an election, a change in flight
                    continue
                message = f"joining the raft group at {address} failed: {exc.details()}"
                raise SwarmdError(message) from None
    raise SwarmdError(f"could not reach the raft leader after {JOIN_ATTEMPTS} attempts")


class _CredentialsHolder:
    """The node's current credentials: renewal replaces them, new channels use them."""

    def __init__(self, credentials: NodeCredentials) -> None:
        self.current = credentials

    def channel(self, address: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            address, self.current.channel_credentials(), MANAGER_CHANNEL_OPTIONS
        )


def agent_config(
    state_dir: Path,
    state: NodeState,
    holder: _CredentialsHolder,
    on_node: Callable[[objects_pb2.Node], None] | None = None,
) -> AgentConfig:
    """Every node runs an agent; its engine keeps images and containers in the state dir."""
    return AgentConfig(
        node_id=state.node_id,
        managers=tuple(state.managers or [state.remote_api]),
        channel_factory=holder.channel,
        engine_root=state_dir / "engine",
        hostname=state.hostname,
        insecure_registries=env_list("SHOAL_INSECURE_REGISTRIES"),
        on_node=on_node,
        # Every node records its advertise address as the host of its remote API address.
        data_address=(state.remote_api or "").rpartition(":")[0],
    )


def serve_metrics(address: str | None) -> None:
    """Prometheus metrics of this process (manager, agent, engine) on http://ADDRESS/metrics."""
    if not address:
        return
    from prometheus_client import start_http_server

    runtime_metrics.enable()
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")


async def run(
    state_dir: Path,
    metrics_address: str | None = None,
    control_socket: Path | None = None,
) -> None:
    identity = Identity(state_dir)
    if not identity.exists:
        raise SwarmdError(f"{state_dir} holds no node: create one with `swarmd init` or join")
    credentials, state = identity.load()
    serve_metrics(metrics_address)
    holder = _CredentialsHolder(credentials)
    await _Node(identity, state, holder, control_socket, bool(metrics_address)).run()


class _Node:
    """A node's life: its agent always, and a manager beside it while its certificate says
    manager. A role change reaches the node through its session (the node object's role),
    which renews the certificate at once; the new certificate starts or stops the manager
    without a restart (a promoted worker joins the raft group first; a demoted manager,
    already out of it, forgets its raft state)."""

    def __init__(
        self,
        identity: Identity,
        state: NodeState,
        holder: _CredentialsHolder,
        control_socket: Path | None,
        metrics: bool = False,
    ) -> None:
        self.identity = identity
        self.control_socket = control_socket or identity.default_control_socket
        self.metrics = metrics
        self.state = state
        self.holder = holder
        self.renewal = CertificateRenewal(identity, state, self._renewed)
        self.manager: Manager | None = None
        self._role_changed = asyncio.Event()
        self._agent_started = False
        self._group: asyncio.TaskGroup | None = None

    def leader_store(self) -> Store | None:
        """The store while this node's manager leads (for the cluster's metrics), else None."""
        manager = self.manager
        return manager.store if manager is not None and manager.raft.is_leader() else None

    @property
    def _certified_manager(self) -> bool:
        return self.holder.current.identity.role is Role.MANAGER

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self.renewal.run())
            group.create_task(self._follow_role())

    def _observe(self, node: objects_pb2.Node) -> None:
        """The agent's view of this node: a recorded role the certificate lacks -> renew."""
        if (node.role == types_pb2.MANAGER) != self._certified_manager:
            log.info(
                "role changed to %s: renewing the certificate", types_pb2.NodeRole.Name(node.role)
            )
            self.renewal.renew_now()

    async def _renewed(self, credentials: NodeCredentials) -> None:
        self.holder.current = credentials
        if self.manager is not None and self._certified_manager:
            self.manager.reload_credentials(credentials)
        self._role_changed.set()

    def _start_agent(self) -> None:
        if self._agent_started:
            return
        assert self._group is not None
        self._agent_started = True
        config = agent_config(self.identity.state_dir, self.state, self.holder, self._observe)
        self._group.create_task(Agent(config).run())

    async def _follow_role(self) -> None:
        retry = PROMOTION_RETRY_SECONDS[0] / 2
        while True:
            self._role_changed.clear()
            if self._certified_manager:
                try:
                    await self._be_manager()
                except PromotionError as exc:
                    self._start_agent()
                    retry = min(retry * 2, PROMOTION_RETRY_SECONDS[1])
                    log.warning("%s; retrying in %.0f s", exc, retry)
                    await asyncio.sleep(retry)
                continue
            retry = PROMOTION_RETRY_SECONDS[0] / 2
            self._forget_raft()
            log.info(
                "worker %s: agent running, managers %s", self.state.node_id, self.state.managers
            )
            self._start_agent()
            await self._role_changed.wait()

    async def _be_manager(self) -> None:
        from node import manager_node  # workers never load the manager (nor its metrics)

        if self.metrics:
            manager_node.export_cluster_metrics(self.leader_store)
        if not self.state.raft_member:
            await self._join_raft()  # a promoted worker
        manager = manager_node.new_manager(
            self.identity, self.state, self.holder.current, self.control_socket
        )

        async def on_leader() -> None:
            await manager_node.bootstrap_cluster(manager, self.identity, self.state)

        self.manager = manager
        try:
            async with asyncio.TaskGroup() as group:
                serving = group.create_task(manager.run(on_leader))
                tracking = group.create_task(
                    manager_node.track_peers(manager.store, self.identity, self.state)
                )
                await manager.ready.wait()
                log.info("manager %s serving on %s", self.state.node_id, self.state.remote_api)
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(self.control_socket, 0o600)
                self._start_agent()
                while self._certified_manager:
                    await self._role_changed.wait()
                    self._role_changed.clear()
                log.info("demoted to a worker: stopping this node's manager")
                serving.cancel()
                tracking.cancel()
        finally:
            self.manager = None

    async def _join_raft(self) -> None:
        """Promotion: join the raft group through the leader (any manager redirects to it)."""
        failures = []
        for address in self.state.managers:
            try:
                response = await _raft_join(self.holder.current, address, self.state)
            except SwarmdError as exc:
                failures.append(str(exc))
                continue
            _joined_raft(self.state, response)
            self.identity.save_state(self.state)
            log.info("promoted: joined the raft group (%d members)", len(response.members))
            return
        raise PromotionError("promoted, but no manager let this node join: " + "; ".join(failures))

    def _forget_raft(self) -> None:
        """A worker keeps no raft state: a demoted manager's log, key and socket go (it has
        left the group: the CA issues a worker certificate only after that)."""
        state_dir = self.identity.state_dir
        if not self.state.raft_member and not (state_dir / "raft").exists():
            return
        shutil.rmtree(state_dir / "raft", ignore_errors=True)
        self.control_socket.unlink(missing_ok=True)
        self.state.raft_member = False
        self.state.raft_peers = {}
        self.identity.save_state(self.state)
        log.info("left the raft group: raft state removed")
