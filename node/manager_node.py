"""The manager half of a node: the first manager's files and cluster bootstrap, a Manager's
configuration from node.json, node.json's peers kept current, and the cluster metrics.

Imported only in a process that is (or becomes) a manager: importing the manager registers
its Prometheus metrics, which a worker's /metrics should not carry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY

from manager import cluster_state
from manager.ca.client import NodeCredentials
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem
from manager.ca.tls import write_private_file
from manager.manager import Manager, ManagerConfig
from manager.store import EventAction, Kind, ReadTx, Store, WatchClosed, WriteTx
from manager.store.metrics import ClusterObjectsCollector
from node.identity import Identity, NodeState
from shoal.v1 import objects_pb2, specs_pb2, types_pb2

_exported: list[ClusterObjectsCollector] = []


def write_cluster_files(identity: Identity, ca: ClusterCA, spec: specs_pb2.ClusterSpec) -> None:
    """`swarmd init`: the Cluster object (with the CA key) that is replicated once this
    manager first leads; until then it waits on disk, root only. While it is there, an
    empty raft data dir starts a new raft group."""
    cluster = cluster_state.new_cluster(ca, spec)
    write_private_file(identity.bootstrap_file, cluster.SerializeToString())


def export_cluster_metrics(leader_store: Callable[[], Store | None]) -> None:
    """Tasks by state and services, counted from the leader's store at each scrape (once
    per process: a node may become a manager more than once)."""
    if not _exported:
        _exported.append(ClusterObjectsCollector(leader_store))
        REGISTRY.register(_exported[0])


def new_manager(
    identity: Identity,
    state: NodeState,
    credentials: NodeCredentials,
    control_socket: Path,
) -> Manager:
    """This node's Manager, configured from node.json."""
    bootstrap = identity.bootstrap_file.exists()
    config = manager_config(identity.state_dir, state, bootstrap, control_socket)
    return Manager(config, credentials)


def manager_config(
    state_dir: Path, state: NodeState, bootstrap: bool, control_socket: Path
) -> ManagerConfig:
    host, _, api_port = state.remote_api.rpartition(":")
    return ManagerConfig(
        state_dir=state_dir,
        advertise_host=host,
        remote_api_port=int(api_port),
        raft_port=int(state.raft_address.rpartition(":")[2]),
        join_port=int(state.join_address.rpartition(":")[2]),
        control_socket=control_socket,
        raft_peers=dict(state.raft_peers),
        bootstrap=bootstrap,
    )


async def bootstrap_cluster(manager: Manager, identity: Identity, state: NodeState) -> None:
    """On the first manager's first leadership: the Cluster object and its own Node."""
    bootstrap = identity.bootstrap_file
    if manager.store.view(cluster_state.current_cluster) is not None:
        bootstrap.unlink(missing_ok=True)
        return
    cluster = objects_pb2.Cluster.FromString(bootstrap.read_bytes())
    credentials, _ = identity.load()

    def create(tx: WriteTx) -> None:
        tx.create(cluster)
        tx.create(own_node(state, credentials))

    await manager.store.update(create)
    bootstrap.unlink(missing_ok=True)


def own_node(state: NodeState, credentials: NodeCredentials) -> objects_pb2.Node:
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


async def track_peers(store: Store, identity: Identity, state: NodeState) -> None:
    """Keep node.json's raft peers equal to the current managers, for the next start."""

    def managers(tx: ReadTx) -> list[objects_pb2.Node]:
        return [n for n in tx.list(objects_pb2.Node) if n.manager_status.raft_addr]

    def save(nodes: list[objects_pb2.Node]) -> None:
        peers = {n.id: n.manager_status.raft_addr for n in nodes if n.id != state.node_id}
        apis = sorted(n.manager_status.addr for n in nodes)
        if peers != state.raft_peers or apis != state.managers:
            state.raft_peers, state.managers = peers, apis
            identity.save_state(state)

    while True:  # a watch that ends (the store restored from a snapshot) starts over
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
        except WatchClosed:
            continue
        finally:
            events.close()
