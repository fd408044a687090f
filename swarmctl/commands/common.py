"""Pieces the command groups share: the connection from the context, listing options."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from common.tables import print_table
from swarmctl.connection import Control, Target, connect
from swarmctl.output import FORMATS, print_ids, print_json


@contextmanager
def control_for(ctx: click.Context) -> Iterator[Control]:
    target: Target = ctx.find_object(Target) or Target()
    with connect(target) as control:
        yield control


def list_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`-q` for ids only, `--format table|json`."""
    function = click.option("--quiet", "-q", is_flag=True, help="Only print ids.")(function)
    return click.option(
        "--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True
    )(function)


def show_list(
    objects: Sequence[Any],
    quiet: bool,
    output_format: str,
    headers: Sequence[str],
    row: Callable[[Any], Sequence[str]],
) -> None:
    if quiet:
        print_ids(objects)
    elif output_format == "json":
        print_json(objects)
    else:
        print_table(headers, [row(o) for o in objects])
