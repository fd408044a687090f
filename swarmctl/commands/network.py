"""swarmctl network: create, ls, inspect, rm (overlay networks)."""

from __future__ import annotations

import ipaddress

import click

from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from swarmctl.commands.common import control_for, list_options, show_list
from swarmctl.errors import SwarmctlError
from swarmctl.output import print_json
from swarmctl.resolve import NETWORK, list_all, resolve
from swarmctl.service_flags import parse_key_value


@click.group()
def network() -> None:
    """Manage overlay networks."""


def _ipam(subnet: str | None, gateway: str | None) -> types_pb2.IPAMOptions:
    ipam = types_pb2.IPAMOptions()
    if subnet is None:
        if gateway is not None:
            raise SwarmctlError("--gateway needs --subnet")
        return ipam
    try:
        net = ipaddress.ip_network(subnet)
        if gateway is not None and ipaddress.ip_address(gateway) not in net:
            raise SwarmctlError(f"invalid --gateway {gateway}: not inside {subnet}")
    except ValueError as error:
        raise SwarmctlError(f"invalid network address: {error}") from None
    ipam.configs.add(subnet=subnet, gateway=gateway or "")
    return ipam


@network.command()
@click.argument("name")
@click.option("--driver", default="overlay", show_default=True)
@click.option("--subnet", help="Subnet in CIDR form, e.g. 10.20.0.0/24.")
@click.option("--gateway", help="Gateway address inside the subnet.")
@click.option("--internal", is_flag=True, help="No route outside the network.")
@click.option("--attachable", is_flag=True, help="Standalone containers may attach.")
@click.option("--label", multiple=True, help="key=value (repeatable).")
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    driver: str,
    subnet: str | None,
    gateway: str | None,
    internal: bool,
    attachable: bool,
    label: tuple[str, ...],
) -> None:
    """Create a network."""
    spec = specs_pb2.NetworkSpec(
        driver_config=types_pb2.Driver(name=driver),
        internal=internal,
        attachable=attachable,
        ipam=_ipam(subnet, gateway),
    )
    spec.annotations.name = name
    spec.annotations.labels.update(parse_key_value(item, "--label") for item in label)
    with control_for(ctx) as control:
        request = control_pb2.CreateNetworkRequest(spec=spec)
        click.echo(control.call("CreateNetwork", request).network.id)


def _subnets(found: objects_pb2.Network) -> str:
    return ",".join(config.subnet for config in found.ipam.configs)


@network.command("ls")
@list_options
@click.pass_context
def ls(ctx: click.Context, quiet: bool, output_format: str) -> None:
    """List networks."""
    with control_for(ctx) as control:
        networks = sorted(list_all(control, NETWORK), key=lambda n: n.spec.annotations.name)
    show_list(
        networks,
        quiet,
        output_format,
        ["ID", "NAME", "DRIVER", "SUBNET"],
        lambda n: [n.id, n.spec.annotations.name, n.spec.driver_config.name, _subnets(n)],
    )


@network.command()
@click.argument("networks", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, networks: tuple[str, ...]) -> None:
    """Show networks in full (JSON)."""
    with control_for(ctx) as control:
        print_json([resolve(control, NETWORK, reference) for reference in networks])


@network.command()
@click.argument("networks", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, networks: tuple[str, ...]) -> None:
    """Remove networks (refused while a service uses one)."""
    with control_for(ctx) as control:
        for reference in networks:
            found = resolve(control, NETWORK, reference)
            control.call("RemoveNetwork", control_pb2.RemoveNetworkRequest(network_id=found.id))
            click.echo(found.spec.annotations.name)
