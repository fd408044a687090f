"""List filters: every non-empty field must match (AND); the values within one field are
alternatives (OR); in `labels`, an empty value matches any value of the key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from shoal.v1 import objects_pb2


class CommonFilters(Protocol):
    """The fields every List*Request.Filters has."""

    @property
    def names(self) -> Sequence[str]: ...
    @property
    def name_prefixes(self) -> Sequence[str]: ...
    @property
    def id_prefixes(self) -> Sequence[str]: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


def matches(
    filters: CommonFilters,
    object_id: str,
    names: Sequence[str],
    labels: Mapping[str, str],
) -> bool:
    """Whether an object passes the common filters; `names` are the names it answers to
    (one, or more for tasks: full and short)."""
    if filters.names and not any(name in filters.names for name in names):
        return False
    if filters.name_prefixes and not any(
        name.startswith(prefix) for name in names for prefix in filters.name_prefixes
    ):
        return False
    if filters.id_prefixes and not any(object_id.startswith(p) for p in filters.id_prefixes):
        return False
    return labels_match(labels, filters.labels)


def labels_match(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(
        key in labels and (not value or labels[key] == value) for key, value in wanted.items()
    )


def node_name(node: objects_pb2.Node) -> str:
    """A node's name: the one its spec gives, else its hostname."""
    return node.spec.annotations.name or node.description.hostname


def task_names(task: objects_pb2.Task) -> tuple[str, ...]:
    """The names a task answers to: its own ("<service>.<slot>.<id>", or its annotations'
    name when set) and the short "<service>.<slot>" that swarmctl shows (node id instead of
    slot for global tasks)."""
    place = str(task.slot) if task.slot else task.node_id
    short = f"{task.service_annotations.name}.{place}"
    full = task.annotations.name or f"{short}.{task.id}"
    return (full, short)
