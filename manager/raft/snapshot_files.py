"""Raft snapshots on disk and on the wire, in Shoal's format: it takes the place of
pysyncobj's Serializer (which pickles, never fsyncs, and writes in the tick thread).

File: MAGIC, `<u32 header length>`, a JSON header (the two raft entries pysyncobj keeps
with a snapshot, base64, and the member addresses), the store's StoreSnapshot bytes, and a
`<u32 crc32>` of everything before it.

- Writing runs in a thread of its own from a cheap capture of the store (stored objects are
  never mutated), so a large store does not stall heartbeats; the file is fsynced before it
  is renamed into place, and pysyncobj drops journal entries only after that.
- Sending to a lagging or new member reads the file in chunks, pausing while the
  connection's send buffer is full (pysyncobj itself has no flow control), and starts
  over when the connection to that member is made again (pysyncobj would carry on from
  the middle over the new connection, and the member would assemble a torn file).
- Receiving writes the chunks to a side file, checking each one starts where the last one
  ended, fsyncs it, renames it into place, then the store is restored from it before
  pysyncobj clears the journal.
- After a restart the members are the configured ones, not the list inside the file
  (bakwc/PySyncObj#133); a snapshot received from the leader brings the leader's list.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pysyncobj.config import SERIALIZER_STATE

from manager.raft import metrics
from manager.raft.durable import create_private, replace_durably
from manager.raft.errors import RaftDataError
from manager.raft.journal import DurableJournal, Entry
from manager.store import Store, StoreImage, decode_snapshot, encode_snapshot
from manager.store.errors import SnapshotError

log = logging.getLogger(__name__)

MAGIC = b"SHOALSNP\x00\x00\x00\x01"
_U32 = struct.Struct("<I")

# One piece of a snapshot on the wire: data, first?, last?, offset. pysyncobj's leader
# reads only the last-flag (index 2); the rest is between SnapshotFiles on both ends.
Chunk = tuple[bytes, bool, bool, int]


@dataclass(frozen=True)
class RaftSnapshot:
    last: Entry
    previous: Entry
    members: list[str]
    store: StoreImage


def _entry_json(entry: Entry) -> list[Any]:
    command, index, term = entry
    return [index, term, base64.b64encode(command).decode()]


def _entry_from_json(value: Any) -> Entry:
    index, term, command = value
    return (base64.b64decode(command), int(index), int(term))


def encode_file(snapshot: RaftSnapshot) -> bytes:
    header = json.dumps(
        {
            "last": _entry_json(snapshot.last),
            "previous": _entry_json(snapshot.previous),
            "members": snapshot.members,
        }
    ).encode()
    body = b"".join([MAGIC, _U32.pack(len(header)), header, encode_snapshot(snapshot.store)])
    return body + _U32.pack(zlib.crc32(body))


def decode_file(data: bytes, origin: Path) -> RaftSnapshot:
    if not data.startswith(MAGIC):
        raise RaftDataError(f"{origin} is not a Shoal raft snapshot (bad header)")
    if len(data) < len(MAGIC) + 2 * _U32.size:
        raise RaftDataError(f"raft snapshot {origin} is truncated ({len(data)} bytes)")
    body, (crc,) = data[: -_U32.size], _U32.unpack(data[-_U32.size :])
    if zlib.crc32(body) != crc:
        raise RaftDataError(f"raft snapshot {origin} is corrupt (checksum mismatch)")
    (header_length,) = _U32.unpack_from(body, len(MAGIC))
    start = len(MAGIC) + _U32.size
    try:
        header = json.loads(body[start : start + header_length])
        last = _entry_from_json(header["last"])
        previous = _entry_from_json(header["previous"])
        members = [str(m) for m in header["members"]]
        store = decode_snapshot(body[start + header_length :])
    except (ValueError, KeyError, TypeError, SnapshotError) as error:
        raise RaftDataError(f"raft snapshot {origin} does not decode: {error}") from None
    return RaftSnapshot(last, previous, members, store)


class _Outgoing:
    def __init__(self, path: Path) -> None:
        self.file: IO[bytes] = open(path, "rb")  # noqa: SIM115 (kept open across ticks)
        self.size = self.file.seek(0, 2)
        self.file.seek(0)
        self.sent = 0


class SnapshotFiles:
    """Implements the Serializer interface pysyncobj calls (camelCase names are its own)."""

    def __init__(
        self,
        path: Path,
        store: Store,
        journal: DurableJournal,
        configured_members: list[str],  # this node's address first
        chunk_bytes: int,
        send_backlog: Callable[[Any], int],
    ) -> None:
        self.path = path
        self._store = store
        self._journal = journal
        self._configured_members = configured_members
        self._chunk_bytes = chunk_bytes
        self._send_backlog = send_backlog
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._writing_id: int | None = None
        self._writing_index = 0
        self._outgoing: dict[Any, _Outgoing] = {}
        self._incoming: IO[bytes] | None = None
        self._received = False
        # Raft index covered by the newest durable snapshot (0: none yet).
        self.snapshot_index = 0
        # Set when a snapshot could not be loaded: pysyncobj only logs that, the node
        # must stop instead of running on without its data.
        self.fatal_error: BaseException | None = None

    # -- writing (called from the tick thread) --------------------------------------------

    def serialize(self, data: tuple[Any, Entry, Entry, Iterable[Any]], id: int) -> None:
        if self._writer is not None:
            return
        _, last, previous, members = data
        snapshot = RaftSnapshot(
            tuple(last),  # type: ignore[arg-type]
            tuple(previous),  # type: ignore[arg-type]
            sorted(str(m.id) for m in members),
            self._store.capture(),
        )
        self._writing_id, self._writing_index = id, last[1]
        self._writer_error = None
        self._writer = threading.Thread(
            target=self._write, args=(snapshot,), name="raft-snapshot-writer", daemon=True
        )
        self._writer.start()

    def _write(self, snapshot: RaftSnapshot) -> None:
        start = time.perf_counter()
        try:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with create_private(tmp) as f:
                f.write(encode_file(snapshot))
            replace_durably(tmp, self.path)
        except BaseException as error:  # reported through checkSerializing
            self._writer_error = error
        else:
            metrics.SNAPSHOT_SECONDS.observe(time.perf_counter() - start)

    def checkSerializing(self) -> tuple[int, int | None]:
        writer = self._writer
        if writer is None:
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        if writer.is_alive():
            return SERIALIZER_STATE.SERIALIZING, self._writing_id
        self._writer = None
        if self._writer_error is not None:
            log.error("raft snapshot %s could not be written: %s", self.path, self._writer_error)
            return SERIALIZER_STATE.FAILED, self._writing_id
        self.snapshot_index = self._writing_index
        return SERIALIZER_STATE.SUCCESS, self._writing_id

    # -- loading --------------------------------------------------------------------------

    def deserialize(self) -> tuple[None, Entry, Entry, list[str]]:
        """Load the snapshot file into the store; pysyncobj then resets its log around it."""
        try:
            snapshot = decode_file(self.path.read_bytes(), self.path)
            if self._received:
                members = snapshot.members
            else:
                members = self._configured_members
                self._keep_newer_journal(snapshot)
            # pysyncobj compares these with its own node object: strings never match it.
            members = [m for m in members if m != self._configured_members[0]]
            self._store.restore(snapshot.store)
        except BaseException as error:
            self.fatal_error = error
            raise
        finally:
            self._received = False
        self.snapshot_index = snapshot.last[1]
        return None, snapshot.last, snapshot.previous, members

    def _keep_newer_journal(self, snapshot: RaftSnapshot) -> None:
        """After a crash between writing a snapshot and trimming the journal, trim it now:
        pysyncobj would otherwise throw away the entries after the snapshot."""
        journal = self._journal
        for position in range(len(journal) - 1):
            if journal[position] == snapshot.previous and journal[position + 1] == snapshot.last:
                if position:
                    journal.deleteEntriesTo(position)
                return

    # -- sending to a member that needs the snapshot --------------------------------------

    def getTransmissionData(self, transmissionID: Any) -> Chunk | None:
        if self._send_backlog(transmissionID) >= 2 * self._chunk_bytes:
            return None  # let the connection drain first
        outgoing = self._outgoing.get(transmissionID)
        if outgoing is None:
            try:
                outgoing = self._outgoing[transmissionID] = _Outgoing(self.path)
            except OSError as error:
                log.error("raft snapshot %s cannot be sent: %s", self.path, error)
                return None
        offset = outgoing.sent
        chunk = outgoing.file.read(self._chunk_bytes)
        outgoing.sent += len(chunk)
        last = outgoing.sent >= outgoing.size
        if last:
            self.cancelTransmisstion(transmissionID)
        return chunk, offset == 0, last, offset

    def cancelTransmisstion(self, id: Any) -> None:
        outgoing = self._outgoing.pop(id, None)
        if outgoing is not None:
            outgoing.file.close()

    # -- receiving from the leader --------------------------------------------------------

    def setTransmissionData(self, data: Chunk | None) -> bool:
        if data is None:
            return False
        chunk, first, last, offset = data
        incoming_path = self.path.with_name(self.path.name + ".incoming")
        try:
            if first:
                if self._incoming is not None:
                    self._incoming.close()
                self._incoming = open(incoming_path, "wb")  # noqa: SIM115 (spans messages)
            elif self._incoming is None:
                return False
            if offset != self._incoming.tell():
                # Chunks were lost with a dropped connection: wait for the leader to
                # start again (it does on reconnecting) rather than assemble a torn file.
                log.warning("raft snapshot from the leader has a gap at byte %d", offset)
                self._incoming.close()
                self._incoming = None
                return False
            self._incoming.write(chunk)
            if not last:
                return False
            self._incoming.close()
            self._incoming = None
            replace_durably(incoming_path, self.path)
        except OSError as error:
            log.error("raft snapshot from the leader could not be stored: %s", error)
            self._incoming = None
            return False
        self._received = True
        return True

    def close(self) -> None:
        for key in list(self._outgoing):
            self.cancelTransmisstion(key)
        if self._incoming is not None:
            self._incoming.close()
            self._incoming = None
        if self._writer is not None:
            self._writer.join()
