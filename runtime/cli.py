"""shoal: the node-local, daemonless container engine CLI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runtime.commands import containers
from runtime.config import DEFAULT_ROOT, EngineConfig, env_list
from runtime.errors import RuntimeEngineError

# Commands not built yet (issue 3); each says so and fails.
PLANNED = {
    "pull": "Pull an image from a registry.",
    "push": "Push an image to a registry.",
    "images": "List images.",
    "tag": "Give an image another name.",
    "rmi": "Remove images.",
    "history": "Show an image's layers and how they were made.",
    "inspect": "Show an image or container as JSON.",
    "diff": "Show a container's filesystem changes.",
    "commit": "Make an image from a container's changes.",
}


class _Group(click.Group):
    """Errors a user can cause end as one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RuntimeEngineError as exc:
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


def _planned(name: str, summary: str) -> None:
    @main.command(name, help=summary, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        click.echo(f"shoal {name}: not yet implemented", err=True)
        sys.exit(2)


for _name, _summary in PLANNED.items():
    _planned(_name, _summary)
containers.register(main)

if __name__ == "__main__":
    main()
