"""swarmctl node: ls, inspect, update, drain/activate/pause, promote/demote, rm."""

from __future__ import annotations

import click

from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from swarmctl.commands.common import control_for, list_options, show_list
from swarmctl.connection import Control
from swarmctl.errors import SwarmctlError
from swarmctl.output import print_json, title
from swarmctl.resolve import NODE, list_all, resolve
from swarmctl.service_flags import parse_key_value

AVAILABILITIES = {
    "active": specs_pb2.NodeSpec.ACTIVE,
    "pause": specs_pb2.NodeSpec.PAUSE,
    "drain": specs_pb2.NodeSpec.DRAIN,
}


def hostname(node: objects_pb2.Node) -> str:
    return node.description.hostname or node.spec.annotations.name


def manager_status(node: objects_pb2.Node) -> str:
    if node.role != types_pb2.MANAGER:
        return ""
    if node.manager_status.leader:
        return "Leader"
    return title(types_pb2.RaftMemberStatus.Reachability.Name(node.manager_status.reachability))


def node_row(node: objects_pb2.Node) -> list[str]:
    return [
        node.id,
        hostname(node),
        title(types_pb2.NodeRole.Name(node.role)),
        title(types_pb2.NodeStatus.State.Name(node.status.state)),
        title(specs_pb2.NodeSpec.Availability.Name(node.spec.availability)),
        manager_status(node),
    ]


@click.group()
def node() -> None:
    """Manage nodes."""


@node.command("ls")
@list_options
@click.pass_context
def ls(ctx: click.Context, quiet: bool, output_format: str) -> None:
    """List nodes."""
    with control_for(ctx) as control:
        nodes = sorted(list_all(control, NODE), key=hostname)
    headers = ["ID", "HOSTNAME", "ROLE", "STATUS", "AVAILABILITY", "MANAGER STATUS"]
    show_list(nodes, quiet, output_format, headers, node_row)


@node.command()
@click.argument("nodes", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, nodes: tuple[str, ...]) -> None:
    """Show nodes in full (JSON)."""
    with control_for(ctx) as control:
        print_json([resolve(control, NODE, reference) for reference in nodes])


STALE_RETRIES = 5


def update_node(
    control: Control,
    reference: str,
    availability: str | None = None,
    role: int | None = None,
    label_add: tuple[str, ...] = (),
    label_rm: tuple[str, ...] = (),
) -> objects_pb2.Node:
    """Change a node's spec. The managers write node objects too (status, certificates), so
    a spec read just before may be stale by the time it is sent: read again and retry."""
    for attempt in range(STALE_RETRIES):
        try:
            return _update_node_once(control, reference, availability, role, label_add, label_rm)
        except SwarmctlError as exc:
            if "out of sequence" not in str(exc) or attempt == STALE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _update_node_once(
    control: Control,
    reference: str,
    availability: str | None,
    role: int | None,
    label_add: tuple[str, ...],
    label_rm: tuple[str, ...],
) -> objects_pb2.Node:
    found = resolve(control, NODE, reference)
    spec = specs_pb2.NodeSpec()
    spec.CopyFrom(found.spec)
    if availability is not None:
        spec.availability = AVAILABILITIES[availability.lower()]
    if role is not None:
        spec.desired_role = role  # type: ignore[assignment]
    for label in label_add:
        key, value = parse_key_value(label, "--label-add")
        spec.annotations.labels[key] = value
    for key in label_rm:
        if key not in spec.annotations.labels:
            raise SwarmctlError(f"node {hostname(found)} has no label {key!r}")
        del spec.annotations.labels[key]
    request = control_pb2.UpdateNodeRequest(
        node_id=found.id, node_version=found.meta.version, spec=spec
    )
    updated: objects_pb2.Node = control.call("UpdateNode", request).node
    return updated


@node.command()
@click.argument("reference", metavar="NODE")
@click.option("--availability", type=click.Choice(list(AVAILABILITIES), case_sensitive=False))
@click.option("--label-add", multiple=True, help="key=value (repeatable).")
@click.option("--label-rm", multiple=True, help="Label key to remove (repeatable).")
@click.pass_context
def update(
    ctx: click.Context,
    reference: str,
    availability: str | None,
    label_add: tuple[str, ...],
    label_rm: tuple[str, ...],
) -> None:
    """Change a node's availability or labels."""
    with control_for(ctx) as control:
        click.echo(update_node(control, reference, availability, None, label_add, label_rm).id)


def _availability_command(name: str, availability: str, summary: str) -> None:
    @node.command(name, help=summary)
    @click.argument("nodes", nargs=-1, required=True)
    @click.pass_context
    def command(ctx: click.Context, nodes: tuple[str, ...]) -> None:
        with control_for(ctx) as control:
            for reference in nodes:
                click.echo(update_node(control, reference, availability=availability).id)


def _role_command(name: str, role: int, summary: str) -> None:
    @node.command(name, help=summary)
    @click.argument("nodes", nargs=-1, required=True)
    @click.pass_context
    def command(ctx: click.Context, nodes: tuple[str, ...]) -> None:
        with control_for(ctx) as control:
            for reference in nodes:
                click.echo(update_node(control, reference, role=role).id)


_availability_command("drain", "drain", "Move the nodes' tasks elsewhere; give them none.")
_availability_command("pause", "pause", "Keep the nodes' tasks but give them no new ones.")
_availability_command("activate", "active", "Let the nodes take new tasks again.")
_role_command("promote", types_pb2.MANAGER, "Make the nodes managers.")
_role_command("demote", types_pb2.WORKER, "Make the nodes workers.")


@node.command()
@click.argument("nodes", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Remove even if the node is not down.")
@click.pass_context
def rm(ctx: click.Context, nodes: tuple[str, ...], force: bool) -> None:
    """Remove nodes from the cluster."""
    with control_for(ctx) as control:
        for reference in nodes:
            found = resolve(control, NODE, reference)
            control.call("RemoveNode", control_pb2.RemoveNodeRequest(node_id=found.id, force=force))
            click.echo(found.id)
