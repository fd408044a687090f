"""How a store's writes get committed: the `Proposer` interface, and a local one.

A proposer takes one StoreActions (a transaction), gives it a (proposer_id, sequence) if it
has none, gets it committed, and returns the index at which `Store.apply` applied it; if the
apply refused the batch (stale version, taken name...) that StoreError is raised instead.
Proposing the same StoreActions again after ProposalOutcomeUnknown is safe: the apply skips a
sequence it has already seen from that proposer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from manager.store.errors import StoreError
from manager.store.kinds import new_id
from shoal.v1 import store_pb2

if TYPE_CHECKING:
    from manager.store.store import Store


@dataclass(frozen=True)
class ApplyResult:
    """What applying one log entry did."""

    index: int
    # Why the batch was refused (nothing of it applied), or None.
    error: StoreError | None = None
    # The batch repeated an earlier (proposer_id, sequence) and was skipped; `index` and
    # `error` then describe the original when it is still remembered.
    duplicate: bool = False

    def committed_index(self) -> int:
        """The index, or the refusal raised."""
        if self.error is not None:
            raise self.error
        return self.index


class Proposer(Protocol):
    async def propose(self, actions: store_pb2.StoreActions) -> int: ...


class SequenceSource:
    """(proposer_id, sequence) for a proposer: a new id per process, sequences from 1."""

    def __init__(self, proposer_id: str | None = None) -> None:
        self.proposer_id = proposer_id or new_id()
        self._sequence = itertools.count(1)

    def stamp(self, actions: store_pb2.StoreActions) -> None:
        """Give `actions` this proposer's identity unless it already has one (a retry)."""
        if not actions.proposer_id:
            actions.proposer_id = self.proposer_id
            actions.sequence = next(self._sequence)


class LocalProposer:
    """Commits straight into one store, with no replication: for a single process and for
    tests of the subsystems built on the store. Indexes continue from the store's."""

    def __init__(self, store: Store, proposer_id: str | None = None) -> None:
        self._store = store
        self._sequences = SequenceSource(proposer_id)

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        self._sequences.stamp(actions)
        return self._store.apply(self._store.index + 1, actions).committed_index()
