"""The write-ahead log of the Raft core (manager.raft.core): entries and hard state on disk,
durable before anything that depends on them leaves the node.

One file, only ever appended to between compactions: MAGIC, then records
`<u32 length><u32 crc32><u8 kind><payload>` (length and crc cover kind and payload):

- ENTRY: a RaftEntry. An entry whose index is not past the last one replaces the log from
  that index on (a new leader overwrote a suffix): nothing is ever cut in place.
- HARD_STATE: a RaftHardState; the last one counts.
- SNAPSHOT: a RaftSnapshotMeta; the log starts after it (the entries it covers go).

`save` writes what a Ready asks in one append and one fdatasync, and a short write or a
full disk is an error, never an acknowledgement. `compact` rewrites the file without what
a snapshot covers (write, fsync, rename, fsync of the directory). What the file held when
opened is `loaded`; after that the caller (the core) holds the log in memory, and the log
keeps only the last hard state.

Opening: the last record cut short or half written (a crash mid-append, never
acknowledged; only zeros may follow it) is trimmed; any other bad record (a checksum that
does not match with records after it, an unknown kind) is damage to what this node
acknowledged, and opening fails naming the file and the offset: such a node must not take
part with a log it lost.
"""

from __future__ import annotations

import enum
import fcntl
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError

from manager.raft.core import Entry, HardState, Snapshot
from manager.raft.core.codec import (
    CodecError,
    entry_from_proto,
    entry_to_proto,
    hard_state_from_proto,
    hard_state_to_proto,
    snapshot_from_meta,
    snapshot_meta,
)
from manager.raft.durable import PRIVATE, create_private, fsync_dir
from manager.raft.errors import RaftDataError, RaftError
from shoal.v1 import raft_pb2

MAGIC = b"SHOALWAL\x00\x00\x00\x01"
_HEAD = struct.Struct("<II")  # length, crc32 of kind + payload
MAX_RECORD = 64 << 20


class Kind(enum.IntEnum):
    ENTRY = 1
    HARD_STATE = 2
    SNAPSHOT = 3


@dataclass
class Loaded:
    """What the log held: the last snapshot's metadata (its data is the caller's file),
    the entries after it, the hard state."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)


def _record(kind: Kind, payload: bytes) -> bytes:
    body = bytes([kind]) + payload
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


class WriteAheadLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded = Loaded()
        self._fd = self._open()
        self._hard_state = self.loaded.hard_state

    # -- opening ----------------------------------------------------------------------------

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
        try:
            _lock(fd, self.path)
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            if not data:
                _write_all(fd, MAGIC, 0, self.path)
                os.fsync(fd)
                fsync_dir(self.path.parent)
                self._end = len(MAGIC)
                return fd
            if not data.startswith(MAGIC):
                raise RaftDataError(f"{self.path} is not a Shoal raft log (bad header)")
            self._end = self._replay(data)
            if self._end < len(data):
                os.ftruncate(fd, self._end)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _replay(self, data: bytes) -> int:
        """Apply every record; the offset where the good records end."""
        offset = len(MAGIC)
        while offset < len(data):
            if len(data) - offset < _HEAD.size:
                return offset  # a header cut short: torn
            length, crc = _HEAD.unpack_from(data, offset)
            start = offset + _HEAD.size
            if not data[offset:].strip(b"\x00"):
                return offset  # zeros where records were to go: torn
            if length == 0:
                raise self._damaged(offset, "an empty record")
            if start + length > len(data):
                return offset  # a record cut short: torn
            body = data[start : start + length]
            if length > MAX_RECORD or zlib.crc32(body) != crc:
                if not data[start + length :].strip(b"\x00"):
                    return offset  # the last record, half written (a file grows in zeros)
                raise self._damaged(offset, "its checksum does not match")
            try:
                self._apply(Kind(body[0]), body[1:])
            except (ValueError, DecodeError, CodecError) as exc:
                raise self._damaged(offset, str(exc)) from None
            offset = start + length
        return offset

    def _damaged(self, offset: int, why: str) -> RaftDataError:
        return RaftDataError(
            f"raft log {self.path}: the record at byte {offset} is damaged ({why}); this "
            "manager may have lost entries it acknowledged: restore its data directory from "
            "a backup, or remove it from the cluster and join it again"
        )

    def _apply(self, kind: Kind, payload: bytes) -> None:
        loaded = self.loaded
        if kind is Kind.ENTRY:
            entry = entry_from_proto(raft_pb2.RaftEntry.FromString(payload))
            first = loaded.snapshot.index + 1 if loaded.snapshot else 1
            if entry.index < first:
                return  # covered by the snapshot
            position = entry.index - first
            if position > len(loaded.entries):
                raise ValueError(f"entry {entry.index} leaves a gap after {first + position - 1}")
            del loaded.entries[position:]
            loaded.entries.append(entry)
        elif kind is Kind.HARD_STATE:
            loaded.hard_state = hard_state_from_proto(raft_pb2.RaftHardState.FromString(payload))
        else:
            snapshot = snapshot_from_meta(raft_pb2.RaftSnapshotMeta.FromString(payload), b"")
            loaded.snapshot = snapshot
            loaded.entries = [e for e in loaded.entries if e.index > snapshot.index]
            if loaded.entries and loaded.entries[0].index != snapshot.index + 1:
                loaded.entries = []  # the snapshot replaces a log that does not follow it

    # -- writing ----------------------------------------------------------------------------

    def save(
        self,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        """Append what a Ready asks (snapshot first, then entries, then hard state) and make
        it durable before returning."""
        records = []
        if snapshot is not None:
            records.append(_record(Kind.SNAPSHOT, snapshot_meta(snapshot).SerializeToString()))
        for entry in entries:
            records.append(_record(Kind.ENTRY, entry_to_proto(entry).SerializeToString()))
        if hard_state is not None:
            payload = hard_state_to_proto(hard_state).SerializeToString()
            records.append(_record(Kind.HARD_STATE, payload))
        if not records:
            return
        data = b"".join(records)
        _write_all(self._fd, data, self._end, self.path)
        os.fdatasync(self._fd)
        self._end += len(data)
        if hard_state is not None:
            self._hard_state = hard_state

    def compact(self, snapshot: Snapshot, entries: Sequence[Entry]) -> None:
        """The caller's snapshot (its data already durable elsewhere) covers the log up to
        its index: rewrite the file as the snapshot's metadata and `entries`, the durable
        entries after it."""
        if entries and entries[0].index != snapshot.index + 1:
            raise ValueError(f"entries from {entries[0].index} do not follow {snapshot.index}")
        tmp = self.path.with_name(self.path.name + ".tmp")
        hard_state = hard_state_to_proto(self._hard_state).SerializeToString()
        body = [
            MAGIC,
            _record(Kind.SNAPSHOT, snapshot_meta(snapshot).SerializeToString()),
            *(_record(Kind.ENTRY, entry_to_proto(e).SerializeToString()) for e in entries),
            _record(Kind.HARD_STATE, hard_state),
        ]
        data = b"".join(body)
        with create_private(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        _lock(fd, self.path)
        os.close(self._fd)
        self._fd = fd
        self._end = len(data)

    def close(self) -> None:
        os.close(self._fd)


def _lock(fd: int, path: Path) -> None:
    """One process at a time: two writing one log would destroy it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RaftError(
            f"raft log {path} is in use by another process (is this manager running?)"
        ) from None


def _write_all(fd: int, data: bytes, offset: int, path: Path) -> None:
    """pwrite all of `data`; a write that stops short (a full disk) raises."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"raft log {path}: nothing written at byte {offset} (disk full?)")
        view, offset = view[written:], offset + written
