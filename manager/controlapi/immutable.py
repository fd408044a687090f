"""Specs of which only the labels may change (networks, secrets, configs)."""

from __future__ import annotations

from google.protobuf.message import Message

from manager.controlapi.errors import InvalidArgument


def check_only_labels_change(field: str, stored: Message, requested: Message) -> None:
    """Raise InvalidArgument naming the first field of `requested` that differs from
    `stored`, other than annotations.labels."""
    for descriptor in stored.DESCRIPTOR.fields:
        name = descriptor.name
        if name == "annotations":
            before, after = getattr(stored, name).name, getattr(requested, name).name
            path = f"{field}.annotations.name"
        else:
            before, after = getattr(stored, name), getattr(requested, name)
            path = f"{field}.{name}"
        if before != after:
            raise InvalidArgument(
                path, f"cannot change (only {field}.annotations.labels can be updated)"
            )
