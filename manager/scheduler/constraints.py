"""Placement constraints: "key==value" and "key!=value" expressions over a node's attributes.

Keys: node.id, node.hostname, node.ip (an address or a CIDR network, matched against the
node's status.addr), node.role (manager|worker), node.platform.os, node.platform.arch,
node.labels.<name> (the node spec's labels) and engine.labels.<name> (labels the node reports).
Keys are case-insensitive but label names are not. Values of the node.* fields compare
case-insensitively, as in SwarmKit; label values compare exactly. A missing label reads as "",
so `node.labels.zone!=a` holds on a node without a zone label.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from manager.scheduler.errors import ConstraintError
from shoal.v1 import objects_pb2, types_pb2

NODE_LABEL_PREFIX = "node.labels."
ENGINE_LABEL_PREFIX = "engine.labels."
OPERATORS = ("==", "!=")
ROLES = ("manager", "worker")

# SwarmKit's grammar: what it accepts, Shoal accepts (values exclude operator characters).
_KEY_PATTERN = re.compile(r"^[a-z_][a-z0-9\-_.]+$", re.IGNORECASE)
_VALUE_PATTERN = re.compile(r"^[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+$", re.IGNORECASE)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class NodeAttributes:
    """What constraints, platforms and spread preferences look at, read once per node.

    The node.* fields are lower-cased; labels are kept as they are.
    """

    id: str
    hostname: str
    role: str
    os: str
    arch: str
    ip: IPAddress | None
    labels: Mapping[str, str]
    engine_labels: Mapping[str, str]

    @classmethod
    def of(cls, node: objects_pb2.Node) -> NodeAttributes:
        description = node.description
        try:
            ip: IPAddress | None = ipaddress.ip_address(node.status.addr)
        except ValueError:
            ip = None
        return cls(
            id=node.id.lower(),
            hostname=description.hostname.lower(),
            role=types_pb2.NodeRole.Name(node.role).lower(),
            os=description.platform.os.lower(),
            arch=description.platform.architecture.lower(),
            ip=ip,
            labels=dict(node.spec.annotations.labels),
            engine_labels=dict(description.engine.labels),
        )


AttributeGetter = Callable[[NodeAttributes], str]

_FIELDS: dict[str, AttributeGetter] = {
    "node.id": lambda node: node.id,
    "node.hostname": lambda node: node.hostname,
    "node.role": lambda node: node.role,
    "node.platform.os": lambda node: node.os,
    "node.platform.arch": lambda node: node.arch,
}
KNOWN_KEYS = (
    *_FIELDS,
    "node.ip",
    f"{NODE_LABEL_PREFIX}<name>",
    f"{ENGINE_LABEL_PREFIX}<name>",
)


def attribute_getter(key: str) -> AttributeGetter | None:
    """The reader of a node attribute named like a constraint key (not node.ip), or None."""
    lowered = key.lower()
    if lowered in _FIELDS:
        return _FIELDS[lowered]
    if lowered.startswith(NODE_LABEL_PREFIX) and len(key) > len(NODE_LABEL_PREFIX):
        name = key[len(NODE_LABEL_PREFIX) :]
        return lambda node: node.labels.get(name, "")
    if lowered.startswith(ENGINE_LABEL_PREFIX) and len(key) > len(ENGINE_LABEL_PREFIX):
        name = key[len(ENGINE_LABEL_PREFIX) :]
        return lambda node: node.engine_labels.get(name, "")
    return None


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed expression; `matches` is compiled once at parse time."""

    key: str
    operator: str
    value: str
    _test: Callable[[NodeAttributes], bool] = field(repr=False, compare=False)

    def matches(self, node: NodeAttributes) -> bool:
        return self._test(node)

    def __str__(self) -> str:
        return f"{self.key}{self.operator}{self.value}"


def parse_constraint(expression: str) -> Constraint:
    """Parse one expression; raise ConstraintError naming it when it is not valid."""

    def invalid(problem: str) -> ConstraintError:
        return ConstraintError(f"invalid constraint {expression!r}: {problem}")

    found = [op for op in OPERATORS if op in expression]
    if not found:
        raise invalid(f"expected one operator, {' or '.join(OPERATORS)}")
    if len(found) > 1 or expression.count(found[0]) > 1:
        raise invalid("more than one operator")
    operator = found[0]
    left, right = expression.split(operator, 1)
    key, value = left.strip(), right.strip()
    if not key:
        raise invalid("missing key")
    if not _KEY_PATTERN.match(key):
        raise invalid(f"key {key!r} is invalid")
    if not value:
        raise invalid("missing value")
    if not _VALUE_PATTERN.match(value):
        raise invalid(f"value {value!r} is invalid")
    equal = operator == "=="
    lowered = key.lower()
    if lowered == "node.ip":
        test = _ip_test(value, equal, invalid)
    else:
        getter = attribute_getter(key)
        if getter is None:
            raise invalid(f"unknown key {key!r} (expected one of {', '.join(KNOWN_KEYS)})")
        if lowered == "node.role" and value.lower() not in ROLES:
            raise invalid(f"node.role is {' or '.join(ROLES)}, not {value!r}")
        expected = value.lower() if lowered in _FIELDS else value
        test = _equality_test(getter, expected, equal)
    return Constraint(key=key, operator=operator, value=value, _test=test)


def parse_constraints(expressions: Iterable[str]) -> tuple[Constraint, ...]:
    """Parse a spec's constraints (all must hold); raise ConstraintError on the first bad one."""
    return tuple(parse_constraint(expression) for expression in expressions)


def node_matches(constraints: Iterable[Constraint], node: objects_pb2.Node) -> bool:
    """Whether `node` satisfies every constraint (for callers holding a Node, not attributes)."""
    attributes = NodeAttributes.of(node)
    return all(constraint.matches(attributes) for constraint in constraints)


def _equality_test(
    getter: AttributeGetter, expected: str, equal: bool
) -> Callable[[NodeAttributes], bool]:
    if equal:
        return lambda node: getter(node) == expected
    return lambda node: getter(node) != expected


def _ip_test(
    value: str, equal: bool, invalid: Callable[[str], ConstraintError]
) -> Callable[[NodeAttributes], bool]:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        if equal:
            return lambda node: node.ip == address
        return lambda node: node.ip != address
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise invalid(f"node.ip takes an IP address or a CIDR network, not {value!r}") from None
    if equal:
        return lambda node: node.ip is not None and node.ip in network
    return lambda node: node.ip is None or node.ip not in network
