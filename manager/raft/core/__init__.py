"""Shoal's Raft consensus core: a deterministic state machine, no I/O, no clock, no threads.

Modelled on etcd/raft, which SwarmKit builds on: the caller feeds it ticks (`Raft.tick`),
messages from peers (`Raft.step`) and proposals, and collects what to do in a `Ready`:
entries and hard state to write durably, then messages to send, committed entries to apply,
a snapshot to install. Nothing leaves the core before the caller says it is durable
(`Raft.advance`). Pre-vote, check-quorum, learners, single-server membership changes and
leadership transfer are in the core; transport, storage and the state machine are the
caller's. A deterministic simulation (tests/unit/manager/raft/core) checks Raft's safety
properties over thousands of seeded runs with loss, reordering, duplication, partitions and
crashes.
"""

from manager.raft.core.raft import NotLeader, ProposalDropped, Raft, Role
from manager.raft.core.types import (
    ConfigChange,
    ConfigChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    Message,
    MsgType,
    ReadState,
    Ready,
    Snapshot,
)

__all__ = [
    "ConfigChange",
    "ConfigChangeKind",
    "Entry",
    "EntryKind",
    "HardState",
    "Membership",
    "Message",
    "MsgType",
    "NotLeader",
    "ProposalDropped",
    "Raft",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
]
