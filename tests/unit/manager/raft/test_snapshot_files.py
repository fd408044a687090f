"""Raft snapshot files: Shoal's format, written off the tick thread, sent and received in
chunks, and the configured members kept after a restart (bakwc/PySyncObj#133)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pysyncobj.config import SERIALIZER_STATE

from manager.raft.errors import RaftDataError
from manager.raft.journal import DurableJournal
from manager.raft.snapshot_files import RaftSnapshot, SnapshotFiles, decode_file, encode_file
from manager.store import Store, encode_snapshot
from shoal.v1 import objects_pb2, store_pb2
from tests.polling import until

ME, PEERS = "10.0.0.1:4242", ["10.0.0.2:4242", "10.0.0.3:4242"]


class Member:
    def __init__(self, address: str) -> None:
        self.id = address


def filled_store(tasks: int, pad: int = 0) -> Store:
    store = Store()
    for index in range(1, tasks + 1):
        batch = store_pb2.StoreActions()
        task = objects_pb2.Task(id=f"t{index}", slot=index)
        task.annotations.labels["pad"] = "x" * pad
        batch.actions.add(kind=store_pb2.StoreAction.CREATE, task=task)
        store.apply(index, batch)
    return store


def snapshot_files(tmp_path: Path, store: Store, backlog: int = 0) -> SnapshotFiles:
    tmp_path.mkdir(exist_ok=True)
    journal = DurableJournal(tmp_path / "raft.journal")
    return SnapshotFiles(
        tmp_path / "raft.snapshot", store, journal, [ME, *PEERS], 1024, lambda node: backlog
    )


def write_snapshot(files: SnapshotFiles, last_index: int) -> None:
    last, previous = (b"\x00last", last_index, 2), (b"\x01", last_index - 1, 2)
    files.serialize((None, last, previous, {Member(ME), Member("10.0.0.9:4242")}), last_index - 1)
    state, serialize_id = until(
        files.checkSerializing,
        "the snapshot written",
        holds=lambda serializing: serializing[0] != SERIALIZER_STATE.SERIALIZING,
        timeout_s=10,
        interval_s=0.01,
    )
    assert (state, serialize_id) == (SERIALIZER_STATE.SUCCESS, last_index - 1)
    assert files.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)


def test_file_round_trip_and_corruption(tmp_path: Path) -> None:
    store = filled_store(5)
    snapshot = RaftSnapshot((b"a", 5, 1), (b"b", 4, 1), PEERS, store.capture())
    data = encode_file(snapshot)
    decoded = decode_file(data, tmp_path)
    assert (decoded.last, decoded.previous, decoded.members) == ((b"a", 5, 1), (b"b", 4, 1), PEERS)
    assert encode_snapshot(decoded.store) == encode_snapshot(store.capture())
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    with pytest.raises(RaftDataError, match="checksum mismatch"):
        decode_file(bytes(flipped), tmp_path)
    with pytest.raises(RaftDataError, match="not a Shoal raft snapshot"):
        decode_file(b"\x80\x02pickle", tmp_path)
    with pytest.raises(RaftDataError, match="truncated"):
        decode_file(data[:14], tmp_path)


def test_written_snapshot_loads_with_the_configured_members(tmp_path: Path) -> None:
    store = filled_store(20)
    files = snapshot_files(tmp_path, store)
    write_snapshot(files, 21)
    assert files.snapshot_index == 21
    assert not (tmp_path / "raft.snapshot.tmp").exists()

    restarted = Store()
    loader = snapshot_files(tmp_path, restarted)
    _, last, previous, members = loader.deserialize()
    assert (last, previous) == ((b"\x00last", 21, 2), (b"\x01", 20, 2))
    assert members == PEERS  # not the list stored in the file (and never this node)
    assert encode_snapshot(restarted.capture()) == encode_snapshot(store.capture())


def test_a_snapshot_streams_in_chunks_and_installs_with_the_leaders_members(
    tmp_path: Path,
) -> None:
    store = filled_store(200, pad=100)
    leader = snapshot_files(tmp_path / "leader", store)
    write_snapshot(leader, 201)
    size = leader.path.stat().st_size
    assert size > 20 * 1024

    follower_store = Store()
    follower = snapshot_files(tmp_path / "follower", follower_store)
    chunks = 0
    node: Any = object()
    while True:
        chunk = leader.getTransmissionData(node)
        assert chunk is not None
        chunks += 1
        assert len(chunk[0]) <= 1024 and chunk[1] == (chunks == 1)
        assert chunk[3] == (chunks - 1) * 1024
        if follower.setTransmissionData(chunk):
            break
        assert chunks < 1000
    assert chunks == -(-size // 1024)
    _, last, _, members = follower.deserialize()
    assert last[1] == 201
    assert members == ["10.0.0.9:4242"]  # the leader's list, without this node
    assert encode_snapshot(follower_store.capture()) == encode_snapshot(store.capture())
    assert not (tmp_path / "follower" / "raft.snapshot.incoming").exists()


def test_sending_pauses_while_the_connection_is_backed_up(tmp_path: Path) -> None:
    store = filled_store(10)
    files = snapshot_files(tmp_path, store, backlog=10_000)
    write_snapshot(files, 11)
    assert files.getTransmissionData(object()) is None


def test_a_corrupt_snapshot_is_fatal_not_ignored(tmp_path: Path) -> None:
    files = snapshot_files(tmp_path, Store())
    files.path.write_bytes(b"garbage")
    with pytest.raises(RaftDataError):
        files.deserialize()
    assert isinstance(files.fatal_error, RaftDataError)


def test_journal_entries_after_the_snapshot_are_kept_after_a_crash(tmp_path: Path) -> None:
    """A crash after the snapshot was written but before the journal was trimmed."""
    store = filled_store(3)
    files = snapshot_files(tmp_path, store)
    journal = files._journal
    log = [(b"\x01", 1, 1), (b"e2", 2, 1), (b"\x01", 3, 2), (b"\x00last", 4, 2), (b"e5", 5, 2)]
    for entry in log:
        journal.add(*entry)
    write_snapshot(files, 4)  # previous entry (b"\x01", 3, 2), last (b"\x00last", 4, 2)
    files.deserialize()
    assert [journal[i] for i in range(len(journal))] == log[2:]


def test_a_gap_in_the_chunks_is_never_assembled(tmp_path: Path) -> None:
    """Chunks lost with a dropped connection: the member waits for the transfer to start
    over (the leader restarts it on reconnecting) instead of storing a torn snapshot."""
    store = filled_store(100, pad=100)
    leader = snapshot_files(tmp_path / "leader", store)
    write_snapshot(leader, 101)
    follower = snapshot_files(tmp_path / "follower", Store())
    node: Any = object()

    def next_chunk() -> Any:
        chunk = leader.getTransmissionData(node)
        assert chunk is not None
        return chunk

    assert not follower.setTransmissionData(next_chunk())
    next_chunk()  # lost
    for _ in range(3):
        assert not follower.setTransmissionData(next_chunk())
    leader.cancelTransmisstion(node)  # reconnected: start over
    while not follower.setTransmissionData(next_chunk()):
        pass
    follower.deserialize()
    assert follower.path.read_bytes() == leader.path.read_bytes()
