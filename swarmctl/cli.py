"""swarmctl: the Shoal cluster CLI, speaking the Control API of a manager."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from swarmctl.commands.blobs import config, secret
from swarmctl.commands.cluster import cluster
from swarmctl.commands.network import network
from swarmctl.commands.node import node
from swarmctl.commands.service import service
from swarmctl.commands.task import task
from swarmctl.connection import DEFAULT_SOCKET, Target
from swarmctl.errors import SwarmctlError


class SwarmctlGroup(click.Group):
    """The root group: every failure is one line `swarmctl: error: ...` and a non-zero exit."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> NoReturn:
        extra.pop("standalone_mode", None)
        try:
            super().main(args, prog_name or "swarmctl", standalone_mode=False, **extra)
        except SwarmctlError as error:
            click.echo(f"swarmctl: error: {error}", err=True)
            sys.exit(error.code)
        except click.exceptions.Abort:
            click.echo("swarmctl: error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as error:
            click.echo(f"swarmctl: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        sys.exit(0)


@click.group(cls=SwarmctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--socket",
    "-s",
    envvar="SWARMCTL_SOCKET",
    default=DEFAULT_SOCKET,
    show_default=True,
    help="The manager's Control unix socket (env SWARMCTL_SOCKET).",
)
@click.option("--host", help="A manager's HOST:PORT, called with mutual TLS.")
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory holding certificates/node.key, node.crt and root.crt (with --host).",
)
@click.pass_context
def main(ctx: click.Context, socket: str, host: str | None, tls_dir: Path | None) -> None:
    """Control a Shoal cluster."""
    if tls_dir is not None and host is None:
        raise SwarmctlError("--tls-dir needs --host HOST:PORT")
    ctx.obj = Target(socket=socket, host=host, tls_dir=tls_dir)


for _group in (node, service, task, cluster, network, secret, config):
    main.add_command(_group)
