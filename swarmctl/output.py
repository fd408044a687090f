"""What swarmctl prints besides tables (common.tables): JSON for scripts, ids for `-q`, times
and states for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from common.units import human_duration

FORMATS = ("table", "json")


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
    return f"{human_duration(now_s - timestamp.seconds - timestamp.nanos / 1e9)} ago"


def title(enum_name: str) -> str:
    """RUNNING -> Running, ON_FAILURE -> On-failure: enum names as Docker prints states."""
    return enum_name.replace("_", "-").capitalize()
