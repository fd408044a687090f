"""The core's values as protobuf (shoal.v1.raft_pb2), for the wire and the disk: no pickle
anywhere on the raft path. Decoding refuses what the core could not have sent."""

from __future__ import annotations

import itertools

from google.protobuf.message import DecodeError

from manager.raft.core.types import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    Message,
    MsgType,
    Snapshot,
)
from shoal.v1 import raft_pb2


class CodecError(ValueError):
    """Bytes that are no raft message or record of ours."""


def entry_to_proto(entry: Entry) -> raft_pb2.RaftEntry:
    kind = raft_pb2.RaftEntry.Kind.Value(entry.kind.name)
    return raft_pb2.RaftEntry(term=entry.term, index=entry.index, kind=kind, data=entry.data)


def entry_from_proto(message: raft_pb2.RaftEntry) -> Entry:
    if message.index == 0:
        raise CodecError("an entry has an index from 1 on")
    kind = EntryKind[raft_pb2.RaftEntry.Kind.Name(message.kind)]
    return Entry(message.term, message.index, kind, message.data)


def hard_state_to_proto(state: HardState) -> raft_pb2.RaftHardState:
    return raft_pb2.RaftHardState(term=state.term, vote=state.vote, commit=state.commit)


def hard_state_from_proto(message: raft_pb2.RaftHardState) -> HardState:
    return HardState(message.term, message.vote, message.commit)


def snapshot_meta(snapshot: Snapshot) -> raft_pb2.RaftSnapshotMeta:
    return raft_pb2.RaftSnapshotMeta(
        index=snapshot.index, term=snapshot.term, membership=snapshot.membership.to_proto()
    )


def snapshot_from_meta(meta: raft_pb2.RaftSnapshotMeta, data: bytes) -> Snapshot:
    try:
        membership = Membership.from_proto(meta.membership)
    except ValueError as exc:
        raise CodecError(f"snapshot membership: {exc}") from None
    return Snapshot(meta.index, meta.term, membership, data)


def message_to_proto(message: Message) -> raft_pb2.RaftMessage:
    wire = raft_pb2.RaftMessage(
        type=raft_pb2.RaftMessage.Type.Value(message.type.name),
        src=message.src,
        dst=message.dst,
        term=message.term,
        log_term=message.log_term,
        index=message.index,
        entries=[entry_to_proto(e) for e in message.entries],
        commit=message.commit,
        reject=message.reject,
        hint=message.hint,
        force=message.force,
        context=message.context,
    )
    if message.snapshot is not None:
        wire.snapshot.CopyFrom(snapshot_meta(message.snapshot))
        wire.snapshot_data = message.snapshot.data
    return wire


def message_from_proto(wire: raft_pb2.RaftMessage) -> Message:
    kind = MsgType[raft_pb2.RaftMessage.Type.Name(wire.type)]
    snapshot = None
    if kind is MsgType.SNAPSHOT:
        if not wire.HasField("snapshot"):
            raise CodecError("a SNAPSHOT message without its snapshot")
        snapshot = snapshot_from_meta(wire.snapshot, wire.snapshot_data)
    entries = tuple(entry_from_proto(e) for e in wire.entries)
    for before, after in itertools.pairwise(entries):
        if after.index != before.index + 1:
            raise CodecError("the entries of a message follow each other")
    if entries and entries[0].index != wire.index + 1:
        raise CodecError("the entries of a message follow its index")
    return Message(
        kind,
        wire.src,
        wire.dst,
        wire.term,
        log_term=wire.log_term,
        index=wire.index,
        entries=entries,
        commit=wire.commit,
        reject=wire.reject,
        hint=wire.hint,
        snapshot=snapshot,
        force=wire.force,
        context=wire.context,
    )


def encode_message(message: Message) -> bytes:
    return bytes(message_to_proto(message).SerializeToString())


def decode_message(data: bytes) -> Message:
    try:
        wire = raft_pb2.RaftMessage.FromString(data)
    except DecodeError as exc:
        raise CodecError(f"not a raft message: {exc}") from None
    return message_from_proto(wire)
