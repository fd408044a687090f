"""Read views: consistent lookups by id, by index key, or of a whole kind.

Every object returned is a copy: changing it changes nothing in the store.
"""

from __future__ import annotations

import builtins
from collections.abc import Hashable, Mapping
from typing import TypeVar, cast

from manager.store.indexes import NAME, IndexedTable
from manager.store.kinds import Kind, StoreObject, copy_object, kind_of_message

T = TypeVar("T", bound=StoreObject)


class ReadTx:
    def __init__(self, tables: Mapping[Kind, IndexedTable]) -> None:
        self._tables = tables

    def get(self, cls: type[T], object_id: str) -> T | None:
        obj = self._get(kind_of_message(cls), object_id)
        return None if obj is None else cast(T, copy_object(obj))

    def get_by_name(self, cls: type[T], name: str) -> T | None:
        found = self.find(cls, NAME, name)
        return found[0] if found else None

    def find(self, cls: type[T], index: str, key: Hashable) -> list[T]:
        kind = kind_of_message(cls)
        objs = (self._get(kind, i) for i in self._find_ids(kind, index, key))
        return [cast(T, copy_object(o)) for o in objs if o is not None]

    def list(self, cls: type[T]) -> list[T]:
        kind = kind_of_message(cls)
        objs = (self._get(kind, i) for i in self._ids(kind))
        return [cast(T, copy_object(o)) for o in objs if o is not None]

    def count(self, cls: type[StoreObject]) -> int:
        return len(self._ids(kind_of_message(cls)))

    # The views below are what a write transaction overrides to see its own changes.

    def _get(self, kind: Kind, object_id: str) -> StoreObject | None:
        return self._tables[kind].get(object_id)

    def _find_ids(self, kind: Kind, index: str, key: Hashable) -> builtins.list[str]:
        return self._tables[kind].find_ids(index, key)

    def _ids(self, kind: Kind) -> builtins.list[str]:
        return list(self._tables[kind].objects)
