from __future__ import annotations

import pytest

from manager.scheduler import (
    ConstraintError,
    NodeAttributes,
    node_matches,
    parse_constraint,
    parse_constraints,
)
from shoal.v1 import types_pb2

from .builders import node

WORKER = NodeAttributes.of(
    node(
        "Node-1",
        hostname="Web-01.example",
        role=types_pb2.WORKER,
        os="Linux",
        arch="amd64",
        addr="192.0.2.10",
        labels={"zone": "eu-west", "Disk": "SSD"},
        engine_labels={"kernel": "6.1"},
    )
)
MANAGER_V6 = NodeAttributes.of(
    node("node-2", role=types_pb2.MANAGER, arch="arm64", addr="2001:db8::2", labels={})
)
NO_ADDRESS = NodeAttributes.of(node("node-3", addr=""))


@pytest.mark.parametrize(
    ("expression", "key", "operator", "value"),
    [
        ("node.id==abc", "node.id", "==", "abc"),
        ("  node.hostname  !=  web-01  ", "node.hostname", "!=", "web-01"),
        ("node.labels.zone==eu-west", "node.labels.zone", "==", "eu-west"),
        ("engine.labels.kernel==6.1", "engine.labels.kernel", "==", "6.1"),
        ("Node.Role==Manager", "Node.Role", "==", "Manager"),
        ("node.ip==10.0.0.0/8", "node.ip", "==", "10.0.0.0/8"),
        ("node.platform.os==linux", "node.platform.os", "==", "linux"),
        ("node.labels.path==/srv/data", "node.labels.path", "==", "/srv/data"),
    ],
)
def test_parse_valid_expressions(expression: str, key: str, operator: str, value: str) -> None:
    constraint = parse_constraint(expression)
    assert (constraint.key, constraint.operator, constraint.value) == (key, operator, value)
    assert str(constraint) == f"{key}{operator}{value}"


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("node.role", "expected one operator, == or !="),
        ("node.role=manager", "expected one operator, == or !="),
        ("node.labels.size>=3", "expected one operator, == or !="),
        ("node.role==manager==worker", "more than one operator"),
        ("node.role!=manager==worker", "more than one operator"),
        ("==manager", "missing key"),
        ("node.role==", "missing value"),
        ("node.role==  ", "missing value"),
        ("node labels==x", "key 'node labels' is invalid"),
        ("9node.id==x", "key '9node.id' is invalid"),
        ("node.labels.zone==a,b", "value 'a,b' is invalid"),
        ("node.labels.zone==<a>", "value '<a>' is invalid"),
        ("node.name==x", "unknown key 'node.name'"),
        ("node.labels.==x", "unknown key 'node.labels.'"),
        ("engine.labels==x", "unknown key 'engine.labels'"),
        ("node.role==boss", "node.role is manager or worker, not 'boss'"),
        ("node.ip==10.0.0.300", "node.ip takes an IP address or a CIDR network"),
        ("node.ip==10.0.0.0/33", "node.ip takes an IP address or a CIDR network"),
        ("node.ip==host.example", "node.ip takes an IP address or a CIDR network"),
    ],
)
def test_parse_errors_name_the_expression(expression: str, problem: str) -> None:
    with pytest.raises(ConstraintError) as raised:
        parse_constraint(expression)
    message = str(raised.value)
    assert message.startswith(f"invalid constraint {expression!r}: ")
    assert problem in message


def test_parse_constraints_reports_the_first_bad_expression() -> None:
    assert len(parse_constraints(["node.role==worker", "node.labels.a!=b"])) == 2
    with pytest.raises(ConstraintError, match=r"'node\.bad==1'"):
        parse_constraints(["node.role==worker", "node.bad==1", "node.worse"])


@pytest.mark.parametrize(
    ("expression", "on_worker", "on_manager"),
    [
        ("node.id==node-1", True, False),
        ("node.id==NODE-1", True, False),  # node.* values compare case-insensitively
        ("node.id!=node-1", False, True),
        ("node.hostname==web-01.EXAMPLE", True, False),
        ("node.role==worker", True, False),
        ("node.role==MANAGER", False, True),
        ("node.role!=manager", True, False),
        ("node.platform.os==linux", True, True),
        ("node.platform.arch==arm64", False, True),
        ("node.platform.arch!=arm64", True, False),
        # Labels: names and values exact; a missing label reads as "".
        ("node.labels.zone==eu-west", True, False),
        ("node.labels.zone==EU-WEST", False, False),
        ("node.labels.zone!=eu-west", False, True),
        ("node.labels.Zone==eu-west", False, False),
        ("node.labels.Disk==SSD", True, False),
        ("NODE.LABELS.Disk==SSD", True, False),  # the key prefix is case-insensitive
        ("node.labels.disk==SSD", False, False),
        ("engine.labels.kernel==6.1", True, False),
        ("engine.labels.kernel!=6.1", False, True),
        # node.ip: an address or a network, IPv4 and IPv6, never across families.
        ("node.ip==192.0.2.10", True, False),
        ("node.ip!=192.0.2.10", False, True),
        ("node.ip==192.0.2.0/24", True, False),
        ("node.ip==192.0.2.77/24", True, False),  # host bits are ignored, as in Go
        ("node.ip!=192.0.2.0/24", False, True),
        ("node.ip==198.51.100.0/24", False, False),
        ("node.ip==2001:db8::/32", False, True),
        ("node.ip==2001:db8::2", False, True),
        ("node.ip==::/0", False, True),
    ],
)
def test_matching(expression: str, on_worker: bool, on_manager: bool) -> None:
    constraint = parse_constraint(expression)
    assert constraint.matches(WORKER) is on_worker
    assert constraint.matches(MANAGER_V6) is on_manager


def test_node_without_an_address() -> None:
    assert not parse_constraint("node.ip==192.0.2.0/24").matches(NO_ADDRESS)
    assert parse_constraint("node.ip!=192.0.2.0/24").matches(NO_ADDRESS)
    assert not parse_constraint("node.ip==192.0.2.10").matches(NO_ADDRESS)
    assert parse_constraint("node.ip!=192.0.2.10").matches(NO_ADDRESS)


def test_node_matches_needs_every_constraint() -> None:
    worker = node("w", labels={"zone": "a"})
    assert node_matches(parse_constraints(["node.role==worker", "node.labels.zone==a"]), worker)
    assert not node_matches(parse_constraints(["node.role==worker", "node.labels.zone==b"]), worker)
    assert node_matches((), worker)
