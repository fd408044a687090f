from __future__ import annotations

import re

import pytest

from manager.scheduler import NodeAttributes, PreferenceError, parse_preferences, parse_spread
from shoal.v1 import types_pb2

from .builders import node

ATTRIBUTES = NodeAttributes.of(
    node("n1", labels={"zone": "Z1"}, engine_labels={"rack": "r7"}, role=types_pb2.MANAGER)
)


@pytest.mark.parametrize(
    ("descriptor", "value"),
    [
        ("node.labels.zone", "Z1"),
        ("NODE.LABELS.zone", "Z1"),
        ("node.labels.missing", ""),
        ("engine.labels.rack", "r7"),
        ("node.role", "manager"),
        ("node.platform.arch", "amd64"),
        ("node.id", "n1"),
    ],
)
def test_spread_reads_the_attribute(descriptor: str, value: str) -> None:
    assert parse_spread(descriptor).value_of(ATTRIBUTES) == value


@pytest.mark.parametrize("descriptor", ["zone", "node.labels.", "node.ip", "labels.zone", ""])
def test_unsupported_descriptor_is_refused_by_name(descriptor: str) -> None:
    with pytest.raises(PreferenceError, match=re.escape(f"'spread={descriptor}'")):
        parse_spread(descriptor)


def test_parse_preferences_in_order() -> None:
    placement = types_pb2.Placement()
    placement.preferences.add().spread.spread_descriptor = "node.labels.zone"
    placement.preferences.add().spread.spread_descriptor = "engine.labels.rack"
    spreads = parse_preferences(placement.preferences)
    assert [spread.descriptor for spread in spreads] == ["node.labels.zone", "engine.labels.rack"]


def test_preference_without_spread_is_refused() -> None:
    placement = types_pb2.Placement()
    placement.preferences.add().spread.spread_descriptor = "node.labels.zone"
    placement.preferences.add()
    with pytest.raises(PreferenceError, match="placement preference #2 names no spread"):
        parse_preferences(placement.preferences)
