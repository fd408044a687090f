"""The raft snapshot on disk: the store at one raft index, with the index, term and
membership it was taken at.

File: MAGIC, `<u32 length>` and a RaftSnapshotMeta, `<u64 length>` and the store's
StoreSnapshot bytes, then a `<u32 crc32>` of everything before it. Written to a temporary
name, fsynced and renamed (the directory fsynced after), mode 0600: it holds the whole
store, CA key included. A snapshot is always written before the log records that it
replaces the entries it covers (wal.py), so the file is never behind the log.

Reading checks the whole file: a snapshot that does not read back is fail-stop with the
file named, never skipped (the log no longer holds what it covered).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from google.protobuf.message import DecodeError

from manager.raft.core import Snapshot
from manager.raft.core.codec import CodecError, snapshot_from_meta, snapshot_meta
from manager.raft.durable import write_durably
from manager.raft.errors import RaftDataError
from shoal.v1 import raft_pb2

MAGIC = b"SHOALSNP\x00\x00\x00\x02"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def encode_file(snapshot: Snapshot) -> bytes:
    meta = snapshot_meta(snapshot).SerializeToString()
    body = b"".join(
        (MAGIC, _U32.pack(len(meta)), meta, _U64.pack(len(snapshot.data)), snapshot.data)
    )
    return body + _U32.pack(zlib.crc32(body))


def decode_file(data: bytes, origin: Path) -> Snapshot:
    def damaged(why: str) -> RaftDataError:
        return RaftDataError(
            f"raft snapshot {origin} is damaged ({why}); restore this manager's data "
            "directory from a backup, or remove it from the cluster and join it again"
        )

    if not data.startswith(MAGIC):
        raise damaged("not a Shoal raft snapshot of this version")
    if len(data) < len(MAGIC) + _U32.size * 2 + _U64.size:
        raise damaged("cut short")
    body, (crc,) = data[: -_U32.size], _U32.unpack(data[-_U32.size :])
    if zlib.crc32(body) != crc:
        raise damaged("its checksum does not match")
    offset = len(MAGIC)
    (meta_length,) = _U32.unpack_from(body, offset)
    offset += _U32.size
    meta_bytes = body[offset : offset + meta_length]
    offset += meta_length
    if offset + _U64.size > len(body):
        raise damaged("cut short")
    (data_length,) = _U64.unpack_from(body, offset)
    offset += _U64.size
    if offset + data_length != len(body):
        raise damaged("its lengths do not add up")
    try:
        meta = raft_pb2.RaftSnapshotMeta.FromString(meta_bytes)
        return snapshot_from_meta(meta, body[offset:])
    except (DecodeError, CodecError) as exc:
        raise damaged(f"its header does not parse: {exc}") from None


class SnapshotStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Snapshot | None:
        """The last snapshot saved; None when there is none."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return decode_file(data, self.path)

    def save(self, snapshot: Snapshot) -> None:
        """Durably (see the module docstring); run it off the event loop, it fsyncs."""
        write_durably(self.path, encode_file(snapshot))
