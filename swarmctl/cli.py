"""swarmctl: the Shoal cluster CLI, speaking the Control API of a manager."""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from common.errors import InvalidValue
from swarmctl.connection import DEFAULT_SOCKET, Target
from swarmctl.errors import SwarmctlError

# What a run makes lives until it exits: frozen, it spares the interpreter's last garbage
# collection on the way out (some 20 ms of every command).
atexit.register(gc.freeze)

# Command groups by name, as "module:attribute": a run imports only the group it uses
# (swarmctl starts anew for every command, so its start-up is part of every command's time).
COMMAND_GROUPS = {
    "cluster": "swarmctl.commands.cluster:cluster",
    "config": "swarmctl.commands.blobs:config",
    "network": "swarmctl.commands.network:network",
    "node": "swarmctl.commands.node:node",
    "secret": "swarmctl.commands.blobs:secret",
    "service": "swarmctl.commands.service:service",
    "task": "swarmctl.commands.task:task",
}


class SwarmctlGroup(click.Group):
    """The root group: every failure is one line `swarmctl: error: ...` and a non-zero exit;
    its command groups are imported when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMAND_GROUPS.get(cmd_name)
        if where is None:
            return None
        module, attribute = where.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> NoReturn:
        extra.pop("standalone_mode", None)
        try:
            super().main(args, prog_name or "swarmctl", standalone_mode=False, **extra)
        except SwarmctlError as error:
            click.echo(f"swarmctl: error: {error}", err=True)
            sys.exit(error.code)
        except InvalidValue as error:
            click.echo(f"swarmctl: error: {error}", err=True)
            sys.exit(1)
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
