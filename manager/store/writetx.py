"""Write transactions: collect creates, updates and removals over a read view that already
shows them, checking ids, unique names and versions as they are made.

The same checks run again when the committed StoreActions are applied (in log order, on
every manager), which is what makes them authoritative: a concurrent change that committed
first turns this transaction's stale update into a VersionConflict there.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from manager.store.errors import (
    AlreadyExists,
    InvalidAction,
    NameConflict,
    NotFound,
    VersionConflict,
)
from manager.store.indexes import IndexedTable
from manager.store.kinds import Kind, StoreObject, copy_object, kind_of, kind_of_message
from manager.store.readtx import ReadTx
from shoal.v1 import store_pb2

T = TypeVar("T", bound=StoreObject)


class Op(enum.Enum):
    CREATE = store_pb2.StoreAction.CREATE
    UPDATE = store_pb2.StoreAction.UPDATE
    REMOVE = store_pb2.StoreAction.REMOVE


@dataclass
class Change:
    op: Op
    kind: Kind
    # The object as it will be stored (CREATE, UPDATE), or the one removed (REMOVE).
    obj: StoreObject
    # The version a REMOVE must find (0: any).
    expected_version: int = 0


class WriteTx(ReadTx):
    """A read view plus pending changes. `now` stamps meta.created_at/updated_at; None keeps
    the timestamps the objects carry (used when replaying committed actions)."""

    def __init__(self, tables: Mapping[Kind, IndexedTable], now: Timestamp | None) -> None:
        super().__init__(tables)
        self._now = now
        self._changes: dict[tuple[Kind, str], Change] = {}
        # (kind, index) -> key -> ids of changed objects that have that key now
        self._changed_keys: dict[tuple[Kind, str], dict[Hashable, dict[str, None]]] = {}

    # -- changes ------------------------------------------------------------------------

    def create(self, obj: T) -> T:
        """Add a new object (its id must be set and unused). Returns the pending copy."""
        kind = kind_of(obj)
        if not obj.id:
            raise InvalidAction(f"cannot create a {kind.value} without an id")
        if self._get(kind, obj.id) is not None:
            raise AlreadyExists(kind.value, obj.id)
        key = (kind, obj.id)
        previous = self._changes.get(key)
        if previous is not None and previous.op is Op.REMOVE:
            raise InvalidAction(
                f"{kind.value} {obj.id!r} was removed in this transaction; use a new id"
            )
        new = copy_object(obj)
        new.meta.version = 0
        if self._now is not None:
            new.meta.created_at.CopyFrom(self._now)
            new.meta.updated_at.CopyFrom(self._now)
        self._check_unique(kind, new)
        self._record(key, Change(Op.CREATE, kind, new))
        return copy_object(new)

    def update(self, obj: T) -> T:
        """Replace a stored object; obj.meta.version must be the version it was read at."""
        kind = kind_of(obj)
        stored = self._get(kind, obj.id)
        if stored is None:
            raise NotFound(kind.value, obj.id)
        if obj.meta.version != stored.meta.version:
            raise VersionConflict(kind.value, obj.id, stored.meta.version, obj.meta.version)
        new = copy_object(obj)
        new.meta.created_at.CopyFrom(stored.meta.created_at)
        if self._now is not None:
            new.meta.updated_at.CopyFrom(self._now)
        self._check_unique(kind, new)
        key = (kind, obj.id)
        previous = self._changes.get(key)
        op = Op.CREATE if previous is not None and previous.op is Op.CREATE else Op.UPDATE
        self._record(key, Change(op, kind, new))
        return copy_object(new)

    def delete(self, cls: type[StoreObject], object_id: str, version: int = 0) -> None:
        """Remove an object; with `version`, only if it is still at that version."""
        kind = kind_of_message(cls)
        stored = self._get(kind, object_id)
        if stored is None:
            raise NotFound(kind.value, object_id)
        if version and version != stored.meta.version:
            raise VersionConflict(kind.value, object_id, stored.meta.version, version)
        key = (kind, object_id)
        previous = self._changes.get(key)
        if previous is not None and previous.op is Op.CREATE:
            self._record(key, None)
            return
        self._record(key, Change(Op.REMOVE, kind, stored, version))

    def _record(self, key: tuple[Kind, str], change: Change | None) -> None:
        """Set (or, with None, drop) the pending change of one object, keeping the
        index keys of changed objects current."""
        kind, object_id = key
        previous = self._changes.get(key)
        for index in self._tables[kind].indexes.values():
            entries = self._changed_keys.setdefault((kind, index.name), {})
            if previous is not None and previous.op is not Op.REMOVE:
                for k in index.keys(previous.obj):
                    entries.get(k, {}).pop(object_id, None)
            if change is not None and change.op is not Op.REMOVE:
                for k in index.keys(change.obj):
                    entries.setdefault(k, {})[object_id] = None
        if change is None:
            del self._changes[key]
        else:
            self._changes[key] = change

    def changes(self) -> builtins.list[Change]:
        return list(self._changes.values())

    def actions(self) -> store_pb2.StoreActions:
        """The pending changes as one raft command (proposer id and sequence unset)."""
        batch = store_pb2.StoreActions()
        for change in self._changes.values():
            action = batch.actions.add(kind=change.op.value)
            target = getattr(action, change.kind.value)
            if change.op is Op.REMOVE:
                target.id = change.obj.id
                target.meta.version = change.expected_version
            else:
                target.CopyFrom(change.obj)
        return batch

    # -- views that include the pending changes -----------------------------------------

    def _get(self, kind: Kind, object_id: str) -> StoreObject | None:
        change = self._changes.get((kind, object_id))
        if change is None:
            return super()._get(kind, object_id)
        return None if change.op is Op.REMOVE else change.obj

    def _find_ids(self, kind: Kind, index: str, key: Hashable) -> builtins.list[str]:
        ids = super()._find_ids(kind, index, key)
        if not self._changes:
            return ids
        result = [i for i in ids if (kind, i) not in self._changes]
        result += self._changed_keys.get((kind, index), {}).get(key, {})
        return result

    def _ids(self, kind: Kind) -> builtins.list[str]:
        ids = super()._ids(kind)
        if not self._changes:
            return ids
        result = [i for i in ids if (kind, i) not in self._changes]
        result += [i for (k, i), c in self._changes.items() if k is kind and c.op is not Op.REMOVE]
        return result

    def _check_unique(self, kind: Kind, obj: StoreObject) -> None:
        for index in self._tables[kind].indexes.values():
            if not index.unique:
                continue
            for key in index.keys(obj):
                holders = [i for i in self._find_ids(kind, index.name, key) if i != obj.id]
                if holders:
                    raise NameConflict(kind.value, str(key), holders[0])
