"""Secondary indexes of each kind; add an `Index` to `DEFAULT_INDEXES` (or pass your own set
to `Store`) to look objects up by something new.

An index maps an object to zero or more hashable keys. A unique index refuses two objects
with the same key (names of services, networks, clusters, secrets and configs).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from manager.store.kinds import Kind, StoreObject

KeyFn = Callable[[Any], tuple[Hashable, ...]]


@dataclass(frozen=True)
class Index:
    name: str
    keys: KeyFn
    unique: bool = False


def _spec_name(obj: Any) -> tuple[Hashable, ...]:
    name = obj.spec.annotations.name
    return (name,) if name else ()


def _field(field: str) -> KeyFn:
    def keys(obj: Any) -> tuple[Hashable, ...]:
        value = getattr(obj, field)
        return (value,) if value else ()

    return keys


def _task_slot(task: Any) -> tuple[Hashable, ...]:
    return ((task.service_id, task.slot),) if task.service_id and task.slot else ()


def _task_desired_state(task: Any) -> tuple[Hashable, ...]:
    return (task.desired_state,)


def _node_role(node: Any) -> tuple[Hashable, ...]:
    return (node.role,)


NAME = "name"

DEFAULT_INDEXES: Mapping[Kind, tuple[Index, ...]] = {
    Kind.NODE: (Index(NAME, _spec_name), Index("role", _node_role)),
    Kind.SERVICE: (Index(NAME, _spec_name, unique=True),),
    Kind.TASK: (
        Index("service", _field("service_id")),
        Index("node", _field("node_id")),
        Index("slot", _task_slot),
        Index("desired_state", _task_desired_state),
    ),
    Kind.NETWORK: (Index(NAME, _spec_name, unique=True),),
    Kind.CLUSTER: (Index(NAME, _spec_name, unique=True),),
    Kind.SECRET: (Index(NAME, _spec_name, unique=True),),
    Kind.CONFIG: (Index(NAME, _spec_name, unique=True),),
}


class IndexedTable:
    """All objects of one kind by id, plus their secondary indexes.

    Objects inside a table are never mutated: a change replaces the object, so a snapshot
    can hold references to them while the table moves on. Iteration orders are insertion
    orders, identical on every replica that applied the same log.
    """

    def __init__(self, kind: Kind, indexes: tuple[Index, ...]) -> None:
        self.kind = kind
        self.indexes = {index.name: index for index in indexes}
        self.objects: dict[str, StoreObject] = {}
        # index name -> key -> ids (a dict used as an ordered set)
        self._maps: dict[str, dict[Hashable, dict[str, None]]] = {i.name: {} for i in indexes}

    def get(self, object_id: str) -> StoreObject | None:
        return self.objects.get(object_id)

    def find_ids(self, index: str, key: Hashable) -> list[str]:
        try:
            entries = self._maps[index]
        except KeyError:
            known = ", ".join(sorted(self._maps)) or "none"
            raise KeyError(f"{self.kind.value} has no index {index!r} (known: {known})") from None
        return list(entries.get(key, ()))

    def put(self, obj: StoreObject) -> None:
        old = self.objects.get(obj.id)
        if old is not None:
            self._unindex(old)
        self.objects[obj.id] = obj
        for index in self.indexes.values():
            entries = self._maps[index.name]
            for key in index.keys(obj):
                entries.setdefault(key, {})[obj.id] = None

    def remove(self, object_id: str) -> None:
        old = self.objects.pop(object_id, None)
        if old is not None:
            self._unindex(old)

    def _unindex(self, obj: StoreObject) -> None:
        for index in self.indexes.values():
            entries = self._maps[index.name]
            for key in index.keys(obj):
                ids = entries.get(key)
                if ids is not None:
                    ids.pop(obj.id, None)
                    if not ids:
                        del entries[key]


def new_tables(indexes: Mapping[Kind, tuple[Index, ...]]) -> dict[Kind, IndexedTable]:
    return {kind: IndexedTable(kind, indexes.get(kind, ())) for kind in Kind}
