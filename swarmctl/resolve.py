"""Find one object from what a person types: its full id, its name, or a unique id prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoal.v1 import control_pb2
from swarmctl.connection import Control
from swarmctl.errors import SwarmctlError


@dataclass(frozen=True)
class Kind:
    """How to list one kind of object through Control."""

    noun: str
    method: str
    request: type[Any]
    field: str


NODE = Kind("node", "ListNodes", control_pb2.ListNodesRequest, "nodes")
SERVICE = Kind("service", "ListServices", control_pb2.ListServicesRequest, "services")
TASK = Kind("task", "ListTasks", control_pb2.ListTasksRequest, "tasks")
NETWORK = Kind("network", "ListNetworks", control_pb2.ListNetworksRequest, "networks")
SECRET = Kind("secret", "ListSecrets", control_pb2.ListSecretsRequest, "secrets")
CONFIG = Kind("config", "ListConfigs", control_pb2.ListConfigsRequest, "configs")


def _list(control: Control, kind: Kind, **filters: list[str]) -> list[Any]:
    request = kind.request(filters=kind.request.Filters(**filters))
    return list(getattr(control.call(kind.method, request), kind.field))


def resolve(control: Control, kind: Kind, reference: str) -> Any:
    """The one object `reference` names; an id or a name wins over an id prefix."""
    if not reference:
        raise SwarmctlError(f"a {kind.noun} name or id must not be empty")
    by_name = _list(control, kind, names=[reference])
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = _list(control, kind, id_prefixes=[reference])
    exact = [found for found in by_prefix if found.id == reference]
    if exact:
        return exact[0]
    if len(by_name) > 1:
        ids = ", ".join(sorted(found.id for found in by_name))
        raise SwarmctlError(f"{kind.noun} name {reference!r} is ambiguous ({ids}); use an id")
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise SwarmctlError(
            f"{kind.noun} id prefix {reference!r} matches {len(by_prefix)} {kind.noun}s; "
            "type more of the id"
        )
    raise SwarmctlError(f"no such {kind.noun}: {reference}")


def list_all(control: Control, kind: Kind) -> list[Any]:
    return _list(control, kind)
