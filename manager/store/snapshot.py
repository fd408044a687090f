"""Store snapshots: the whole store as one protobuf StoreSnapshot (never pickle).

`encode_snapshot` writes the StoreSnapshot wire format directly, one already-serialized
object at a time, instead of first copying every object into one big message; the result
parses with `StoreSnapshot.FromString` like any other. Objects are serialized
deterministically (map entries sorted), so equal stores give equal snapshot bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from manager.store.errors import SnapshotError
from manager.store.kinds import KINDS, Kind, StoreObject
from shoal.v1 import store_pb2

FORMAT = 1

_FIELD_NUMBERS = {
    name: fd.number for name, fd in store_pb2.StoreSnapshot.DESCRIPTOR.fields_by_name.items()
}
_VARINT, _LENGTH_DELIMITED = 0, 2


@dataclass
class StoreImage:
    """The store at one raft index. Objects are shared with the store, which never mutates
    a stored object (it replaces it), so an image stays valid while the store moves on."""

    index: int
    objects: dict[Kind, list[StoreObject]] = field(default_factory=dict)
    # proposer id -> last applied sequence
    proposers: dict[str, int] = field(default_factory=dict)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(name: str, wire_type: int) -> bytes:
    return _varint(_FIELD_NUMBERS[name] << 3 | wire_type)


def encode_snapshot(image: StoreImage) -> bytes:
    parts = [_tag("format", _VARINT), _varint(FORMAT)]
    if image.index:
        parts += [_tag("index", _VARINT), _varint(image.index)]
    for kind, info in KINDS.items():
        tag = _tag(info.snapshot_field, _LENGTH_DELIMITED)
        for obj in image.objects.get(kind, ()):
            data = obj.SerializeToString(deterministic=True)
            parts += [tag, _varint(len(data)), data]
    tag = _tag("proposers", _LENGTH_DELIMITED)
    for proposer_id, sequence in sorted(image.proposers.items()):
        data = store_pb2.ProposerSequence(
            proposer_id=proposer_id, sequence=sequence
        ).SerializeToString()
        parts += [tag, _varint(len(data)), data]
    return b"".join(parts)


def decode_snapshot(data: bytes) -> StoreImage:
    try:
        snapshot = store_pb2.StoreSnapshot.FromString(data)
    except DecodeError as error:
        raise SnapshotError(f"store snapshot does not parse: {error}") from None
    if snapshot.format != FORMAT:
        raise SnapshotError(
            f"store snapshot format {snapshot.format} is not supported (expected {FORMAT})"
        )
    image = StoreImage(index=snapshot.index)
    for kind, info in KINDS.items():
        objs: list[StoreObject] = list(getattr(snapshot, info.snapshot_field))
        for obj in objs:
            if not obj.id:
                raise SnapshotError(f"store snapshot holds a {kind.value} without an id")
        image.objects[kind] = objs
    for proposer in snapshot.proposers:
        image.proposers[proposer.proposer_id] = proposer.sequence
    return image
