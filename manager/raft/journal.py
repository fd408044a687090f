"""The raft log on disk, in Shoal's own format, fsynced before anything is acknowledged.

It replaces pysyncobj's FileJournal (an mmap that is never synced, with a pickled meta
file): same interface, plus `sync()`, which the node calls before any message leaves it
and after every tick, so an entry is on disk before this node counts it or acks it.

Journal file: MAGIC, then records `<u32 length><u32 crc32><u64 index><u64 term><command>`
(length and crc cover index, term and command). A torn last record (a crash mid-write,
never acknowledged) above the recorded commit index is cut off when the journal is opened;
a bad record at or below it is damage to acknowledged entries, and opening fails naming the
file and the offset (this manager must not take part with a log it no longer has).
Meta file: JSON {term, voted_for, commit_index}, replaced durably on every term or vote
change (Raft needs those on disk before answering) and once a second for the commit index.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from manager.raft.durable import PRIVATE, create_private, fsync_dir, write_durably
from manager.raft.errors import RaftDataError

log = logging.getLogger(__name__)

MAGIC = b"SHOALJNL\x00\x00\x00\x01"
_RECORD_HEAD = struct.Struct("<II")
_INDEX_TERM = struct.Struct("<QQ")

Entry = tuple[bytes, int, int]  # (command, raft index, term), as pysyncobj keeps them


def _record(command: bytes, index: int, term: int) -> bytes:
    body = _INDEX_TERM.pack(index, term) + command
    return _RECORD_HEAD.pack(len(body), zlib.crc32(body)) + body


class DurableJournal:
    """pysyncobj's Journal interface (the camelCase names are pysyncobj's)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._meta_path = path.with_name(path.name + ".meta")
        self._entries: list[Entry] = []
        self._offsets: list[int] = []  # file offset of each entry's record
        self._meta = self._read_meta()
        self._meta_dirty = False
        self._dirty = False
        # Entries ever added (a counter the node uses to see that a tick appended some).
        self.appended = 0
        # Set by deleteEntriesFrom: the position up to which re-added entries matched.
        self._rewrite_at: int | None = None
        self._fd = self._open_and_load()

    # -- loading --------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, Any]:
        try:
            text = self._meta_path.read_text()
        except FileNotFoundError:
            return {}
        try:
            meta = json.loads(text)
        except ValueError as error:
            raise RaftDataError(f"raft meta file {self._meta_path} is not JSON: {error}") from None
        if not isinstance(meta, dict):
            raise RaftDataError(f"raft meta file {self._meta_path} does not hold an object")
        return meta

    def _open_and_load(self) -> int:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, PRIVATE)
        os.fchmod(fd, PRIVATE)  # a journal an older version wrote 0644
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        if not data:
            os.write(fd, MAGIC)
            os.fsync(fd)
            fsync_dir(self._path.parent)
            self._end = len(MAGIC)
            return fd
        if not data.startswith(MAGIC):
            os.close(fd)
            raise RaftDataError(f"{self._path} is not a Shoal raft journal (bad header)")
        offset = len(MAGIC)
        while offset < len(data):
            entry = self._parse(data, offset)
            if entry is None:
                try:
                    self._check_torn(data, offset)
                except RaftDataError:
                    os.close(fd)
                    raise
                log.warning(
                    "raft journal %s: cutting a torn record at byte %d of %d (written, "
                    "never acknowledged)",
                    self._path,
                    offset,
                    len(data),
                )
                os.ftruncate(fd, offset)
                os.fsync(fd)
                break
            self._entries.append(entry)
            self._offsets.append(offset)
            offset += _RECORD_HEAD.size + len(entry[0]) + _INDEX_TERM.size
        self._end = min(offset, len(data))
        os.lseek(fd, self._end, os.SEEK_SET)
        return fd

    def _check_torn(self, data: bytes, offset: int) -> None:
        """A record that does not parse may be cut only if it cannot hold an entry this
        node acknowledged: one past the recorded commit index, or, when its index is
        unknown (the first record), a tail too short or blank to be one."""
        commit = int(self._meta.get("commit_index", 0))
        expected = self._entries[-1][1] + 1 if self._entries else None
        tail = data[offset:]
        blank = len(tail) < _RECORD_HEAD.size or not tail.strip(b"\x00")
        if expected is None and (blank or commit == 0):
            return
        if expected is not None and expected > commit:
            return
        where = f"entry {expected}" if expected is not None else "the first entry"
        raise RaftDataError(
            f"raft journal {self._path}: the record at byte {offset} ({where}, at or below "
            f"the commit index {commit}) is corrupt; this manager's log lost acknowledged "
            "entries: restore its data directory from a backup, or remove it from the "
            "cluster and join it again"
        )

    @staticmethod
    def _parse(data: bytes, offset: int) -> Entry | None:
        if offset + _RECORD_HEAD.size > len(data):
            return None
        length, crc = _RECORD_HEAD.unpack_from(data, offset)
        start = offset + _RECORD_HEAD.size
        body = data[start : start + length]
        if length < _INDEX_TERM.size or len(body) != length or zlib.crc32(body) != crc:
            return None
        index, term = _INDEX_TERM.unpack_from(body)
        return (bytes(body[_INDEX_TERM.size :]), index, term)

    # -- durability -----------------------------------------------------------------------

    def sync(self) -> None:
        """Make every entry added so far durable (one fdatasync for a whole batch)."""
        self._finish_rewrite()
        if self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False

    def _store_meta(self) -> None:
        write_durably(self._meta_path, json.dumps(self._meta).encode())
        self._meta_dirty = False

    # -- pysyncobj's Journal interface ----------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        entry = (bytes(command), idx, term)
        at = self._rewrite_at
        if at is not None:
            if at < len(self._entries) and self._entries[at] == entry:
                self._rewrite_at = at + 1  # the same entry again: keep the stored one
                return
            self._finish_rewrite()
        record = _record(*entry)
        written = os.pwrite(self._fd, record, self._end)
        if written != len(record):  # a full disk ends a write short without an error
            raise OSError(
                f"raft journal {self._path}: wrote {written} of {len(record)} bytes (disk full?)"
            )
        self._entries.append(entry)
        self._offsets.append(self._end)
        self._end += len(record)
        self._dirty = True
        self.appended += 1

    def clear(self) -> None:
        self._rewrite_at = None
        self._truncate_at(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """pysyncobj calls this before every append from the leader that does not extend
        the log, then re-adds entries it often already has. Truncating them on disk and
        writing them again would leave a window in which a crash loses entries already
        acknowledged; instead, the cut waits until an added entry differs (or the log is
        read), and identical entries are kept as they are."""
        self._finish_rewrite()
        if entryFrom < len(self._entries):
            self._rewrite_at = entryFrom

    def _finish_rewrite(self) -> None:
        at, self._rewrite_at = self._rewrite_at, None
        if at is not None and at < len(self._entries):
            self._truncate_at(at)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the first `entryTo` entries (after a snapshot): rewrite the file durably."""
        self._finish_rewrite()
        kept = self._entries[entryTo:]
        tmp = self._path.with_name(self._path.name + ".tmp")
        with create_private(tmp) as f:
            f.write(MAGIC)
            offsets = []
            position = len(MAGIC)
            for command, index, term in kept:
                record = _record(command, index, term)
                offsets.append(position)
                f.write(record)
                position += len(record)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        fsync_dir(self._path.parent)
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR)
        self._entries, self._offsets, self._end = kept, offsets, position
        self._dirty = False

    def _truncate_at(self, position: int) -> None:
        end = self._offsets[position] if position < len(self._offsets) else self._end
        del self._entries[position:]
        del self._offsets[position:]
        os.ftruncate(self._fd, end)
        self._end = end
        self._dirty = True

    def __getitem__(self, item: Any) -> Any:
        self._finish_rewrite()
        return self._entries[item]

    def __len__(self) -> int:
        self._finish_rewrite()
        return len(self._entries)

    def _destroy(self) -> None:
        self.sync()
        if self._meta_dirty:
            self._store_meta()
        os.close(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if self._meta.get("commit_index") != raftCommitIndex:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:
        return int(self._meta.get("commit_index", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> str | None:
        voted = self._meta.get("voted_for")
        return None if voted is None else str(voted)

    def onOneSecondTimer(self) -> None:
        if self._meta_dirty:
            self._store_meta()
