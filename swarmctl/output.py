"""What swarmctl prints: tables for people, JSON for scripts, ids for `-q`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

FORMATS = ("table", "json")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, never cut when the output is a pipe or a file."""
    from rich.console import Console  # imported here: commands that print no table skip it
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*row)
    width = None if sys.stdout.isatty() else 10_000
    Console(soft_wrap=True, width=width, highlight=False).print(table)


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def print_json(messages: Sequence[Message] | Message) -> None:
    if isinstance(messages, Message):
        click.echo(json.dumps(as_dict(messages), indent=2, sort_keys=True))
    else:
        click.echo(json.dumps([as_dict(m) for m in messages], indent=2, sort_keys=True))


def print_ids(messages: Sequence[Any]) -> None:
    for message in messages:
        click.echo(message.id)


def humanize_since(timestamp: Timestamp, now_s: float) -> str:
    """Docker's "5 seconds ago" / "3 minutes ago" style."""
    if not timestamp.seconds and not timestamp.nanos:
        return ""
    elapsed = max(0.0, now_s - timestamp.seconds - timestamp.nanos / 1e9)
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if elapsed >= seconds:
            amount = int(elapsed // seconds)
            return f"{amount} {unit}{'s' if amount != 1 else ''} ago"
    return "Less than a second ago"


def title(enum_name: str) -> str:
    """RUNNING -> Running, ON_FAILURE -> On-failure: enum names as Docker prints states."""
    return enum_name.replace("_", "-").capitalize()
