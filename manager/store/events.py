"""Watch events: one per created, updated or removed object, in commit order."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from manager.store.kinds import Kind, StoreObject


class EventAction(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class Event:
    """`old` is None for CREATE, `new` is None for DELETE. The objects are copies shared by
    every subscriber: copy one before changing it."""

    kind: Kind
    action: EventAction
    old: StoreObject | None
    new: StoreObject | None
    # Raft index of the entry that made the change.
    index: int

    @property
    def object(self) -> StoreObject:
        """The object after the change (before it, for DELETE)."""
        obj = self.new if self.new is not None else self.old
        assert obj is not None
        return obj
