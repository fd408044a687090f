"""shoal: the node-local, daemonless container engine CLI.

Every `shoal` command is a fresh process, so its start-up and exit are part of every
container start: a command's module is imported only when that command runs (or for
--help), and the interpreter's last garbage collection is skipped (see `_Group.main`).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
from pathlib import Path
from typing import Any

import click

from common.errors import InvalidValue
from runtime.config import DEFAULT_ROOT, EngineConfig, env_list
from runtime.errors import RuntimeEngineError

IMAGE_COMMANDS = "runtime.commands.images"
CONTAINER_COMMANDS = "runtime.commands.containers"
# The module that defines each command (in its COMMANDS tuple).
HOMES = {
    **dict.fromkeys("pull push images tag rmi history inspect".split(), IMAGE_COMMANDS),
    **dict.fromkeys(
        "run ps logs exec start stop kill rm wait stats diff commit cleanup".split(),
        CONTAINER_COMMANDS,
    ),
}


class _Group(click.Group):
    """Commands loaded on first use; errors a user can cause end as one line on stderr and
    exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(HOMES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        home = HOMES.get(cmd_name)
        if home is None:
            return None
        module = importlib.import_module(home)
        if cmd_name == "inspect":  # it finds containers as well as images
            from runtime.commands.containers import find_container

            if find_container not in module.FINDERS:
                module.FINDERS.append(find_container)
        command: click.Command = next(c for c in module.COMMANDS if c.name == cmd_name)
        return command

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # The objects alive at exit are the process's imported modules, and a collection of
        # them all on the way out costs ~12 ms of every `shoal run`: freeze them first.
        atexit.unregister(gc.freeze)
        atexit.register(gc.freeze)
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RuntimeEngineError, InvalidValue) as exc:
            click.echo(f"shoal: error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    envvar="SHOAL_ROOT",
    default=DEFAULT_ROOT,
    show_default=True,
    help="Where images and containers are kept.",
)
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST:PORT",
    help="A registry to reach over plain HTTP (repeatable; env SHOAL_INSECURE_REGISTRIES).",
)
@click.pass_context
def main(ctx: click.Context, root: Path, insecure: tuple[str, ...]) -> None:
    """Run containers on this machine, like podman: no daemon."""
    ctx.obj = EngineConfig(
        root=root, insecure_registries=insecure + env_list("SHOAL_INSECURE_REGISTRIES")
    )


if __name__ == "__main__":
    main()
