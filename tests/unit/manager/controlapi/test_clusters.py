"""The cluster object through a real Control server: redaction, update, token rotation."""

from __future__ import annotations

import grpc
import pytest

from manager.ca.cluster_ca import ClusterCA
from manager.ca.join_tokens import JoinTokens
from manager.ca.roles import Role
from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.controlapi.helpers import Control, refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def cluster(control: Control) -> objects_pb2.Cluster:
    ca = ClusterCA.initialize()
    stored = objects_pb2.Cluster(id=ca.cluster_id)
    stored.spec.annotations.name = "default"
    stored.root_ca.ca_key = b"-----BEGIN PRIVATE KEY-----"
    stored.root_ca.ca_cert = ca.root.cert_pem
    stored.root_ca.join_tokens.CopyFrom(ca.join_tokens.to_proto())
    stored.unlock_keys.add(key=b"k")
    await control.put(stored)
    result: objects_pb2.Cluster = control.get(objects_pb2.Cluster, ca.cluster_id)
    return result


async def update(
    control: Control,
    cluster: objects_pb2.Cluster,
    spec: specs_pb2.ClusterSpec,
    rotation: control_pb2.KeyRotation | None = None,
) -> objects_pb2.Cluster:
    response = await control.stub.UpdateCluster(
        control_pb2.UpdateClusterRequest(
            cluster_id=cluster.id,
            cluster_version=cluster.meta.version,
            spec=spec,
            rotation=rotation,
        )
    )
    result: objects_pb2.Cluster = response.cluster
    return result


def spec_of(cluster: objects_pb2.Cluster) -> specs_pb2.ClusterSpec:
    spec = specs_pb2.ClusterSpec()
    spec.CopyFrom(cluster.spec)
    return spec


async def test_get_and_list_never_return_keys(
    control: Control, cluster: objects_pb2.Cluster
) -> None:
    got = (
        await control.stub.GetCluster(control_pb2.GetClusterRequest(cluster_id=cluster.id))
    ).cluster
    listed = (await control.stub.ListClusters(control_pb2.ListClustersRequest())).clusters
    for shown in (got, *listed):
        assert shown.root_ca.ca_cert == cluster.root_ca.ca_cert
        assert not shown.root_ca.ca_key
        assert not shown.unlock_keys
        assert shown.root_ca.join_tokens == cluster.root_ca.join_tokens


async def test_update_spec(control: Control, cluster: objects_pb2.Cluster) -> None:
    spec = spec_of(cluster)
    spec.dispatcher.heartbeat_period.seconds = 2
    spec.orchestration.task_history_retention_limit = 3
    spec.ca_config.node_cert_expiry.seconds = 7 * 24 * 3600

    updated = await update(control, cluster, spec)

    assert updated.spec == spec
    assert not updated.root_ca.ca_key
    stored = control.get(objects_pb2.Cluster, cluster.id)
    assert stored.spec == spec
    assert stored.root_ca.ca_key == cluster.root_ca.ca_key


async def test_update_refusals(control: Control, cluster: objects_pb2.Cluster) -> None:
    spec = spec_of(cluster)
    spec.ca_config.node_cert_expiry.seconds = 60
    await refused(update(control, cluster, spec), INVALID, "spec.ca_config.node_cert_expiry")
    spec = spec_of(cluster)
    spec.dispatcher.heartbeat_period.seconds = -1
    await refused(
        update(control, cluster, spec),
        INVALID,
        "spec.dispatcher.heartbeat_period: must not be negative",
    )
    spec = spec_of(cluster)
    spec.annotations.name = "other"
    await refused(update(control, cluster, spec), INVALID, "spec.annotations.name", "'default'")
    await refused(
        update(
            control, cluster, spec_of(cluster), control_pb2.KeyRotation(manager_unlock_key=True)
        ),
        INVALID,
        "rotation.manager_unlock_key",
    )
    stale = objects_pb2.Cluster()
    stale.CopyFrom(cluster)
    stale.meta.version += 1
    await refused(
        update(control, stale, spec_of(cluster)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "update out of sequence",
    )
    assert control.get(objects_pb2.Cluster, cluster.id) == cluster


async def test_rotating_the_worker_token_keeps_the_manager_token(
    control: Control, cluster: objects_pb2.Cluster
) -> None:
    before = JoinTokens.from_proto(cluster.root_ca.join_tokens)

    updated = await update(
        control, cluster, spec_of(cluster), control_pb2.KeyRotation(worker_join_token=True)
    )

    after = JoinTokens.from_proto(updated.root_ca.join_tokens)
    assert after.manager == before.manager
    assert after.worker != before.worker
    assert after.worker.ca_digest == before.worker.ca_digest
    assert after.role_of(str(after.worker)) is Role.WORKER
    assert control.get(objects_pb2.Cluster, cluster.id).root_ca.join_tokens == (
        updated.root_ca.join_tokens
    )
    both = await update(
        control,
        updated,
        spec_of(cluster),
        control_pb2.KeyRotation(worker_join_token=True, manager_join_token=True),
    )
    rotated = JoinTokens.from_proto(both.root_ca.join_tokens)
    assert rotated.worker != after.worker and rotated.manager != after.manager


async def test_rotation_without_usable_tokens_is_a_failed_precondition(control: Control) -> None:
    bare = objects_pb2.Cluster(id="c1")
    bare.spec.annotations.name = "default"
    bare.root_ca.join_tokens.CopyFrom(types_pb2.JoinTokens(worker="garbage"))
    await control.put(bare)
    stored = control.get(objects_pb2.Cluster, "c1")
    await refused(
        update(control, stored, spec_of(stored), control_pb2.KeyRotation(worker_join_token=True)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "join tokens cannot be rotated",
    )
