"""Shoal's in-memory object store: indexed tables, read views, write transactions, watches.

Writes become `StoreActions` committed through a `Proposer` (raft in a manager, a local
proposer in tests) and are applied in log order by `Store.apply`; nothing here knows about
raft.
"""

from manager.store.errors import (
    AlreadyExists,
    InvalidAction,
    NameConflict,
    NotFound,
    NotLeader,
    ProposalFailed,
    ProposalOutcomeUnknown,
    SnapshotError,
    StoreError,
    TransactionTooLarge,
    VersionConflict,
    WatchClosed,
    WatchOverflow,
)
from manager.store.events import Event, EventAction
from manager.store.kinds import Kind, StoreObject, kind_of, new_id
from manager.store.proposer import ApplyResult, LocalProposer, Proposer
from manager.store.readtx import ReadTx
from manager.store.snapshot import StoreImage, decode_snapshot, encode_snapshot
from manager.store.store import Store, UpdateResult
from manager.store.watch import Subscription
from manager.store.writetx import WriteTx

__all__ = [
    "AlreadyExists",
    "ApplyResult",
    "Event",
    "EventAction",
    "InvalidAction",
    "Kind",
    "LocalProposer",
    "NameConflict",
    "NotFound",
    "NotLeader",
    "ProposalFailed",
    "ProposalOutcomeUnknown",
    "Proposer",
    "ReadTx",
    "SnapshotError",
    "Store",
    "StoreError",
    "StoreImage",
    "StoreObject",
    "Subscription",
    "TransactionTooLarge",
    "UpdateResult",
    "VersionConflict",
    "WatchClosed",
    "WatchOverflow",
    "WriteTx",
    "decode_snapshot",
    "encode_snapshot",
    "kind_of",
    "new_id",
]
