"""swarmd: the Shoal node daemon (an agent on every node, a manager on manager nodes)."""

from __future__ import annotations

import sys

import click

# Built by issue 5 (agent + swarmd); until then each command says so and fails.
PLANNED = {
    "init": "Start a new cluster with this node as its first manager.",
    "join": "Join a cluster as a worker or manager: swarmd join --token T ADDR.",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The Shoal node daemon."""


def _planned(name: str, summary: str) -> None:
    @main.command(name, help=summary, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        click.echo(f"swarmd {name}: not yet implemented", err=True)
        sys.exit(2)


for _name, _summary in PLANNED.items():
    _planned(_name, _summary)
