"""swarm-machine: make machines for Shoal test clusters, like docker-machine (netns driver)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from common.tables import print_table
from deploy.errors import MachineError
from deploy.lab import DEFAULT_LAB, DEFAULT_SUBNET, Lab
from deploy.state import Storage

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> NoReturn:
    click.echo(f"swarm-machine: error: {message}", err=True)
    sys.exit(1)


def _lab(ctx: click.Context) -> Lab:
    try:
        return Lab(Storage(ctx.obj))
    except MachineError as exc:
        _fail(str(exc))


class _Group(click.Group):
    """Turns the errors a user can cause into one line and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MachineError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--storage-path",
    type=click.Path(path_type=Path),
    envvar="SWARM_MACHINE_STORAGE_PATH",
    default=None,
    help="Where machine and lab records live (default /var/lib/swarm-machine).",
)
@click.pass_context
def main(ctx: click.Context, storage_path: Path | None) -> None:
    """Create and manage machines for Shoal test clusters."""
    ctx.obj = storage_path


@main.command()
@click.option("--driver", type=click.Choice(["netns"]), default="netns", show_default=True)
@click.option(
    "--lab",
    "lab_name",
    default=DEFAULT_LAB,
    show_default=True,
    help="The lab whose switch the machines join (made on demand).",
)
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def create(ctx: click.Context, driver: str, lab_name: str, names: tuple[str, ...]) -> None:
    """Create machines NAME... (all or none)."""
    for machine in _lab(ctx).create(list(names), lab=lab_name):
        click.echo(f"{machine.name}\t{machine.record.ip}")


@main.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-q", "--quiet", is_flag=True, help="Only machine names.")
@click.pass_context
def ls(ctx: click.Context, fmt: str, quiet: bool) -> None:
    """List machines."""
    lab = _lab(ctx)
    infos = [lab.inspect(m.name) for m in lab.machines()]
    if quiet:
        click.echo("\n".join(i["name"] for i in infos))
    elif fmt == "json":
        click.echo(json.dumps(infos, indent=2))
    else:
        print_table(
            ["NAME", "LAB", "DRIVER", "STATE", "ADDRESS"],
            [[i["name"], i["lab"], i["driver"], i["state"], i["address"]] for i in infos],
        )


@main.command()
@click.argument("name")
@click.pass_context
def inspect(ctx: click.Context, name: str) -> None:
    """Show a machine as JSON: address, state dir, cgroup parent..."""
    click.echo(json.dumps(_lab(ctx).inspect(name), indent=2))


@main.command()
@click.argument("name")
@click.pass_context
def ip(ctx: click.Context, name: str) -> None:
    """Print a machine's address."""
    click.echo(_lab(ctx).inspect(name)["address"])


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def ssh(ctx: click.Context, name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND (default: a shell) inside machine NAME: swarm-machine ssh NAME -- CMD..."""
    lab = _lab(ctx)
    machine = lab.machine(name)
    if not machine.running:
        _fail(f"machine {name} is not running (state {lab.inspect(name)['state']})")
    argv = list(command) or ["/bin/sh"]
    try:
        machine.exec(argv, machine.environment(lab.registry_address(machine.record.lab)))
    except FileNotFoundError:
        _fail(f"{argv[0]}: command not found")


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove machines NAME... and everything they run."""
    _lab(ctx).remove(list(names))
    for name in names:
        click.echo(name)


@main.group("lab")
def lab_group() -> None:
    """A whole lab: a switch, a registry seeded with busybox, and N machines."""


@lab_group.command("up")
@click.option("--name", default=DEFAULT_LAB, show_default=True)
@click.option("--machines", type=int, default=3, show_default=True)
@click.option("--subnet", default=DEFAULT_SUBNET, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def lab_up(ctx: click.Context, name: str, machines: int, subnet: str, fmt: str) -> None:
    """Bring a lab up."""
    _show_status(_lab(ctx).up(name, machines, subnet), fmt)


@lab_group.command("down")
@click.argument("name", default=DEFAULT_LAB)
@click.pass_context
def lab_down(ctx: click.Context, name: str) -> None:
    """Remove a lab and everything in it (safe to repeat)."""
    removed = _lab(ctx).down(name)
    click.echo(f"lab {name} removed" if removed else f"lab {name} is not up: nothing to remove")


@lab_group.command("status")
@click.argument("name", default=DEFAULT_LAB)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def lab_status(ctx: click.Context, name: str, fmt: str) -> None:
    """Show a lab: its state, registry and machines."""
    _show_status(_lab(ctx).status(name), fmt)


def _show_status(status: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(status, indent=2))
        return
    click.echo(f"lab {status['name']}: {status['state']}")
    if status["registry"]:
        click.echo(f"registry: {status['registry']}")
    if status["machines"]:
        print_table(
            ["NAME", "STATE", "ADDRESS"],
            [[m["name"], m["state"], m["address"]] for m in status["machines"]],
        )
