"""The Cluster object: what `swarmd init` creates, and the CA state every manager keeps in
step with it (root CA and key, join tokens, certificate lifetime, all replicated by Raft).
"""

from __future__ import annotations

import logging

from google.protobuf.duration_pb2 import Duration

from manager.ca.certificates import node_cert_lifetime
from manager.ca.cluster_ca import ClusterCA
from manager.ca.join_tokens import JoinTokens
from manager.ca.root_ca import RootCA
from manager.store import EventAction, Kind, ReadTx, Store, WatchClosed
from shoal.v1 import objects_pb2, specs_pb2

DEFAULT_NAME = "default"
RAFT_KEY_INFO = b"shoal raft key v1"
log = logging.getLogger(__name__)


def default_spec() -> specs_pb2.ClusterSpec:
    """SwarmKit's defaults (REFERENCE.md section 1)."""
    spec = specs_pb2.ClusterSpec()
    spec.annotations.name = DEFAULT_NAME
    spec.orchestration.task_history_retention_limit = 5
    spec.dispatcher.heartbeat_period.CopyFrom(Duration(seconds=5))
    spec.ca_config.node_cert_expiry.CopyFrom(Duration(seconds=90 * 86400))
    return spec


def new_cluster(ca: ClusterCA, spec: specs_pb2.ClusterSpec | None = None) -> objects_pb2.Cluster:
    cluster = objects_pb2.Cluster(id=ca.cluster_id)
    cluster.spec.CopyFrom(spec or default_spec())
    cluster.root_ca.CopyFrom(ca.root.to_proto(ca.join_tokens.to_proto()))
    cluster.default_address_pool.append("10.0.0.0/8")
    cluster.subnet_size = 24
    return cluster


def cluster_ca(cluster: objects_pb2.Cluster) -> ClusterCA:
    root = RootCA.from_proto(cluster.root_ca)
    return ClusterCA(
        cluster_id=cluster.id,
        root=root,
        join_tokens=JoinTokens.from_proto(cluster.root_ca.join_tokens),
        node_cert_lifetime=node_cert_lifetime(cluster.spec),
    )


def current_cluster(tx: ReadTx) -> objects_pb2.Cluster | None:
    return tx.get_by_name(objects_pb2.Cluster, DEFAULT_NAME)


async def follow_cluster_ca(store: Store, ca: ClusterCA) -> None:
    """Keep `ca` (shared with the CA servicers) in step with the stored Cluster: a rotated
    join token is refused on every manager from the commit on. A watch that ends (the store
    restored from the leader's snapshot, or a watch that fell behind) starts over from the
    store."""
    while True:
        current, events = store.view_and_watch(current_cluster, kinds=(Kind.CLUSTER,))
        try:
            if current is not None:
                _follow(ca, current)
            async for event in events:
                if event.action is not EventAction.DELETE:
                    assert isinstance(event.object, objects_pb2.Cluster)
                    _follow(ca, event.object)
        except WatchClosed as exc:
            log.info("cluster CA: %s; reading the cluster again", exc)
        finally:
            events.close()


def _follow(ca: ClusterCA, cluster: objects_pb2.Cluster) -> None:
    if cluster.id == ca.cluster_id:
        ca.join_tokens = JoinTokens.from_proto(cluster.root_ca.join_tokens)
        ca.node_cert_lifetime = node_cert_lifetime(cluster.spec)
