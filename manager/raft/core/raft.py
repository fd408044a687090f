"""The Raft state machine of one member (see the package docstring for how it is driven).

Safety rests on the caller's side of the contract: what a Ready asks to persist is durable
before its messages leave, and nothing else is called between `ready()` and `advance()`.
A leader counts its own log towards a commit only once it is durable.

Choices, as etcd/raft makes them:
- a membership change takes effect once its entry is committed; one at a time, and a new
  leader first commits everything before its term (the single-server change bug);
- pre-vote: a member whose election timer fires first asks whether it could win, without
  raising its term, so a member back from a partition does not depose a healthy leader;
- check-quorum: a leader that has not heard from a quorum within an election timeout steps
  down, and members that heard from a leader within one ignore vote requests (except a
  leadership transfer's);
- a leader probes a follower whose log it does not know (one append at a time, the next
  one once answered, or at the next heartbeat) and, once an append succeeded, replicates
  optimistically (the next index moves on as it sends), at most `max_inflight` appends
  unanswered; a refusal falls back to the follower's hint and to probing. A follower back
  from a crash or a partition so costs one append per answer, never a resend of the whole
  backlog per stale message.
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from manager.raft.core.types import (
    ConfigChange,
    Entry,
    EntryKind,
    HardState,
    Membership,
    Message,
    MsgType,
    ReadState,
    Ready,
    Snapshot,
)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class NotLeader(Exception):
    """Proposals go to the leader (`leader`: its id, "" when unknown)."""

    def __init__(self, leader: str) -> None:
        super().__init__(f"not the leader (the leader is {leader or 'unknown'})")
        self.leader = leader


class ProposalDropped(Exception):
    """The leader cannot take this proposal now (a transfer or a membership change is in
    progress); try again later."""


@dataclass
class _Progress:
    match: int = 0
    next: int = 1
    recent_active: bool = False
    probing: bool = True  # the follower's log is not known to match from `next - 1` on
    probe_sent: bool = False  # probing: an append is out, wait for its answer
    # A snapshot is on its way: nothing more until the follower answers, or until this
    # many ticks passed (the snapshot may have been lost).
    snapshot_ticks: int = 0
    # replicating: the last index of each append sent and not yet answered
    inflight: collections.deque[int] = field(default_factory=collections.deque)

    def probe(self) -> None:
        self.probing, self.probe_sent, self.snapshot_ticks = True, False, 0
        self.inflight.clear()

    def acknowledged(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()


@dataclass
class _Read:
    """A read the leader confirms with a quorum's heartbeat answers before it may use
    `index` (it might have been deposed without knowing)."""

    index: int
    requester: str
    acks: set[str]


_RESPONSES = {
    MsgType.PRE_VOTE: MsgType.PRE_VOTE_RESP,
    MsgType.VOTE: MsgType.VOTE_RESP,
}


class Raft:
    def __init__(
        self,
        node_id: str,
        *,
        membership: Membership,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        rng: random.Random,
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_append_entries: int = 64,
        max_append_bytes: int = 4 << 20,
        max_inflight: int = 256,
        snapshot_timeout_ticks: int = 0,
    ) -> None:
        """`snapshot_timeout_ticks`: how long a leader waits for a follower's answer to a
        snapshot before it sends again (0: ten election timeouts)."""
        if heartbeat_ticks < 1 or election_ticks <= heartbeat_ticks:
            raise ValueError("election_ticks must exceed heartbeat_ticks (>= 1)")
        self.node_id = node_id
        self._rng = rng
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks
        self._pre_vote = pre_vote
        self._check_quorum = check_quorum
        self._max_append = max_append_entries
        self._max_append_bytes = max_append_bytes
        self._max_inflight = max_inflight
        self._snapshot_timeout = snapshot_timeout_ticks or 10 * election_ticks
        hard = hard_state or HardState()
        self._initial_membership = membership
        self._snap = snapshot
        self._entries: list[Entry] = list(entries)
        first = snapshot.index + 1 if snapshot else 1
        if self._entries and self._entries[0].index != first:
            raise ValueError(f"the entries start at {self._entries[0].index}, not {first}")
        self.term = hard.term
        self._vote = hard.vote
        self.commit = max(hard.commit, snapshot.index if snapshot else 0)
        if self.commit > self.last_index:
            raise ValueError(f"commit {self.commit} is past the last entry {self.last_index}")
        self.applied = snapshot.index if snapshot else 0
        self.membership = self._membership_at(self.commit)
        self._persisted_hs = HardState(self.term, self._vote, self.commit)
        self._unsaved_from = self.last_index + 1  # what the caller gave is on disk
        self._unsaved_snapshot: Snapshot | None = None
        self._msgs: list[Message] = []
        self._outstanding: Ready | None = None
        self.role = Role.FOLLOWER
        self.leader = ""
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, _Progress] = {}
        self._pending_config = 0
        self._transferee = ""
        self._read_states: list[ReadState] = []
        self._reads: dict[bytes, _Read] = {}  # leader: reads awaiting a quorum's answers
        self._early_reads: list[tuple[bytes, str]] = []  # before this term committed
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = self._random_timeout()

    # -- the log -----------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self._snap.index + 1 if self._snap else 1

    @property
    def last_index(self) -> int:
        if self._entries:
            return self._entries[-1].index
        return self._snap.index if self._snap else 0

    @property
    def last_term(self) -> int:
        return self.term_at(self.last_index) or 0

    def term_at(self, index: int) -> int | None:
        """The term of the entry at `index`; None when compacted away or not there."""
        if index == 0:
            return 0
        if self._snap and index == self._snap.index:
            return self._snap.term
        if index < self.first_index or index > self.last_index:
            return None
        return self._entries[index - self.first_index].term

    def entries(self, low: int, high: int) -> list[Entry]:
        """Entries low..high (inclusive), all present."""
        first = self.first_index
        return self._entries[low - first : high - first + 1]

    def _truncate_and_append(self, new: Sequence[Entry]) -> None:
        if not new:
            return
        start = new[0].index
        del self._entries[start - self.first_index :]
        self._entries.extend(new)
        self._unsaved_from = min(self._unsaved_from, start)

    def _membership_at(self, index: int) -> Membership:
        """The membership once every CONFIG entry up to `index` applies."""
        membership = self._snap.membership if self._snap else self._initial_membership
        for entry in self._entries:
            if entry.index > index:
                break
            if entry.kind is EntryKind.CONFIG:
                membership = ConfigChange.decode(entry.data).apply(membership)
        return membership

    @property
    def _persisted_index(self) -> int:
        return self._unsaved_from - 1

    # -- the caller's calls ---------------------------------------------------------------

    def tick(self) -> None:
        self._check_no_outstanding()
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout and self._promotable():
            self._start_election(transfer=False)

    def leader_lost(self) -> None:
        """The caller knows the leader is gone (its connection was reset: the process
        died): forget it, so as not to refuse others' votes for it, and start an election
        within a few ticks rather than a whole election timeout. Randomized, so that of
        several followers one usually asks first and wins; pre-vote keeps a leader that is
        alive after all in place."""
        self._check_no_outstanding()
        if self.role is not Role.FOLLOWER or not self.leader:
            return
        self.leader = ""
        soon = self._election_elapsed + 1 + self._rng.randrange(max(1, self._election_ticks // 2))
        self._timeout = min(self._timeout, soon)

    def campaign(self) -> None:
        """Start an election now (pre-vote first, when on)."""
        self._check_no_outstanding()
        if self.role is not Role.LEADER and self._promotable():
            self._start_election(transfer=False)

    def propose(self, data: bytes) -> int:
        self._check_no_outstanding()
        self._check_leader()
        return self._append_own(EntryKind.NORMAL, data)

    def propose_many(self, batch: Sequence[bytes]) -> list[int]:
        """Several proposals at once: one append message per follower for all of them."""
        self._check_no_outstanding()
        self._check_leader()
        return self._append_own_many(EntryKind.NORMAL, batch)

    def propose_config(self, change: ConfigChange) -> int:
        self._check_no_outstanding()
        self._check_leader()
        if self._pending_config > self.commit:
            raise ProposalDropped("a membership change is still in progress")
        membership = self.membership
        if change.apply(membership) == membership:
            raise ProposalDropped(f"{change.kind.value} {change.node}: no change to make")
        after = change.apply(membership)
        if not after.voters:
            raise ProposalDropped("the last voter cannot leave")
        index = self._append_own(EntryKind.CONFIG, change.encode())
        self._pending_config = index
        return index

    def transfer_leadership(self, to: str) -> None:
        self._check_no_outstanding()
        self._check_leader()
        if to == self.node_id or to not in self.membership.voters:
            raise ValueError(f"cannot hand leadership to {to!r}: not another voter")
        self._transferee = to
        self._election_elapsed = 0
        if self._progress[to].match == self.last_index:
            self._send(Message(MsgType.TIMEOUT_NOW, self.node_id, to, self.term))
        else:
            self._send_append(to)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read named `context` (unique per request): a later Ready
        brings ReadState(index, context) once `index` covers every write committed before
        this call; serve the read once `applied` reaches it. Asked of the leader by a
        follower; lost when leadership changes (ask again). NotLeader when no leader is
        known."""
        self._check_no_outstanding()
        if self.role is Role.LEADER:
            self._leader_read(context, self.node_id)
        elif self.leader:
            self._send(
                Message(MsgType.READ_INDEX, self.node_id, self.leader, self.term, context=context)
            )
        else:
            raise NotLeader("")

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The caller's state machine at `index` (applied): the log up to it goes, and the
        snapshot that replaces it is returned (for the caller to store)."""
        self._check_no_outstanding()
        if self._snap and index <= self._snap.index:
            return self._snap
        if index > self.applied:
            raise ValueError(f"cannot compact to {index}: only {self.applied} is applied")
        term = self.term_at(index)
        assert term is not None
        membership = self._membership_at(index)
        del self._entries[: index - self.first_index + 1]
        self._snap = Snapshot(index, term, membership, data)
        return self._snap

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snap

    @property
    def config_change_pending(self) -> bool:
        """A membership change (or a new leader's first commit) is still to commit."""
        return self._pending_config > self.commit

    def match_indexes(self) -> dict[str, int]:
        """The leader's view: how far each member's log is known to match its own."""
        if self.role is not Role.LEADER:
            return {}
        return {
            member: self._persisted_index if member == self.node_id else progress.match
            for member, progress in self._progress.items()
        }

    def ready(self) -> Ready:
        self._check_no_outstanding()
        ready = Ready()
        hard = HardState(self.term, self._vote, self.commit)
        if hard != self._persisted_hs:
            ready.hard_state = hard
        ready.snapshot = self._unsaved_snapshot
        if self._unsaved_from <= self.last_index:
            ready.entries = self.entries(self._unsaved_from, self.last_index)
        ready.messages, self._msgs = self._msgs, []
        ready.read_states, self._read_states = self._read_states, []
        low = max(self.applied + 1, self.first_index)
        if self.commit >= low:
            ready.committed = self.entries(low, self.commit)
        if ready:
            self._outstanding = ready
        return ready

    def advance(self, ready: Ready) -> None:
        if ready is not self._outstanding:
            raise RuntimeError("advance() takes the Ready the last ready() gave")
        self._outstanding = None
        if ready.hard_state is not None:
            self._persisted_hs = ready.hard_state
        if ready.snapshot is not None:
            self._unsaved_snapshot = None
            self.applied = max(self.applied, ready.snapshot.index)
        if ready.entries:
            self._unsaved_from = max(self._unsaved_from, ready.entries[-1].index + 1)
        if ready.committed:
            self.applied = max(self.applied, ready.committed[-1].index)
        if self.role is Role.LEADER:
            self._maybe_commit()  # its own log counts now that it is durable

    def _check_no_outstanding(self) -> None:
        if self._outstanding is not None:
            raise RuntimeError("advance() the last Ready before anything else")

    def _check_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self._transferee:
            raise ProposalDropped(f"leadership is moving to {self._transferee}")

    # -- timers and roles -----------------------------------------------------------------

    def _random_timeout(self) -> int:
        return self._election_ticks + self._rng.randrange(self._election_ticks)

    def _promotable(self) -> bool:
        return self.node_id in self.membership.voters

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self._vote = ""
        self.leader = ""
        self._votes = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = self._random_timeout()
        self._transferee = ""
        self._progress = {}
        self._reads = {}  # a read not confirmed in this role is lost: its caller asks again
        self._early_reads = []

    def _become_follower(self, term: int, leader: str) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _start_election(self, transfer: bool) -> None:
        if self._pre_vote and not transfer:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            self._ask_votes(MsgType.PRE_VOTE, self.term + 1, transfer)
        else:
            self._campaign(transfer)

    def _campaign(self, transfer: bool) -> None:
        self._reset(self.term + 1)
        self.role = Role.CANDIDATE
        self._vote = self.node_id
        self._ask_votes(MsgType.VOTE, self.term, transfer)

    def _ask_votes(self, kind: MsgType, term: int, transfer: bool) -> None:
        self._votes = {self.node_id: True}
        if self._tally() is True:
            self._won(kind)
            return
        for voter in sorted(self.membership.voters - {self.node_id}):
            self._send(
                Message(
                    kind,
                    self.node_id,
                    voter,
                    term,
                    log_term=self.last_term,
                    index=self.last_index,
                    force=transfer,
                )
            )

    def _tally(self) -> bool | None:
        """True once a quorum granted, False once a quorum refused, else None."""
        voters = self.membership.voters
        granted = sum(1 for v, yes in self._votes.items() if yes and v in voters)
        refused = sum(1 for v, yes in self._votes.items() if not yes and v in voters)
        quorum = self.membership.quorum()
        if granted >= quorum:
            return True
        if len(voters) - refused < quorum:
            return False
        return None

    def _won(self, kind: MsgType) -> None:
        if kind is MsgType.PRE_VOTE:
            self._campaign(transfer=False)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.node_id
        for member in self.membership.members:
            self._progress[member] = _Progress(next=self.last_index + 1)
        self._progress[self.node_id].recent_active = True
        # Membership changes wait until everything before this term is committed.
        self._pending_config = self.last_index
        self._append_own(EntryKind.NORMAL, b"")

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._election_ticks:
            self._election_elapsed = 0
            if self._check_quorum and not self._quorum_active():
                self._become_follower(self.term, "")
                return
            self._transferee = ""  # a transfer that did not happen in time
        for progress in self._progress.values():
            if progress.snapshot_ticks:
                progress.snapshot_ticks += 1
                if progress.snapshot_ticks > self._snapshot_timeout:
                    progress.probe()  # lost on the way, maybe: probe (and send) again
        if self._heartbeat_elapsed >= self._heartbeat_ticks:
            self._heartbeat_elapsed = 0
            for member in sorted(self._progress):
                if member != self.node_id:
                    self._send_heartbeat(member)

    def _quorum_active(self) -> bool:
        active = sum(
            1
            for member, progress in self._progress.items()
            if member in self.membership.voters
            and (progress.recent_active or member == self.node_id)
        )
        for member, progress in self._progress.items():
            progress.recent_active = member == self.node_id
        return active >= self.membership.quorum()

    # -- linearizable reads (etcd's ReadIndex) ---------------------------------------------

    def _leader_read(self, context: bytes, requester: str) -> None:
        if self.term_at(self.commit) != self.term:
            # Until an entry of this term commits, this leader's commit index may be behind
            # what an earlier leader committed.
            self._early_reads.append((context, requester))
            return
        if self.membership.quorum() == 1:
            self._read_ready(self.commit, context, requester)
            return
        self._reads[context] = _Read(self.commit, requester, {self.node_id})
        for member in sorted(self._progress):
            if member != self.node_id:
                self._send_heartbeat(member, context)

    def _read_acked(self, context: bytes, voter: str) -> None:
        read = self._reads.get(context)
        if read is None or voter not in self.membership.voters:
            return
        read.acks.add(voter)
        if len(read.acks & self.membership.voters) >= self.membership.quorum():
            del self._reads[context]
            self._read_ready(read.index, context, read.requester)

    def _read_ready(self, index: int, context: bytes, requester: str) -> None:
        if requester == self.node_id:
            self._read_states.append(ReadState(index, context))
        else:
            self._send(
                Message(
                    MsgType.READ_INDEX_RESP,
                    self.node_id,
                    requester,
                    self.term,
                    index=index,
                    context=context,
                )
            )

    # -- the leader's log and replication --------------------------------------------------

    def _append_own(self, kind: EntryKind, data: bytes) -> int:
        return self._append_own_many(kind, [data])[0]

    def _append_own_many(self, kind: EntryKind, batch: Sequence[bytes]) -> list[int]:
        first = self.last_index + 1
        entries = [Entry(self.term, first + i, kind, data) for i, data in enumerate(batch)]
        self._truncate_and_append(entries)
        for member in sorted(self._progress):
            if member != self.node_id:
                self._send_append(member)
        self._maybe_commit()
        return [entry.index for entry in entries]

    def _send_append(self, to: str) -> None:
        progress = self._progress[to]
        if (
            progress.probe_sent
            or progress.snapshot_ticks
            or len(progress.inflight) >= self._max_inflight
        ):
            return  # paused until the follower answers
        progress.next = min(progress.next, self.last_index + 1)
        previous = progress.next - 1
        previous_term = self.term_at(previous)
        if previous_term is None or previous < self.first_index - 1:
            self._send_snapshot(to)
            return
        last = min(self.last_index, previous + self._max_append)
        entries = tuple(self.entries(previous + 1, last)) if last > previous else ()
        size = 0
        for count, entry in enumerate(entries):
            size += len(entry.data)
            if size > self._max_append_bytes and count:
                entries = entries[:count]  # a bounded message; the rest follows
                break
        self._send(
            Message(
                MsgType.APPEND,
                self.node_id,
                to,
                self.term,
                log_term=previous_term,
                index=previous,
                entries=entries,
                commit=self.commit,
            )
        )
        if progress.probing:
            progress.probe_sent = True
        elif entries:
            progress.next = entries[-1].index + 1
            progress.inflight.append(entries[-1].index)

    def _send_snapshot(self, to: str) -> None:
        snap = self._snap
        assert snap is not None, "entries are missing only below a snapshot"
        self._send(Message(MsgType.SNAPSHOT, self.node_id, to, self.term, snapshot=snap))
        progress = self._progress[to]
        progress.next = snap.index + 1
        progress.probe()
        progress.snapshot_ticks = 1  # paused until the follower says how far it got

    def _send_heartbeat(self, to: str, context: bytes = b"") -> None:
        commit = min(self.commit, self._progress[to].match)
        self._send(
            Message(MsgType.HEARTBEAT, self.node_id, to, self.term, commit=commit, context=context)
        )

    def _maybe_commit(self) -> None:
        matches = sorted(
            (
                self._persisted_index if member == self.node_id else progress.match
                for member, progress in self._progress.items()
                if member in self.membership.voters
            ),
            reverse=True,
        )
        quorum = self.membership.quorum()
        if len(matches) < quorum:
            return
        candidate = matches[quorum - 1]
        if candidate > self.commit and self.term_at(candidate) == self.term:
            self._commit_to(candidate)

    def _commit_to(self, index: int) -> None:
        index = min(index, self.last_index)
        if index <= self.commit:
            return
        newly = self.entries(max(self.commit + 1, self.first_index), index)
        changed = any(e.kind is EntryKind.CONFIG for e in newly)
        self.commit = index
        if self.role is Role.LEADER and self._early_reads and self.term_at(index) == self.term:
            early, self._early_reads = self._early_reads, []
            for context, requester in early:
                self._leader_read(context, requester)
        if changed:
            self._membership_changed(self._membership_at(index))
        elif self.role is Role.LEADER:
            # Followers learn the new commit index at once, not at the next heartbeat.
            for member in sorted(self._progress):
                if member != self.node_id and self._progress[member].match >= self.commit:
                    self._send_append(member)

    def _membership_changed(self, membership: Membership) -> None:
        self.membership = membership
        if self.role is not Role.LEADER:
            return
        if self.node_id not in membership.voters:
            self._become_follower(self.term, "")  # removed (or made a learner): step down
            return
        for member in membership.members:
            self._progress.setdefault(member, _Progress(next=self.last_index + 1))
        for member in list(self._progress):
            if member not in membership.members:
                del self._progress[member]
        if self._transferee and self._transferee not in membership.voters:
            self._transferee = ""
        for member in sorted(self._progress):
            if member != self.node_id:
                self._send_append(member)
        self._maybe_commit()  # a smaller quorum may commit more now

    # -- messages ----------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self._msgs.append(message)

    def _reply(
        self, to: Message, kind: MsgType, index: int = 0, reject: bool = False, hint: int = 0
    ) -> None:
        self._send(
            Message(kind, self.node_id, to.src, self.term, index=index, reject=reject, hint=hint)
        )

    def step(self, m: Message) -> None:
        self._check_no_outstanding()
        if m.dst != self.node_id:
            return
        if m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
                in_lease = (
                    self._check_quorum
                    and self.leader != ""
                    and self._election_elapsed < self._election_ticks
                )
                if in_lease and not m.force:
                    return  # a leader was heard from recently: no election yet
            if m.type is MsgType.PRE_VOTE:
                pass  # a pre-vote never changes the term
            elif m.type is MsgType.PRE_VOTE_RESP and not m.reject:
                pass  # the term of the election we would start
            elif m.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT):
                self._become_follower(m.term, m.src)
            else:
                self._become_follower(m.term, "")
        elif m.term < self.term:
            if m.type in (MsgType.APPEND, MsgType.HEARTBEAT) and (
                self._check_quorum or self._pre_vote
            ):
                # A leader from an old term: our term tells it to step down.
                self._reply(m, MsgType.APPEND_RESP)
            elif m.type is MsgType.PRE_VOTE:
                self._reply(m, MsgType.PRE_VOTE_RESP, reject=True)
            return

        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote_request(m)
            return
        if self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self._vote == m.src
            or (self._vote == "" and self.leader == "")
            or (m.type is MsgType.PRE_VOTE and m.term > self.term)
        )
        up_to_date = m.log_term > self.last_term or (
            m.log_term == self.last_term and m.index >= self.last_index
        )
        kind = _RESPONSES[m.type]
        if can_vote and up_to_date:
            self._send(Message(kind, self.node_id, m.src, m.term))
            if m.type is MsgType.VOTE:
                self._election_elapsed = 0
                self._vote = m.src
        else:
            self._send(Message(kind, self.node_id, m.src, self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        if m.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT):
            self._become_follower(m.term, m.src)
            self._step_follower(m)
            return
        wanted = MsgType.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MsgType.VOTE_RESP
        if m.type is not wanted:
            return
        self._votes.setdefault(m.src, not m.reject)
        outcome = self._tally()
        if outcome is True:
            self._won(MsgType.PRE_VOTE if self.role is Role.PRE_CANDIDATE else MsgType.VOTE)
        elif outcome is False:
            self._become_follower(self.term, "")

    def _step_follower(self, m: Message) -> None:
        if m.type is MsgType.APPEND:
            self._heard_from_leader(m)
            self._handle_append(m)
        elif m.type is MsgType.HEARTBEAT:
            self._heard_from_leader(m)
            self._commit_to(min(m.commit, self.last_index))
            self._send(
                Message(MsgType.HEARTBEAT_RESP, self.node_id, m.src, self.term, context=m.context)
            )
        elif m.type is MsgType.READ_INDEX_RESP:
            self._read_states.append(ReadState(m.index, m.context))
        elif m.type is MsgType.SNAPSHOT:
            self._heard_from_leader(m)
            self._handle_snapshot(m)
        elif m.type is MsgType.TIMEOUT_NOW and self._promotable():
            self._campaign(transfer=True)

    def _heard_from_leader(self, m: Message) -> None:
        self._election_elapsed = 0
        self.leader = m.src

    def _handle_append(self, m: Message) -> None:
        if m.index < self.commit:
            self._reply(m, MsgType.APPEND_RESP, index=self.commit)
            return
        if self.term_at(m.index) != m.log_term:
            self._reply(m, MsgType.APPEND_RESP, index=m.index, reject=True, hint=self.last_index)
            return
        conflict = next(
            (e for e in m.entries if self.term_at(e.index) != e.term),
            None,
        )
        if conflict is not None:
            if conflict.index <= self.commit:
                raise AssertionError(f"entry {conflict.index} conflicts below commit {self.commit}")
            self._truncate_and_append([e for e in m.entries if e.index >= conflict.index])
        last_new = m.index + len(m.entries)
        self._commit_to(min(m.commit, last_new))
        self._reply(m, MsgType.APPEND_RESP, index=last_new)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        assert snap is not None
        if snap.index <= self.commit:
            self._reply(m, MsgType.APPEND_RESP, index=self.commit)
            return
        if self.term_at(snap.index) == snap.term:
            self._commit_to(snap.index)  # the log has it already
            self._reply(m, MsgType.APPEND_RESP, index=snap.index)
            return
        self._snap = snap
        self._entries = []
        self._unsaved_snapshot = snap
        self._unsaved_from = snap.index + 1
        self.commit = snap.index
        self.membership = snap.membership
        self._reply(m, MsgType.APPEND_RESP, index=snap.index)

    def _step_leader(self, m: Message) -> None:
        progress = self._progress.get(m.src)
        if progress is None:
            return  # not (or no longer) a member
        if m.type is MsgType.APPEND_RESP:
            progress.recent_active = True
            if m.reject:
                if m.index <= progress.match:
                    return  # a stale refusal: the follower matches further by now
                if progress.snapshot_ticks:
                    return  # of an append sent before the snapshot now on its way
                if progress.probing and m.index != progress.next - 1:
                    return  # not of the probe out now: an older one
                progress.next = max(progress.match + 1, min(m.index, m.hint + 1))
                progress.probe()
                self._send_append(m.src)
                return
            progress.probe_sent = False
            progress.snapshot_ticks = 0
            progress.acknowledged(m.index)
            if progress.probing:
                progress.probing = False  # its log matches: replicate optimistically
                progress.next = max(progress.match, m.index) + 1
            if m.index > progress.match:
                progress.match = m.index
                self._maybe_commit()
                if self.role is not Role.LEADER or m.src not in self._progress:
                    return  # the commit took this leader, or the sender, out of the group
            progress.next = max(progress.next, m.index + 1)
            if m.src == self._transferee and progress.match == self.last_index:
                self._send(Message(MsgType.TIMEOUT_NOW, self.node_id, m.src, self.term))
            elif progress.next <= self.last_index:
                self._send_append(m.src)
        elif m.type is MsgType.HEARTBEAT_RESP:
            progress.recent_active = True
            if m.context:
                self._read_acked(m.context, m.src)
            progress.probe_sent = False
            if progress.match < self.last_index:
                if len(progress.inflight) >= self._max_inflight:
                    progress.inflight.popleft()  # one lost, maybe: let an append through
                # Probing, this resends from `next`; replicating, an append from past what
                # was sent, which the follower refuses if it lost some: it is probed then.
                self._send_append(m.src)
        elif m.type is MsgType.READ_INDEX:
            self._leader_read(m.context, m.src)
