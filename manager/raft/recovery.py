"""`swarmd init --force-new-cluster`: a group that lost its quorum for good (most managers
gone) is restarted from one survivor, keeping its store.

As etcd's --force-new-cluster: the survivor's log gets one membership change per other
member, removing it (promoting the survivor first if it was a learner), and its commit
index moves to the end of its log. Entries it held but had not seen committed are kept
and count as committed: with the others gone there is no one left to say otherwise. Run
only with the manager stopped; the next start elects it alone.
"""

from __future__ import annotations

from pathlib import Path

from manager.raft.core import (
    ConfigChange,
    ConfigChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
)
from manager.raft.errors import RaftDataError
from manager.raft.raft import SNAPSHOT_FILE, WAL_FILE
from manager.raft.snapshot_store import SnapshotStore
from manager.raft.wal import WriteAheadLog


def force_new_cluster(data_dir: Path, node_id: str) -> list[str]:
    """Make `node_id` the only member of the group in `data_dir`; the members removed."""
    wal_path = data_dir / WAL_FILE
    if not wal_path.exists():
        raise RaftDataError(f"no raft log in {data_dir}: this node holds no store to keep")
    snapshot = SnapshotStore(data_dir / SNAPSHOT_FILE).load()
    wal = WriteAheadLog(wal_path)
    try:
        loaded = wal.loaded
        entries = [e for e in loaded.entries if snapshot is None or e.index > snapshot.index]
        membership = snapshot.membership if snapshot is not None else Membership(frozenset())
        last_index, last_term = (snapshot.index, snapshot.term) if snapshot else (0, 0)
        for entry in entries:
            if entry.kind is EntryKind.CONFIG:
                membership = ConfigChange.decode(entry.data).apply(membership)
            last_index, last_term = entry.index, entry.term
        if node_id not in membership.members:
            raise RaftDataError(
                f"node {node_id} is not a member of the raft group in {data_dir}: it was "
                "removed, or never joined"
            )
        term = max(loaded.hard_state.term, last_term)
        changes = []
        if node_id in membership.learners:
            changes.append(ConfigChange(ConfigChangeKind.PROMOTE, node_id))
        gone = sorted(membership.members - {node_id})
        changes += [ConfigChange(ConfigChangeKind.REMOVE, member) for member in gone]
        new = [
            Entry(term, last_index + 1 + i, EntryKind.CONFIG, change.encode())
            for i, change in enumerate(changes)
        ]
        commit = new[-1].index if new else last_index
        wal.save(new, HardState(term, loaded.hard_state.vote, commit))
        return gone
    finally:
        wal.close()
