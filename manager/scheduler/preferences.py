"""Placement preferences: `spread` over a node attribute, e.g. "node.labels.zone".

Each preference splits the nodes of the level above by the attribute's value; the scheduler
balances a service's tasks across the values at every level. Nodes without the attribute
read "" and form a branch of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from manager.scheduler.constraints import AttributeGetter, NodeAttributes, attribute_getter
from manager.scheduler.errors import PreferenceError
from shoal.v1 import types_pb2

SPREAD_KEYS = (
    "node.labels.<name>",
    "engine.labels.<name>",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
    "node.hostname",
    "node.id",
)


@dataclass(frozen=True, slots=True)
class Spread:
    descriptor: str
    _value_of: AttributeGetter = field(repr=False, compare=False)

    def value_of(self, node: NodeAttributes) -> str:
        return self._value_of(node)


def parse_spread(descriptor: str) -> Spread:
    """Parse a spread descriptor; raise PreferenceError naming it when it is not supported."""
    getter = attribute_getter(descriptor.strip())
    if getter is None:
        raise PreferenceError(
            f"invalid placement preference 'spread={descriptor}': "
            f"expected one of {', '.join(SPREAD_KEYS)}"
        )
    return Spread(descriptor=descriptor.strip(), _value_of=getter)


def parse_preferences(preferences: Iterable[types_pb2.PlacementPreference]) -> tuple[Spread, ...]:
    """Parse a placement's preferences in order; raise PreferenceError on the first bad one."""
    spreads = []
    for number, preference in enumerate(preferences, start=1):
        if preference.WhichOneof("preference") != "spread":
            raise PreferenceError(f"placement preference #{number} names no spread descriptor")
        spreads.append(parse_spread(preference.spread.spread_descriptor))
    return tuple(spreads)
