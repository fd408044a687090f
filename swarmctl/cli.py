"""swarmctl: the Shoal cluster CLI, speaking the Control API of a manager."""

from __future__ import annotations

import sys

import click

# Built by issue 5 (swarmctl); until then each command says so and fails.
PLANNED = {
    "node": "Manage nodes: ls, inspect, update, drain, activate, pause, promote, demote, rm.",
    "service": "Manage services: create, update, ls, inspect, ps, scale, rollback, rm, logs.",
    "task": "Inspect tasks: ls, inspect.",
    "cluster": "Inspect and update the cluster: inspect, update (join tokens, heartbeat).",
    "network": "Manage overlay networks: create, ls, inspect, rm.",
    "secret": "Manage secrets: create, ls, inspect, rm.",
    "config": "Manage configs: create, ls, inspect, rm.",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Control a Shoal cluster."""


def _planned(name: str, summary: str) -> None:
    @main.command(name, help=summary, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        click.echo(f"swarmctl {name}: not yet implemented", err=True)
        sys.exit(2)


for _name, _summary in PLANNED.items():
    _planned(_name, _summary)
