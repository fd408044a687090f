"""shoal: the node-local, daemonless container engine CLI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runtime.commands import containers, images
from runtime.config import DEFAULT_ROOT, EngineConfig, env_list
from runtime.errors import RuntimeEngineError


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


images.register(main)
containers.register(main)
images.FINDERS.append(containers.find_container)

if __name__ == "__main__":
    main()
