"""swarmd's work: create a cluster, join one, or start again from the state directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import grpc

from agent.agent import Agent, AgentConfig
from manager import cluster_state
from manager.ca import base36
from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.client import NodeCredentials, join_cluster
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS, write_private_file
from manager.manager import Manager, ManagerConfig
from manager.store import EventAction, Kind, ReadTx, Store, WriteTx
from node.identity import Identity, NodeState
from node.renewal import CertificateRenewal
from runtime import metrics as runtime_metrics
from runtime.config import env_list
from shoal.v1 import objects_pb2, raft_pb2, raft_pb2_grpc, types_pb2

log = logging.getLogger(__name__)
JOIN_ATTEMPTS = 5


class SwarmdError(Exception):
    """A problem the user can fix; swarmd prints it as one line."""


class _Demoted(Exception):
    """The renewed certificate is a worker's: this node's manager stops."""


@dataclass
class Addresses:
    advertise_host: str
    remote_api_port: int
    raft_port: int
    join_port: int


def _hostname(given: str | None) -> str:
    return given or socket.gethostname()


def _raft_key_file(identity: Identity) -> Path:
    return identity.certs / "raft.key"


def manager_config(state_dir: Path, state: NodeState, joining: bool = False) -> ManagerConfig:
    host, _, api_port = state.remote_api.rpartition(":")
    return ManagerConfig(
        state_dir=state_dir,
        advertise_host=host,
        remote_api_port=int(api_port),
        raft_port=int(state.raft_address.rpartition(":")[2]),
        join_port=int(state.join_address.rpartition(":")[2]),
        control_socket=state_dir / "swarmd.sock",
        raft_peers=tuple(state.raft_peers),
        joining=joining,
    )


async def init(state_dir: Path, addresses: Addresses, hostname: str | None) -> None:
    identity = Identity(state_dir)
    if identity.exists:
        raise SwarmdError(f"{state_dir} already holds a node: start it with `swarmd run`")
    ca = ClusterCA.initialize()
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
    )
    identity.save(credentials, state)
    write_private_file(_raft_key_file(identity), cluster_state.raft_key(ca.root))
    # The Cluster object (with the CA key) is replicated once this manager first leads;
    # until it is committed, it waits on disk, readable by root only.
    cluster = cluster_state.new_cluster(ca)
    write_private_file(_bootstrap_file(identity), cluster.SerializeToString())
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


def _bootstrap_file(identity: Identity) -> Path:
    return identity.certs / "bootstrap-cluster.pb"


async def _bootstrap_cluster(manager: Manager, identity: Identity, state: NodeState) -> None:
    """On the first manager's first leadership: the Cluster object and its own Node."""
    bootstrap = _bootstrap_file(identity)
    if manager.store.view(cluster_state.current_cluster) is not None:
        bootstrap.unlink(missing_ok=True)
        return
    cluster = objects_pb2.Cluster.FromString(bootstrap.read_bytes())
    credentials, _ = identity.load()

    def create(tx: WriteTx) -> None:
        tx.create(cluster)
        tx.create(_own_node(state, credentials))

    await manager.store.update(create)
    bootstrap.unlink(missing_ok=True)


def _own_node(state: NodeState, credentials: NodeCredentials) -> objects_pb2.Node:
    node = objects_pb2.Node(id=state.node_id, role=types_pb2.MANAGER)
    node.certificate.role = types_pb2.MANAGER
    node.certificate.certificate = certificate_pem(credentials.certificate)
    node.certificate.cn = state.node_id
    node.spec.desired_role = types_pb2.MANAGER
    node.description.hostname = state.hostname
    node.status.state = types_pb2.NodeStatus.UNKNOWN  # READY once its agent has a session
    node.status.addr = state.remote_api.rpartition(":")[0]
    node.manager_status.raft_id = 1
    node.manager_status.addr = state.remote_api
    node.manager_status.raft_addr = state.raft_address
    node.manager_status.leader = True
    return node


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
        state.raft_peers = [
            m.raft_addr for m in response.members if m.raft_addr != state.raft_address
        ]
        state.managers = [m.addr for m in response.members]
        identity.save(credentials, state)
        write_private_file(_raft_key_file(identity), response.raft_key)
    else:
        join_host = join_address.rpartition(":")[0]
        state.managers = [manager_api or f"{join_host}:{addresses.remote_api_port}"]
        identity.save(credentials, state)
    role = node.role.name.lower()
    print(f"This node joined cluster {node.cluster_id} as a {role} ({node.node_id}).", flush=True)


async def _raft_join(
    credentials: NodeCredentials, address: str, state: NodeState
) -> raft_pb2.JoinResponse:
    request = raft_pb2.JoinRequest(addr=state.remote_api, raft_addr=state.raft_address)
    for _ in range(JOIN_ATTEMPTS):
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
                message = f"joining the raft group at {address} failed: {exc.details()}"
                raise SwarmdError(message) from None
    raise SwarmdError(f"could not reach the raft leader after {JOIN_ATTEMPTS} attempts")


async def _track_peers(store: Store, identity: Identity, state: NodeState) -> None:
    """Keep node.json's raft peers equal to the current managers, for the next start."""

    def managers(tx: ReadTx) -> list[objects_pb2.Node]:
        return [n for n in tx.list(objects_pb2.Node) if n.manager_status.raft_addr]

    def save(nodes: list[objects_pb2.Node]) -> None:
        peers = sorted(n.manager_status.raft_addr for n in nodes)
        peers = [p for p in peers if p != state.raft_address]
        apis = sorted(n.manager_status.addr for n in nodes)
        if peers != state.raft_peers or apis != state.managers:
            state.raft_peers, state.managers = peers, apis
            identity.save_state(state)

    nodes, events = store.view_and_watch(managers, kinds=(Kind.NODE,))
    try:
        save(nodes)
        async for event in events:
            if event.action is not EventAction.UPDATE or event.old is None:
                save(store.view(managers))
                continue
            old, new = event.old, event.new
            assert isinstance(old, objects_pb2.Node) and isinstance(new, objects_pb2.Node)
            if old.manager_status != new.manager_status:
                save(store.view(managers))
    finally:
        events.close()


class _CredentialsHolder:
    """The node's current credentials: renewal replaces them, new channels use them."""

    def __init__(self, credentials: NodeCredentials) -> None:
        self.current = credentials

    def channel(self, address: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            address, self.current.channel_credentials(), MANAGER_CHANNEL_OPTIONS
        )


def agent_config(state_dir: Path, state: NodeState, holder: _CredentialsHolder) -> AgentConfig:
    """Every node runs an agent; its engine keeps images and containers in the state dir."""
    return AgentConfig(
        node_id=state.node_id,
        managers=tuple(state.managers or [state.remote_api]),
        channel_factory=holder.channel,
        engine_root=state_dir / "engine",
        hostname=state.hostname,
        insecure_registries=env_list("SHOAL_INSECURE_REGISTRIES"),
    )


def serve_metrics(address: str | None) -> None:
    """Prometheus metrics of this process (manager, agent, engine) on http://ADDRESS/metrics."""
    if not address:
        return
    from prometheus_client import start_http_server

    runtime_metrics.enable()
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")


async def run(state_dir: Path, joining: bool = False, metrics_address: str | None = None) -> None:
    identity = Identity(state_dir)
    if not identity.exists:
        raise SwarmdError(f"{state_dir} holds no node: create one with `swarmd init` or join")
    credentials, state = identity.load()
    holder = _CredentialsHolder(credentials)
    serve_metrics(metrics_address)
    if state.role != Role.MANAGER.ou:
        await _run_worker(identity, state, holder)
        return
    raft_key = _raft_key_file(identity).read_bytes()
    fresh_join = joining or (not (state_dir / "raft").exists() and bool(state.raft_peers))
    manager = Manager(manager_config(state_dir, state, fresh_join), credentials, raft_key)

    async def on_leader() -> None:
        await _bootstrap_cluster(manager, identity, state)

    async def renewed(credentials: NodeCredentials) -> None:
        holder.current = credentials
        if credentials.identity.role is not Role.MANAGER:
            raise _Demoted()
        manager.reload_credentials(credentials)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(manager.run(on_leader))
            group.create_task(_track_peers(manager.store, identity, state))
            await manager.ready.wait()
            log.info("manager %s serving on %s", state.node_id, state.remote_api)
            with contextlib.suppress(FileNotFoundError):
                os.chmod(state_dir / "swarmd.sock", 0o600)
            group.create_task(CertificateRenewal(identity, state, renewed).run())
            group.create_task(Agent(agent_config(state_dir, state, holder)).run())
    except ExceptionGroup as failure:
        _, other = failure.split(_Demoted)
        if other is not None:
            raise other from None
        raise SwarmdError(
            "this node was demoted to a worker and its manager stopped: start it again with "
            "`swarmd run` to continue as a worker"
        ) from None


async def _run_worker(identity: Identity, state: NodeState, holder: _CredentialsHolder) -> None:
    async def renewed(credentials: NodeCredentials) -> None:
        holder.current = credentials

    log.info("worker %s: agent starting, managers %s", state.node_id, state.managers)
    async with asyncio.TaskGroup() as group:
        group.create_task(Agent(agent_config(identity.state_dir, state, holder)).run())
        group.create_task(CertificateRenewal(identity, state, renewed).run())
