"""The kinds of objects the store keeps, and how each maps onto StoreAction/StoreSnapshot."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from shoal.v1 import objects_pb2

StoreObject = (
    objects_pb2.Node
    | objects_pb2.Service
    | objects_pb2.Task
    | objects_pb2.Network
    | objects_pb2.Cluster
    | objects_pb2.Secret
    | objects_pb2.Config
)

M = TypeVar("M", bound=Message)


class Kind(enum.Enum):
    """An object kind; the value is the StoreAction oneof field that carries it."""

    NODE = "node"
    SERVICE = "service"
    TASK = "task"
    NETWORK = "network"
    CLUSTER = "cluster"
    SECRET = "secret"
    CONFIG = "config"


@dataclass(frozen=True)
class KindInfo:
    message: type[StoreObject]
    # Field of StoreSnapshot holding all objects of this kind.
    snapshot_field: str


KINDS: dict[Kind, KindInfo] = {
    Kind.NODE: KindInfo(objects_pb2.Node, "nodes"),
    Kind.SERVICE: KindInfo(objects_pb2.Service, "services"),
    Kind.TASK: KindInfo(objects_pb2.Task, "tasks"),
    Kind.NETWORK: KindInfo(objects_pb2.Network, "networks"),
    Kind.CLUSTER: KindInfo(objects_pb2.Cluster, "clusters"),
    Kind.SECRET: KindInfo(objects_pb2.Secret, "secrets"),
    Kind.CONFIG: KindInfo(objects_pb2.Config, "configs"),
}

_BY_MESSAGE: dict[type, Kind] = {info.message: kind for kind, info in KINDS.items()}


def kind_of(obj: StoreObject) -> Kind:
    """The kind of a store object; TypeError for anything else."""
    return kind_of_message(type(obj))


def kind_of_message(cls: type[Message]) -> Kind:
    """The kind whose objects are `cls` messages; TypeError for anything else."""
    try:
        return _BY_MESSAGE[cls]
    except KeyError:
        raise TypeError(f"{getattr(cls, '__name__', cls)} is not a store object type") from None


def copy_object(obj: M) -> M:
    fresh = type(obj)()
    fresh.CopyFrom(obj)
    return fresh


_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A random object id: 25 base-36 characters (128 bits), as SwarmKit's."""
    n = secrets.randbits(128)
    chars = []
    for _ in range(25):
        n, r = divmod(n, 36)
        chars.append(_ID_ALPHABET[r])
    return "".join(chars)
