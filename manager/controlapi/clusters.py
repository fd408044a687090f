"""The cluster object: get, list, update (spec and join-token rotation).

The root CA's private key and the unlock keys never leave the managers through Control.
"""

from __future__ import annotations

from manager.ca.roles import Role
from manager.controlapi.backend import Backend
from manager.controlapi.errors import InvalidArgument, ObjectNotFound
from manager.controlapi.filters import matches
from manager.controlapi.requests import required_id, required_spec, required_version
from manager.controlapi.validation import check_cluster_spec
from manager.store import ReadTx, VersionConflict, WriteTx
from shoal.v1 import control_pb2, objects_pb2


def redacted(cluster: objects_pb2.Cluster) -> objects_pb2.Cluster:
    cluster.root_ca.ClearField("ca_key")
    cluster.ClearField("unlock_keys")
    return cluster


def _get(tx: ReadTx, cluster_id: str) -> objects_pb2.Cluster:
    cluster = tx.get(objects_pb2.Cluster, cluster_id)
    if cluster is None:
        raise ObjectNotFound(f"cluster {cluster_id!r} not found")
    return cluster


async def get_cluster(
    backend: Backend, request: control_pb2.GetClusterRequest
) -> control_pb2.GetClusterResponse:
    cluster_id = required_id("cluster_id", request.cluster_id)
    cluster = backend.read(lambda tx: _get(tx, cluster_id))
    return control_pb2.GetClusterResponse(cluster=redacted(cluster))


async def list_clusters(
    backend: Backend, request: control_pb2.ListClustersRequest
) -> control_pb2.ListClustersResponse:
    filters = request.filters
    clusters = backend.read(lambda tx: tx.list(objects_pb2.Cluster))
    return control_pb2.ListClustersResponse(
        clusters=[
            redacted(c)
            for c in clusters
            if matches(filters, c.id, (c.spec.annotations.name,), c.spec.annotations.labels)
        ]
    )


async def update_cluster(
    backend: Backend, request: control_pb2.UpdateClusterRequest
) -> control_pb2.UpdateClusterResponse:
    cluster_id = required_id("cluster_id", request.cluster_id)
    version = required_version("cluster_version", request.cluster_version)
    required_spec(request)
    check_cluster_spec(request.spec)
    rotation = request.rotation
    if rotation.manager_unlock_key:
        raise InvalidArgument(
            "rotation.manager_unlock_key", "Shoal has no autolock, so there is no unlock key"
        )

    def update(tx: WriteTx) -> objects_pb2.Cluster:
        cluster = _get(tx, cluster_id)
        if cluster.meta.version != version:
            raise VersionConflict("cluster", cluster_id, cluster.meta.version, version)
        if request.spec.annotations.name != cluster.spec.annotations.name:
            raise InvalidArgument(
                "spec.annotations.name",
                f"the cluster's name cannot change (it is {cluster.spec.annotations.name!r})",
            )
        cluster.spec.CopyFrom(request.spec)
        tokens = cluster.root_ca.join_tokens
        for role, wanted in (
            (Role.WORKER, rotation.worker_join_token),
            (Role.MANAGER, rotation.manager_join_token),
        ):
            if wanted:
                tokens.CopyFrom(backend.rotate_join_token(tokens, role))
        return tx.update(cluster)

    cluster = await backend.write_object(update)
    return control_pb2.UpdateClusterResponse(cluster=redacted(cluster))
