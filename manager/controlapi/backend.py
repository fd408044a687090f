"""What every Control handler works with: the store, one writer at a time, the manager's
hooks and a clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from manager.controlapi.hooks import (
    JoinTokenRotation,
    RaftMemberCheck,
    RaftViewSource,
    has_manager_status,
    no_raft_view,
    rotate_join_token,
)
from manager.store import ReadTx, Store, StoreObject, WriteTx

T = TypeVar("T")
Obj = TypeVar("Obj", bound=StoreObject)


@dataclass
class Backend:
    store: Store
    raft_member: RaftMemberCheck = has_manager_status
    rotate_join_token: JoinTokenRotation = rotate_join_token
    clock: Callable[[], float] = time.time
    raft_view: RaftViewSource = no_raft_view
    # Control writes check references (a service's networks, secrets, configs; a network's
    # services) when the transaction is built, and the store releases its lock before the
    # proposal commits: one Control write at a time keeps those checks true until commit.
    _write_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def read(self, fn: Callable[[ReadTx], T]) -> T:
        return self.store.view(fn)

    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        async with self._write_lock:
            return (await self.store.update(fn)).value

    async def write_object(self, fn: Callable[[WriteTx], Obj], exclusive: bool = True) -> Obj:
        """Commit `fn`'s changes; returns the object `fn` returned as committed (meta.version
        is the index of the commit, as the store stamps it). Not `exclusive`: `fn` reads no
        object but those it writes, whose versions the store checks at commit, so it may
        commit alongside other writes (the names it takes are checked at commit too)."""
        if not exclusive:
            result = await self.store.update(fn)
        else:
            async with self._write_lock:
                result = await self.store.update(fn)
        obj = result.value
        obj.meta.version = result.index
        return obj

    def next_index(self) -> int:
        """A lower bound of the index the transaction being built will commit at (call it
        inside a write transaction): the index of the first entry after those applied.

        Services take it as spec_version. It equals the commit index with a LocalProposer;
        under raft it can be lower (other entries in flight), yet still grows with every
        spec change of a service, whose next update is built only after this one commits.
        """
        return self.store.index + 1

    def now(self) -> Timestamp:
        stamp = Timestamp()
        stamp.FromNanoseconds(int(self.clock() * 1e9))
        return stamp
