"""swarmctl cluster: inspect, update (join tokens, heartbeat, task history, cert expiry)."""

from __future__ import annotations

import click

from common.units import parse_duration
from shoal.v1 import control_pb2, objects_pb2, specs_pb2
from swarmctl.commands.common import control_for
from swarmctl.connection import Control
from swarmctl.errors import SwarmctlError
from swarmctl.output import print_json


def the_cluster(control: Control) -> objects_pb2.Cluster:
    clusters = control.call("ListClusters", control_pb2.ListClustersRequest()).clusters
    if not clusters:
        raise SwarmctlError("the manager knows no cluster object yet")
    found: objects_pb2.Cluster = clusters[0]
    return found


@click.group()
def cluster() -> None:
    """Inspect and update the cluster."""


@cluster.command()
@click.pass_context
def inspect(ctx: click.Context) -> None:
    """Show the cluster object (JSON; the CA key is never returned)."""
    with control_for(ctx) as control:
        print_json(the_cluster(control))


@cluster.command()
@click.option(
    "--rotate-join-token",
    "rotate",
    multiple=True,
    type=click.Choice(["worker", "manager"]),
    help="Replace a join token with a fresh one.",
)
@click.option("--heartbeat-period", help="How often agents heartbeat, e.g. 5s.")
@click.option("--task-history", type=int, help="Old tasks kept per slot (negative = all).")
@click.option("--cert-expiry", help="Node certificate lifetime, e.g. 2160h.")
@click.pass_context
def update(
    ctx: click.Context,
    rotate: tuple[str, ...],
    heartbeat_period: str | None,
    task_history: int | None,
    cert_expiry: str | None,
) -> None:
    """Change the cluster spec and/or rotate join tokens."""
    spec = specs_pb2.ClusterSpec()
    with control_for(ctx) as control:
        found = the_cluster(control)
        spec.CopyFrom(found.spec)
        if heartbeat_period is not None:
            spec.dispatcher.heartbeat_period.CopyFrom(parse_duration(heartbeat_period))
        if task_history is not None:
            spec.orchestration.task_history_retention_limit = task_history
        if cert_expiry is not None:
            spec.ca_config.node_cert_expiry.CopyFrom(parse_duration(cert_expiry))
        rotation = control_pb2.KeyRotation(
            worker_join_token="worker" in rotate, manager_join_token="manager" in rotate
        )
        request = control_pb2.UpdateClusterRequest(
            cluster_id=found.id,
            cluster_version=found.meta.version,
            spec=spec,
            rotation=rotation,
        )
        click.echo(control.call("UpdateCluster", request).cluster.id)
