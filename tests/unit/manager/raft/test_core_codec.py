"""The core's messages and records through protobuf: nothing lost, nothing foreign taken."""

from __future__ import annotations

import pytest

from manager.raft.core import (
    ConfigChange,
    ConfigChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    Message,
    MsgType,
    Snapshot,
)
from manager.raft.core.codec import (
    CodecError,
    decode_message,
    encode_message,
    hard_state_from_proto,
    hard_state_to_proto,
)

MEMBERS = Membership(frozenset({"a", "b", "c"}), frozenset({"d"}))
PROMOTE_D = ConfigChange(ConfigChangeKind.PROMOTE, "d").encode()


@pytest.mark.parametrize(
    "message",
    [
        Message(MsgType.PRE_VOTE, "a", "b", 3, log_term=2, index=9),
        Message(MsgType.VOTE, "a", "b", 4, log_term=2, index=9, force=True),
        Message(MsgType.VOTE_RESP, "b", "a", 4, reject=True),
        Message(
            MsgType.APPEND,
            "a",
            "b",
            4,
            log_term=2,
            index=9,
            commit=8,
            entries=(
                Entry(4, 10),
                Entry(4, 11, EntryKind.NORMAL, b"\x00actions"),
                Entry(4, 12, EntryKind.CONFIG, PROMOTE_D),
            ),
        ),
        Message(MsgType.APPEND_RESP, "b", "a", 4, index=9, reject=True, hint=7),
        Message(MsgType.HEARTBEAT, "a", "b", 4, commit=8),
        Message(MsgType.SNAPSHOT, "a", "b", 4, snapshot=Snapshot(20, 3, MEMBERS, b"state")),
        Message(MsgType.TIMEOUT_NOW, "a", "b", 4),
        Message(MsgType.READ_INDEX, "b", "a", 4, context=b"read-7"),
        Message(MsgType.READ_INDEX_RESP, "a", "b", 4, index=12, context=b"read-7"),
        Message(MsgType.HEARTBEAT_RESP, "b", "a", 4, context=b"read-7"),
    ],
)
def test_every_message_survives_the_wire(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


def test_config_changes_and_hard_state_round_trip() -> None:
    for kind in ConfigChangeKind:
        change = ConfigChange(kind, "node-7")
        assert ConfigChange.decode(change.encode()) == change
    state = HardState(term=9, vote="b", commit=41)
    assert hard_state_from_proto(hard_state_to_proto(state)) == state
    assert Membership.from_proto(MEMBERS.to_proto()) == MEMBERS


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xff\xff", "not a raft message"),
        (
            encode_message(Message(MsgType.APPEND, "a", "b", 1, index=3, entries=(Entry(1, 5),))),
            "follow its index",
        ),
        (
            encode_message(
                Message(MsgType.APPEND, "a", "b", 1, index=3, entries=(Entry(1, 4), Entry(1, 6)))
            ),
            "follow each other",
        ),
    ],
)
def test_what_the_core_could_not_have_sent_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        decode_message(data)


def test_a_snapshot_message_needs_its_snapshot() -> None:
    from shoal.v1 import raft_pb2

    wire = raft_pb2.RaftMessage(type=raft_pb2.RaftMessage.SNAPSHOT, src="a", dst="b", term=2)
    with pytest.raises(CodecError, match="without its snapshot"):
        decode_message(wire.SerializeToString())
    voter_and_learner = raft_pb2.RaftMembershipConfig(voters=["a"], learners=["a"])
    wire.snapshot.membership.CopyFrom(voter_and_learner)
    with pytest.raises(CodecError, match="snapshot membership"):
        decode_message(wire.SerializeToString())
