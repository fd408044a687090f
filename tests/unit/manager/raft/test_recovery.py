"""`--force-new-cluster` on the log: the survivor becomes the only member and keeps what it
had, committed or not; a node that is no member, or has no log, is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.ca.cluster_ca import ClusterCA
from manager.raft import Raft, RaftConfig, RaftDataError
from manager.raft.core import (
    ConfigChange,
    ConfigChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
)
from manager.raft.raft import WAL_FILE, bootstrap_entries
from manager.raft.recovery import force_new_cluster
from manager.raft.wal import WriteAheadLog
from manager.store import Store, new_id
from shoal.v1 import objects_pb2, store_pb2
from tests.polling import until_awaited
from tests.raft_support import free_port, node_credentials


def membership_of(entries: list[Entry]) -> Membership:
    membership = Membership(frozenset())
    for entry in entries:
        if entry.kind is EntryKind.CONFIG:
            membership = ConfigChange.decode(entry.data).apply(membership)
    return membership


def task_entry(term: int, index: int, name: str) -> Entry:
    actions = store_pb2.StoreActions()
    task = objects_pb2.Task(id=new_id())
    task.annotations.name = name
    actions.actions.add(kind=store_pb2.StoreAction.CREATE, task=task)
    return Entry(term, index, EntryKind.NORMAL, actions.SerializeToString())


def three_member_log(data_dir: Path) -> None:
    """A log as m1 would hold it: the group's first entries, a write committed, a write
    it had not yet seen committed."""
    data_dir.mkdir()
    entries = bootstrap_entries(["m1", "m2", "m3"])
    entries += [task_entry(2, 7, "committed"), task_entry(2, 8, "uncommitted")]
    wal = WriteAheadLog(data_dir / WAL_FILE)
    wal.save(entries, HardState(2, "m2", 7))
    wal.close()


def test_the_survivor_becomes_the_only_voter_and_keeps_every_entry(tmp_path: Path) -> None:
    data_dir = tmp_path / "raft"
    three_member_log(data_dir)
    assert force_new_cluster(data_dir, "m1") == ["m2", "m3"]
    wal = WriteAheadLog(data_dir / WAL_FILE)
    wal.close()
    loaded = wal.loaded
    assert membership_of(loaded.entries) == Membership(frozenset({"m1"}))
    assert [e.index for e in loaded.entries] == list(range(1, 11))
    assert loaded.hard_state == HardState(2, "m2", 10)  # everything counts as committed


def test_a_learner_survivor_is_promoted_first(tmp_path: Path) -> None:
    data_dir = tmp_path / "raft"
    data_dir.mkdir()
    entries = bootstrap_entries(["m1", "m2"])
    entries.append(
        Entry(2, 5, EntryKind.CONFIG, ConfigChange(ConfigChangeKind.ADD_LEARNER, "m3").encode())
    )
    wal = WriteAheadLog(data_dir / WAL_FILE)
    wal.save(entries, HardState(2, "", 5))
    wal.close()
    assert force_new_cluster(data_dir, "m3") == ["m1", "m2"]
    wal = WriteAheadLog(data_dir / WAL_FILE)
    wal.close()
    assert membership_of(wal.loaded.entries) == Membership(frozenset({"m3"}))


def test_a_node_that_is_no_member_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "raft"
    three_member_log(data_dir)
    with pytest.raises(RaftDataError, match="m9 is not a member"):
        force_new_cluster(data_dir, "m9")


def test_no_log_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RaftDataError, match="no raft log"):
        force_new_cluster(tmp_path, "m1")


async def test_the_forced_node_leads_alone_with_its_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "raft"
    three_member_log(data_dir)
    force_new_cluster(data_dir, "m1")
    ca = ClusterCA.initialize()
    credentials = node_credentials(ca, "m1")
    port = free_port()
    store = Store()
    # The others' addresses are still in its address book: no one answers there.
    peers = {"m2": "127.0.0.1:1", "m3": "127.0.0.1:2"}
    raft = Raft(
        RaftConfig(node_id="m1", address=f"127.0.0.1:{port}", data_dir=data_dir, peers=peers),
        store,
        credentials,
    )
    store.proposer = raft
    await raft.start()
    try:
        await until_awaited(
            lambda: _leads(raft), "the forced node leads alone", timeout_s=10, interval_s=0.02
        )
        names = store.view(lambda tx: sorted(t.annotations.name for t in tx.list(objects_pb2.Task)))
        assert names == ["committed", "uncommitted"]
        status = await raft.status()
        assert status.members == ["m1"]
    finally:
        await raft.stop()


async def _leads(raft: Raft) -> bool:
    return raft.leadership.current.is_leader
