"""shoal: the node-local, daemonless container engine CLI."""

from __future__ import annotations

import sys

import click

# Built by issue 3 (runtime); until then each command says so and fails.
PLANNED = {
    "pull": "Pull an image from a registry.",
    "push": "Push an image to a registry.",
    "images": "List images.",
    "tag": "Give an image another name.",
    "rmi": "Remove images.",
    "history": "Show an image's layers and how they were made.",
    "inspect": "Show an image or container as JSON.",
    "run": "Create and start a container.",
    "ps": "List containers.",
    "logs": "Show a container's output.",
    "exec": "Run a command in a running container.",
    "stop": "Stop containers (SIGTERM, grace period, SIGKILL).",
    "kill": "Send a signal to containers.",
    "rm": "Remove containers.",
    "diff": "Show a container's filesystem changes.",
    "commit": "Make an image from a container's changes.",
    "stats": "Show containers' CPU and memory use.",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run containers on this machine, like podman: no daemon."""


def _planned(name: str, summary: str) -> None:
    @main.command(name, help=summary, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        click.echo(f"shoal {name}: not yet implemented", err=True)
        sys.exit(2)


for _name, _summary in PLANNED.items():
    _planned(_name, _summary)
