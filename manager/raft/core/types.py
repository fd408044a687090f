"""The values the Raft core takes and gives: entries, membership, messages, what to persist.

All immutable; node ids are strings (Shoal's node ids)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from shoal.v1 import raft_pb2


class EntryKind(enum.IntEnum):
    NORMAL = 0  # the state machine's command (empty data: a new leader's no-op)
    CONFIG = 1  # a membership change (data: ConfigChange.encode())


@dataclass(frozen=True)
class Entry:
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@dataclass(frozen=True)
class Membership:
    """Who votes (voters) and who only follows the log (learners: new managers catching up)."""

    voters: frozenset[str]
    learners: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.voters & self.learners:
            raise ValueError(f"{sorted(self.voters & self.learners)} both voter and learner")

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def to_proto(self) -> raft_pb2.RaftMembershipConfig:
        return raft_pb2.RaftMembershipConfig(
            voters=sorted(self.voters), learners=sorted(self.learners)
        )

    @classmethod
    def from_proto(cls, message: raft_pb2.RaftMembershipConfig) -> Membership:
        return cls(frozenset(message.voters), frozenset(message.learners))


class ConfigChangeKind(enum.Enum):
    ADD_LEARNER = "add_learner"  # a new member, not voting until promoted
    PROMOTE = "promote"  # a caught-up learner becomes a voter
    REMOVE = "remove"  # a voter or a learner leaves


@dataclass(frozen=True)
class ConfigChange:
    """One single-server membership change; at most one is in flight at a time."""

    kind: ConfigChangeKind
    node: str

    def apply(self, membership: Membership) -> Membership:
        voters, learners = set(membership.voters), set(membership.learners)
        if self.kind is ConfigChangeKind.ADD_LEARNER:
            if self.node not in voters:
                learners.add(self.node)
        elif self.kind is ConfigChangeKind.PROMOTE:
            if self.node in learners:
                learners.discard(self.node)
                voters.add(self.node)
        else:
            voters.discard(self.node)
            learners.discard(self.node)
        return Membership(frozenset(voters), frozenset(learners))

    def encode(self) -> bytes:
        kind = raft_pb2.RaftConfigChange.Kind.Value(self.kind.name)
        return raft_pb2.RaftConfigChange(kind=kind, node=self.node).SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> ConfigChange:
        message = raft_pb2.RaftConfigChange.FromString(data)
        kind = ConfigChangeKind[raft_pb2.RaftConfigChange.Kind.Name(message.kind)]
        return cls(kind, message.node)


@dataclass(frozen=True)
class Snapshot:
    """The state machine up to `index` (whose term is `term`), and the membership then."""

    index: int
    term: int
    membership: Membership
    data: bytes = b""


@dataclass(frozen=True)
class HardState:
    """What must be on disk before any message that depends on it leaves the node."""

    term: int = 0
    vote: str = ""
    commit: int = 0


class MsgType(enum.Enum):
    PRE_VOTE = "pre_vote"
    PRE_VOTE_RESP = "pre_vote_resp"
    VOTE = "vote"
    VOTE_RESP = "vote_resp"
    APPEND = "append"
    APPEND_RESP = "append_resp"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESP = "heartbeat_resp"
    SNAPSHOT = "snapshot"
    TIMEOUT_NOW = "timeout_now"  # leadership transfer: campaign now
    READ_INDEX = "read_index"  # a follower asks the leader for a read index
    READ_INDEX_RESP = "read_index_resp"


@dataclass(frozen=True)
class Message:
    """One message between two members.

    APPEND: `index`/`log_term` name the entry before `entries`; `commit` the leader's.
    APPEND_RESP: `index` the last index the follower now matches (or, rejected, the index
    it could not match, with `hint` its last index). VOTE/PRE_VOTE: `index`/`log_term` the
    candidate's last entry. HEARTBEAT: `commit` min(leader's commit, follower's match).
    `force` on VOTE: a leadership transfer, which members must not refuse for having a
    leader. `context` names a read (READ_INDEX, its answer, and the heartbeats that
    confirm the leader for it).
    """

    type: MsgType
    src: str
    dst: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    hint: int = 0
    snapshot: Snapshot | None = None
    force: bool = False
    context: bytes = b""


@dataclass(frozen=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied `index`."""

    index: int
    context: bytes


@dataclass
class Ready:
    """What the caller must do, in this order:

    1. write `snapshot` (if any; it replaces the whole log), then append `entries`
       (replacing any stored entries from the first one's index on) and write
       `hard_state` (if any), durably;
    2. send `messages`;
    3. apply `committed` to the state machine (after installing `snapshot`);
    4. call `Raft.advance(ready)`.
    """

    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.messages
            or self.committed
            or self.read_states
        )
