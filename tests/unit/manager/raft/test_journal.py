"""The durable journal: entries and raft meta survive reopening; torn tails are cut."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manager.raft.errors import RaftDataError
from manager.raft.journal import MAGIC, DurableJournal


def entries(journal: DurableJournal) -> list[tuple[bytes, int, int]]:
    return [journal[i] for i in range(len(journal))]


def test_entries_and_meta_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = DurableJournal(path)
    for index in range(1, 6):
        journal.add(f"cmd{index}".encode(), index, 1 + index // 3)
    journal.setCurrentTerm(7, "10.0.0.2:4242")
    journal.setRaftCommitIndex(4)
    journal._destroy()

    again = DurableJournal(path)
    assert entries(again) == [(f"cmd{i}".encode(), i, 1 + i // 3) for i in range(1, 6)]
    assert again.getCurrentTerm() == 7
    assert again.getVotedForNodeId() == "10.0.0.2:4242"
    assert again.getRaftCommitIndex() == 4


def test_truncations_are_persisted(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = DurableJournal(path)
    for index in range(1, 11):
        journal.add(b"x" * index, index, 1)
    journal.deleteEntriesFrom(8)  # a conflicting suffix replaced by the leader's
    journal.add(b"new", 9, 2)
    journal.deleteEntriesTo(3)  # after a snapshot
    assert [e[1] for e in entries(journal)] == [4, 5, 6, 7, 8, 9]
    journal.sync()
    os.close(journal._fd)  # a crash: no orderly close

    again = DurableJournal(path)
    assert [e[1] for e in entries(again)] == [4, 5, 6, 7, 8, 9]
    assert again[-1] == (b"new", 9, 2)
    again.clear()
    again.add(b"after-clear", 20, 3)
    again._destroy()
    assert entries(DurableJournal(path)) == [(b"after-clear", 20, 3)]


def test_a_torn_last_record_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = DurableJournal(path)
    journal.add(b"kept", 1, 1)
    journal.add(b"torn", 2, 1)
    journal._destroy()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 2)

    again = DurableJournal(path)
    assert entries(again) == [(b"kept", 1, 1)]
    again.add(b"next", 2, 1)
    again._destroy()
    assert entries(DurableJournal(path)) == [(b"kept", 1, 1), (b"next", 2, 1)]


def test_a_corrupt_record_above_the_commit_index_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = DurableJournal(path)
    journal.add(b"good", 1, 1)
    journal.add(b"flipped", 2, 1)
    journal.setRaftCommitIndex(1)
    journal._destroy()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert entries(DurableJournal(path)) == [(b"good", 1, 1)]


def test_a_corrupt_record_at_or_below_the_commit_index_stops_the_node(tmp_path: Path) -> None:
    """Damage to an acknowledged entry is never cut silently (a node that then voted would
    break Raft's safety): opening fails, naming the file and the offset."""
    path = tmp_path / "raft.journal"
    journal = DurableJournal(path)
    for index in range(1, 5):
        journal.add(f"entry-{index}".encode(), index, 1)
    journal.setRaftCommitIndex(3)
    journal._destroy()
    data = bytearray(path.read_bytes())
    second = len(MAGIC) + 8 + 16 + len(b"entry-1")
    data[second + 12] ^= 0xFF  # inside entry 2's body: valid records follow it
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(RaftDataError, match=rf"{path}: the record at byte {second} \(entry 2,"):
        DurableJournal(path)
    assert path.read_bytes() == before  # nothing cut


def test_a_blank_torn_first_record_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(MAGIC + bytes(5))
    (tmp_path / "raft.journal.meta").write_text('{"commit_index": 7}')
    assert entries(DurableJournal(path)) == []
    assert path.read_bytes() == MAGIC


def test_a_short_write_is_an_error_never_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = DurableJournal(tmp_path / "raft.journal")
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: len(data) - 3)
    with pytest.raises(OSError, match="disk full"):
        journal.add(b"lost", 1, 1)
    assert entries(journal) == []


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(b"PYSYNCOBJ" + bytes(40))
    with pytest.raises(RaftDataError, match="not a Shoal raft journal"):
        DurableJournal(path)
    ok = tmp_path / "ok.journal"
    ok.write_bytes(MAGIC)
    (tmp_path / "ok.journal.meta").write_text("{not json")
    with pytest.raises(RaftDataError, match="is not JSON"):
        DurableJournal(ok)


def test_entries_the_leader_sends_again_are_not_rewritten(tmp_path: Path) -> None:
    """pysyncobj truncates before re-adding entries the follower already has; identical
    ones stay on disk untouched, a differing one cuts the log there."""
    path = tmp_path / "raft.journal"
    journal = DurableJournal(path)
    for index in range(1, 6):
        journal.add(b"e", index, 1)
    journal.sync()
    size = path.stat().st_size

    journal.deleteEntriesFrom(2)  # the leader resends entries 3 and 4
    journal.add(b"e", 3, 1)
    journal.add(b"e", 4, 1)
    assert path.stat().st_size == size  # nothing was cut or rewritten yet
    assert [e[1] for e in entries(journal)] == [1, 2, 3, 4]  # entry 5 is gone, as asked

    journal.deleteEntriesFrom(1)
    journal.add(b"e", 2, 1)
    journal.add(b"other", 3, 2)  # a conflict: cut here, then append
    journal.sync()
    os.close(journal._fd)
    assert entries(DurableJournal(path)) == [(b"e", 1, 1), (b"e", 2, 1), (b"other", 3, 2)]
