"""The Raft core's write-ahead log: what is saved survives; a torn tail is trimmed, damage
before it stops the node; a short write is never an acknowledgement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from manager.raft.core import Entry, HardState, Membership, Snapshot
from manager.raft.errors import RaftDataError, RaftError
from manager.raft.wal import MAGIC, Loaded, WriteAheadLog

MEMBERS = Membership(frozenset({"a", "b", "c"}))


def entries(*spec: tuple[int, int]) -> list[Entry]:
    return [Entry(term, index, data=f"{term}/{index}".encode()) for term, index in spec]


def reopened(path: Path) -> WriteAheadLog:
    return WriteAheadLog(path)


def read_back(path: Path) -> Loaded:
    """What a fresh open finds (the log closed again: one process holds it at a time)."""
    wal = WriteAheadLog(path)
    wal.close()
    return wal.loaded


def test_entries_and_hard_state_survive_and_a_new_leader_overwrites_a_suffix(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raft.wal"
    wal = WriteAheadLog(path)
    wal.save(entries((1, 1), (1, 2), (1, 3), (1, 4)), HardState(1, "a", 2))
    wal.save(entries((2, 3)), HardState(2, "b", 2))  # entries 3.. replaced by term 2's
    wal.close()
    again = read_back(path)
    assert again.entries == entries((1, 1), (1, 2), (2, 3))
    assert again.hard_state == HardState(2, "b", 2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_snapshot_starts_the_log_and_compaction_rewrites_it(tmp_path: Path) -> None:
    path = tmp_path / "raft.wal"
    wal = WriteAheadLog(path)
    wal.save(entries(*((1, i) for i in range(1, 11))), HardState(1, "a", 10))
    size = path.stat().st_size
    wal.compact(Snapshot(8, 1, MEMBERS), entries((1, 9), (1, 10)))
    assert path.stat().st_size < size
    wal.save(entries((1, 11)))
    wal.close()
    again = read_back(path)
    assert again.snapshot == Snapshot(8, 1, MEMBERS)
    assert [e.index for e in again.entries] == [9, 10, 11]
    assert again.hard_state == HardState(1, "a", 10)  # kept through the rewrite
    # A snapshot received from the leader replaces a log that does not lead up to it.
    wal = reopened(path)
    wal.save(snapshot=Snapshot(20, 3, MEMBERS), hard_state=HardState(3, "", 20))
    wal.close()
    again = read_back(path)
    assert (again.snapshot, again.entries) == (Snapshot(20, 3, MEMBERS), [])


@pytest.mark.parametrize("tail", [b"\x07\x00", bytes(100)])
def test_a_torn_tail_is_trimmed(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "raft.wal"
    wal = WriteAheadLog(path)
    wal.save(entries((1, 1), (1, 2)), HardState(1, "a", 1))
    wal.save(entries((1, 3)))
    wal.close()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 3)  # the last record cut short
        f.seek(0, os.SEEK_END)
        f.write(tail)
    wal = reopened(path)
    assert [e.index for e in wal.loaded.entries] == [1, 2]
    wal.save(entries((1, 3)))
    wal.close()
    assert [e.index for e in read_back(path).entries] == [1, 2, 3]


def test_damage_before_the_end_stops_the_node_naming_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "raft.wal"
    wal = WriteAheadLog(path)
    wal.save(entries((1, 1)))
    wal.save(entries((1, 2)), HardState(1, "a", 2))
    wal.close()
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 10] ^= 0xFF  # inside the first record; more follow it
    path.write_bytes(bytes(data))
    with pytest.raises(RaftDataError, match=rf"{path}: the record at byte {len(MAGIC)} is damaged"):
        WriteAheadLog(path)
    assert path.read_bytes() == bytes(data)  # nothing trimmed


def test_a_short_write_is_an_error_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.wal"
    wal = WriteAheadLog(path)
    wal.save(entries((1, 1)), HardState(1, "a", 1))
    real = os.pwrite
    calls = iter([5, 0])  # 5 bytes go, then the disk is full
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: next(calls))
    with pytest.raises(OSError, match="disk full"):
        wal.save(entries((1, 2)), HardState(1, "a", 2))
    monkeypatch.setattr(os, "pwrite", real)
    wal.close()
    again = read_back(path)
    assert (again.entries, again.hard_state) == (entries((1, 1)), HardState(1, "a", 1))


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.wal"
    path.write_bytes(b"SHOALJNL" + bytes(20))
    with pytest.raises(RaftDataError, match="not a Shoal raft log"):
        WriteAheadLog(path)


def test_one_process_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "raft.wal"
    wal = WriteAheadLog(path)
    with pytest.raises(RaftError, match="in use by another process"):
        WriteAheadLog(path)
    wal.compact(Snapshot(0, 0, MEMBERS), [])  # the new file is locked too
    with pytest.raises(RaftError, match="in use by another process"):
        WriteAheadLog(path)
    wal.close()
    WriteAheadLog(path).close()
