"""A deterministic simulation of a cluster of Raft cores (`manager.raft.core.Raft`), checking
Raft's safety properties after every step and its liveness at the end.

The model
---------
A `SimNode` is one machine. Its `Disk` (the snapshot, the log entries after it, the hard
state) survives a crash; its `Raft` and its state machine (`SimNode.applied`: every entry
applied, in order, from index 1; no-ops and membership changes included) do not. A node back
from a crash is a new `Raft` built from its disk alone, and its state machine is the
snapshot's content (the snapshot data is the applied list, as JSON) until the core hands out
the committed entries after it again.

A node handles one `Ready` at a time, atomically (`Cluster.handle_ready`): write it to disk
(a snapshot replaces the whole log, as the core drops its own; entries replace the stored
ones from the first one's index on), put its messages on the network, apply what it
commits, `advance`. Between two Readies the core piles up work in memory: messages stepped,
ticks, proposals. A crash loses all of that, i.e. the Ready in progress is lost whole: none of
it written, none of its messages sent. That is the one torn write a correct caller allows
(it never sends before the write is durable, so nothing it lost was acknowledged).

The network (`Cluster.in_flight`) is a list: the scheduler delivers any message in it
(reordering), drops one (loss) or duplicates one. A partition splits the machines into
sides; a message crossing it, or to a machine that is down, is lost on delivery.

`Simulation` drives a cluster from one seed: a `random.Random(seed)` picks every action,
and draws the seeds of the cores' own random generators, so a seed replays exactly. The
actions: deliver, drop, duplicate, handle a Ready, tick every node or one node (clocks
drift), propose on the leader(s) (or on anyone: NotLeader), partition or heal, crash or
restart a node, compact a node's log up to what it applied, change the membership (add a
spare as a learner, promote a learner, remove a voter, the leader included, or a learner;
one at a time, the leader refusing with ProposalDropped), transfer leadership.

The checks (`History`, `Cluster.check`)
---------------------------------------
- Election safety: at most one leader per term, over the whole run.
- Log matching: an entry written to any disk at (index, term) is the same entry, preceded by
  an entry of the same term, on every disk and for the whole run; by induction two logs
  sharing an (index, term) agree on every entry up to it above both snapshots.
- Leader completeness: an entry known committed (covered by a durable commit index, or
  applied) as of term t is in the log (or under the snapshot) of every leader of a term > t.
  "As of term t": the lowest term in which a node was seen with it committed; a leader of
  a lower term may lack it (Figure 8 of the Raft paper: an entry of term 2 committed in
  term 4 need not be in the log of term 3's leader).
- State machine safety: an index is applied to the same entry everywhere, for the whole run
  (a node rebuilding its state machine after a crash re-applies the same entries), and a
  node applies indexes in order, with no gap and nothing twice.
- The caller's contract: a durable hard state never moves back (term, commit) and never
  changes its vote within a term; a durable commit index is never past the durable log; the
  core's last index and applied index match its disk and state machine after each Ready; a
  snapshot never rolls a state machine back, and restores the same applied prefix.
- At the end (`Simulation.finish`): heal, restart everyone, stop the machines that are no
  longer members, then a bounded quiet period (everything delivered, ticks) must end with
  exactly one leader, every member at its commit index with the same applied sequence, which
  holds every entry ever applied anywhere; and a new proposal must then commit everywhere.

Replay one seed, printing every action: `python -m tests.unit.manager.raft.core.simulation SEED`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from manager.raft.core import (
    ConfigChange,
    ConfigChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    Message,
    MsgType,
    NotLeader,
    ProposalDropped,
    Raft,
    ReadState,
    Ready,
    Role,
    Snapshot,
)

TRACE_TAIL = 30  # actions shown in a failure
TEST_FILE = "tests/unit/manager/raft/core/test_simulation.py"


class InvariantViolation(AssertionError):
    """A safety (or, at the end, liveness) property does not hold."""


class SimulationFailure(AssertionError):
    """A seeded run failed: the message has the seed, how to replay it and the last actions."""


# -- the state machine's snapshot ----------------------------------------------------------


def encode_state(applied: Sequence[Entry]) -> bytes:
    """The state machine as snapshot data: every entry applied, in order."""
    return json.dumps([[e.index, e.term, int(e.kind), e.data.hex()] for e in applied]).encode()


def decode_state(data: bytes) -> list[Entry]:
    return [
        Entry(term=term, index=index, kind=EntryKind(kind), data=bytes.fromhex(payload))
        for index, term, kind, payload in json.loads(data)
    ]


# -- one machine -----------------------------------------------------------------------------


@dataclass
class Disk:
    """What a machine wrote durably; a crash keeps all of it."""

    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)  # from snapshot_index + 1 on
    hard_state: HardState = field(default_factory=HardState)

    @property
    def snapshot_index(self) -> int:
        return self.snapshot.index if self.snapshot else 0

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot_index

    def entry_at(self, index: int) -> Entry | None:
        if self.snapshot_index < index <= self.last_index:
            return self.entries[index - self.snapshot_index - 1]
        return None

    def term_at(self, index: int) -> int | None:
        """The term at `index`; None when compacted away (below the snapshot) or not there."""
        if index == self.snapshot_index:
            return self.snapshot.term if self.snapshot else 0
        entry = self.entry_at(index)
        return entry.term if entry else None

    def write(self, ready: Ready) -> None:
        """Step 1 of a Ready: the snapshot, then the entries, then the hard state."""
        if ready.snapshot is not None:
            if ready.snapshot.index <= self.snapshot_index:
                raise InvariantViolation(
                    f"a Ready's snapshot at {ready.snapshot.index} is not past the one on "
                    f"disk at {self.snapshot_index}"
                )
            # The core installs a snapshot only when its log lacks the snapshot's last entry,
            # and then drops its whole log: so does the disk.
            self.snapshot = ready.snapshot
            self.entries = []
        if ready.entries:
            first = ready.entries[0].index
            if not self.snapshot_index < first <= self.last_index + 1:
                raise InvariantViolation(
                    f"a Ready's entries start at {first}: the disk holds "
                    f"{self.snapshot_index + 1}..{self.last_index}"
                )
            if [e.index for e in ready.entries] != list(range(first, first + len(ready.entries))):
                raise InvariantViolation(f"a Ready's entries are not contiguous: {ready.entries}")
            del self.entries[first - self.snapshot_index - 1 :]
            self.entries.extend(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def compact(self, snapshot: Snapshot) -> None:
        """The caller's own snapshot (its state machine at `snapshot.index`) replaces the log
        up to it."""
        self.entries = [e for e in self.entries if e.index > snapshot.index]
        self.snapshot = snapshot

    def membership_at(self, index: int, initial: Membership) -> Membership:
        membership = self.snapshot.membership if self.snapshot else initial
        for entry in self.entries:
            if entry.index > index:
                break
            if entry.kind is EntryKind.CONFIG:
                membership = ConfigChange.decode(entry.data).apply(membership)
        return membership


@dataclass
class SimNode:
    node_id: str
    disk: Disk = field(default_factory=Disk)
    raft: Raft | None = None  # None: down (crashed, stopped, or a spare never started)
    applied: list[Entry] = field(
        default_factory=list
    )  # the state machine; applied[k].index == k + 1
    dirty: bool = False  # the core may have a Ready to hand out
    started: bool = False  # ever started (a spare starts when it is added)
    commit_seen: int = 0  # the disk's commit index as far as History knows it

    @property
    def up(self) -> bool:
        return self.raft is not None

    def core(self) -> Raft:
        if self.raft is None:
            raise InvariantViolation(f"{self.node_id} is down")
        return self.raft


# -- what the checks remember ----------------------------------------------------------------


class History:
    """Every fact the invariants are checked against, collected over the whole run."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}  # term -> its leader
        self.logged: dict[
            tuple[int, int], tuple[Entry, int]
        ] = {}  # (index, term) -> entry, term before
        self.committed: dict[int, Entry] = {}  # index -> the entry known committed there
        self.committed_in: dict[int, int] = {}  # index -> lowest term it was seen committed in
        self.applied: dict[int, Entry] = {}  # index -> the entry applied there

    def saw_leader(self, node_id: str, term: int) -> bool:
        """True for a new (term, leader); InvariantViolation for a second leader of a term."""
        other = self.leaders.get(term)
        if other is None:
            self.leaders[term] = node_id
            return True
        if other != node_id:
            raise InvariantViolation(f"election safety: {other} and {node_id} both led term {term}")
        return False

    def saw_logged(self, node_id: str, entry: Entry, previous_term: int) -> None:
        key = (entry.index, entry.term)
        known = self.logged.setdefault(key, (entry, previous_term))
        if known != (entry, previous_term):
            raise InvariantViolation(
                f"log matching: {node_id} wrote {entry} after an entry of term {previous_term}; "
                f"another log has {known[0]} after an entry of term {known[1]}"
            )

    def saw_committed(self, node_id: str, entry: Entry, term: int) -> None:
        known = self.committed.setdefault(entry.index, entry)
        if known != entry:
            raise InvariantViolation(
                f"{node_id} has {entry} committed, but {known} was committed at that index"
            )
        self.committed_in[entry.index] = min(self.committed_in.get(entry.index, term), term)

    def saw_applied(self, node_id: str, entry: Entry, term: int) -> None:
        known = self.applied.setdefault(entry.index, entry)
        if known != entry:
            raise InvariantViolation(
                f"state machine safety: {node_id} applied {entry}, another node {known}"
            )
        self.saw_committed(node_id, entry, term)


# -- the cluster -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    voters: int = 3  # the first members: n1..n<voters>
    spares: int = 0  # machines that may join later as learners: n<voters+1>..
    pre_vote: bool = True
    check_quorum: bool = True
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_append_entries: int = 64

    @classmethod
    def draw(cls, rng: random.Random) -> Options:
        """A configuration for one seed: mostly the production one (pre-vote, check-quorum),
        3 or 5 voters, short timeouts so that a short run sees several elections."""
        election = rng.choice((3, 4, 5, 8))
        return cls(
            voters=rng.choice((3, 3, 5)),
            spares=rng.choice((0, 1, 2)),
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.8,
            election_ticks=election,
            heartbeat_ticks=rng.choice((1, 1, 2)),
            max_append_entries=rng.choice((1, 3, 64)),
        )


def describe(m: Message) -> str:
    """A message in one line, for traces."""
    text = f"{m.type.value} {m.src}->{m.dst} t{m.term}"
    if m.type is MsgType.APPEND:
        span = f" [{m.entries[0].index}..{m.entries[-1].index}]" if m.entries else " []"
        text += f" after {m.index}/t{m.log_term}{span} commit {m.commit}"
    elif m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
        text += f" last {m.index}/t{m.log_term}" + (" force" if m.force else "")
    elif m.type in (MsgType.APPEND_RESP, MsgType.HEARTBEAT_RESP):
        text += f" index {m.index}" + (f" REJECT hint {m.hint}" if m.reject else "")
    elif m.type is MsgType.HEARTBEAT:
        text += f" commit {m.commit}"
    elif m.type is MsgType.SNAPSHOT and m.snapshot is not None:
        text += f" snapshot {m.snapshot.index}/t{m.snapshot.term}"
    elif m.reject:
        text += " REJECT"
    return text


class Cluster:
    """Machines, a network and the checks; the scheduler (or a scenario) decides what happens."""

    def __init__(
        self,
        options: Options,
        rng: random.Random,
        *,
        raft_factory: Callable[..., Raft] = Raft,
    ) -> None:
        self.options = options
        self.rng = rng  # seeds the cores' own generators (election timeouts)
        self.raft_factory = raft_factory
        ids = [f"n{k}" for k in range(1, options.voters + options.spares + 1)]
        self.initial = Membership(frozenset(ids[: options.voters]))
        self.nodes = {node_id: SimNode(node_id) for node_id in ids}
        self.in_flight: list[Message] = []
        self.sides: dict[str, int] = {}  # the partition: a node's side; empty when healed
        self.history = History()
        # A read's context -> the highest index committed anywhere when it was asked: its
        # read index may not be below it (no stale read).
        self.read_floors: dict[bytes, int] = {}
        self.read_states: dict[str, list[ReadState]] = {}  # node -> reads it had confirmed
        self.stats: Counter[str] = Counter()
        self.log: Callable[[str], None] = lambda event: None  # what flush and quiesce do
        for node_id in ids[: options.voters]:
            self.start(node_id)

    # -- machines ----------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        return sorted(self.nodes)

    def up(self) -> list[SimNode]:
        return [self.nodes[i] for i in self.ids if self.nodes[i].up]

    def core(self, node_id: str) -> Raft:
        return self.nodes[node_id].core()

    def leaders(self) -> list[SimNode]:
        return [n for n in self.up() if n.core().role is Role.LEADER]

    def start(self, node_id: str) -> None:
        """Boot a machine from its disk alone (a first boot has an empty disk)."""
        node = self.nodes[node_id]
        assert not node.up, f"{node_id} is already up"
        disk = node.disk
        node.raft = self.raft_factory(
            node_id,
            membership=self.initial,
            hard_state=disk.hard_state,
            snapshot=disk.snapshot,
            entries=list(disk.entries),
            rng=random.Random(self.rng.getrandbits(64)),
            election_ticks=self.options.election_ticks,
            heartbeat_ticks=self.options.heartbeat_ticks,
            pre_vote=self.options.pre_vote,
            check_quorum=self.options.check_quorum,
            max_append_entries=self.options.max_append_entries,
        )
        node.applied = []
        if disk.snapshot is not None:
            self._restore(node, disk.snapshot)
        node.dirty = True  # it may have committed entries to apply again
        node.started = True
        self._check_core_matches_disk(node)

    def crash(self, node_id: str) -> None:
        """Lose everything in memory: the core (with its unpersisted Ready) and the state
        machine."""
        node = self.nodes[node_id]
        node.raft = None
        node.applied = []
        node.dirty = False

    # -- the Ready loop ----------------------------------------------------------------------

    def handle_ready(self, node_id: str) -> bool:
        """One Ready, whole: write, send, apply, advance. False when there was nothing."""
        node = self.nodes[node_id]
        raft = node.core()
        ready = raft.ready()
        if not ready:
            node.dirty = False
            self._check_core_matches_disk(node)
            return False
        before = node.disk.hard_state
        if ready.entries:
            replaced = node.disk.entry_at(ready.entries[0].index)
            if replaced is not None and replaced != ready.entries[0]:
                self.stats["log suffixes overwritten"] += 1
        node.disk.write(ready)
        self._check_written(node, before, ready)
        self.in_flight.extend(ready.messages)
        if ready.snapshot is not None:
            if ready.snapshot.index <= len(node.applied):
                raise InvariantViolation(
                    f"{node_id} got a snapshot at {ready.snapshot.index} with "
                    f"{len(node.applied)} applied: it would roll the state machine back"
                )
            self._restore(node, ready.snapshot)
            self.stats["snapshots installed"] += 1
        for entry in ready.committed:
            self._apply(node, entry, raft)
        for state in ready.read_states:
            floor = self.read_floors[state.context]
            if state.index < floor:
                raise InvariantViolation(
                    f"stale read on {node_id}: read index {state.index} for "
                    f"{state.context.decode()}, but {floor} was committed when it was asked"
                )
            self.stats["reads confirmed"] += 1
            self.read_states.setdefault(node_id, []).append(state)
        raft.advance(ready)
        node.dirty = True  # advance may have made more work (a leader's commit)
        self._check_core_matches_disk(node)
        return True

    def _restore(self, node: SimNode, snapshot: Snapshot) -> None:
        state = decode_state(snapshot.data)
        if [e.index for e in state] != list(range(1, snapshot.index + 1)):
            raise InvariantViolation(
                f"{node.node_id}: the snapshot at {snapshot.index} holds indexes "
                f"{[e.index for e in state][:5]}..., not 1..{snapshot.index}"
            )
        if state[-1:] and state[-1].term != snapshot.term:
            raise InvariantViolation(f"{node.node_id}: snapshot {snapshot} ends with {state[-1]}")
        for entry in state:
            self.history.saw_applied(node.node_id, entry, node.disk.hard_state.term)
        node.applied = state

    def _apply(self, node: SimNode, entry: Entry, raft: Raft) -> None:
        expected = len(node.applied) + 1
        if entry.index != expected:
            raise InvariantViolation(
                f"{node.node_id} applies index {entry.index}, expected {expected} "
                "(a gap, or an entry applied twice)"
            )
        if entry.index > raft.commit:
            raise InvariantViolation(f"{node.node_id} applies {entry.index} past commit")
        on_disk = node.disk.entry_at(entry.index)
        if on_disk != entry and entry.index > node.disk.snapshot_index:
            raise InvariantViolation(
                f"{node.node_id} applies {entry}, but its disk has {on_disk} there"
            )
        self.history.saw_applied(node.node_id, entry, raft.term)
        node.applied.append(entry)
        self.stats["entries applied"] += 1
        if entry.kind is EntryKind.CONFIG:
            self.stats["config changes applied"] += 1

    def _check_written(self, node: SimNode, before: HardState, ready: Ready) -> None:
        """The disk after a Ready: hard state moves forward only, every new entry agrees with
        every other log, and what the durable commit index covers is known committed."""
        name, disk, after = node.node_id, node.disk, node.disk.hard_state
        if after.term < before.term or after.commit < before.commit:
            raise InvariantViolation(f"{name}'s hard state went back: {before} -> {after}")
        if after.term == before.term and before.vote and after.vote != before.vote:
            raise InvariantViolation(
                f"{name} changed its vote in term {after.term}: {before.vote} -> {after.vote}"
            )
        if after.commit > disk.last_index:
            raise InvariantViolation(
                f"{name}'s durable commit {after.commit} is past its durable log "
                f"({disk.last_index})"
            )
        for entry in ready.entries:
            previous = disk.term_at(entry.index - 1)
            assert previous is not None  # the disk is contiguous from its snapshot on
            self.history.saw_logged(name, entry, previous)
        for index in range(max(node.commit_seen, disk.snapshot_index) + 1, after.commit + 1):
            committed = disk.entry_at(index)
            assert committed is not None
            self.history.saw_committed(name, committed, after.term)
        node.commit_seen = max(node.commit_seen, after.commit)

    def _check_core_matches_disk(self, node: SimNode) -> None:
        raft = node.core()
        if raft.last_index != node.disk.last_index:
            raise InvariantViolation(
                f"{node.node_id}: the core's last index {raft.last_index} is not the disk's "
                f"{node.disk.last_index} with no Ready pending"
            )
        if raft.applied != len(node.applied):
            raise InvariantViolation(
                f"{node.node_id}: the core says {raft.applied} applied, the state machine "
                f"has {len(node.applied)}"
            )

    # -- inputs ------------------------------------------------------------------------------

    def tick(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.core().tick()
        node.dirty = True

    def tick_all(self) -> None:
        for node in self.up():
            self.tick(node.node_id)

    def read(self, node_id: str, context: bytes) -> None:
        """A linearizable read asked on `node_id` (NotLeader when it knows no leader)."""
        node = self.nodes[node_id]
        committed = [n.core().commit for n in self.up()] + list(self.history.committed)
        self.read_floors[context] = max(committed, default=0)
        node.core().read_index(context)
        node.dirty = True

    def propose(self, node_id: str, data: bytes) -> int:
        node = self.nodes[node_id]
        index = node.core().propose(data)
        node.dirty = True
        return index

    def propose_config(self, node_id: str, change: ConfigChange) -> int:
        node = self.nodes[node_id]
        index = node.core().propose_config(change)
        node.dirty = True
        return index

    def transfer(self, node_id: str, to: str) -> None:
        node = self.nodes[node_id]
        node.core().transfer_leadership(to)
        node.dirty = True

    def campaign(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.core().campaign()
        node.dirty = True

    def leader_lost(self, node_id: str) -> None:
        """The node's transport says its leader's connection was reset."""
        node = self.nodes[node_id]
        node.core().leader_lost()
        node.dirty = True

    def compact(self, node_id: str, index: int) -> None:
        """The node's state machine at `index` becomes its snapshot, on disk and in the core."""
        node = self.nodes[node_id]
        raft = node.core()
        disk = node.disk
        term = disk.term_at(index)
        if term is None or index > len(node.applied):
            raise InvariantViolation(f"{node_id} cannot compact to {index}: not applied, on disk")
        data = encode_state(node.applied[:index])
        snapshot = Snapshot(index, term, disk.membership_at(index, self.initial), data)
        disk.compact(snapshot)
        raft.compact(index, data)
        node.dirty = True
        self.stats["compactions"] += 1

    # -- the network -------------------------------------------------------------------------

    def partition(self, *sides: Iterable[str]) -> None:
        """Split the machines; one not named is alone on its side."""
        self.sides = {}
        for number, side in enumerate(sides):
            for node_id in side:
                self.sides[node_id] = number
        for number, node_id in enumerate(self.ids, start=len(sides)):
            self.sides.setdefault(node_id, number)

    def heal(self) -> None:
        self.sides = {}

    def reachable(self, src: str, dst: str) -> bool:
        return not self.sides or self.sides[src] == self.sides[dst]

    def deliver(self, position: int) -> Message:
        message = self.in_flight.pop(position)
        node = self.nodes[message.dst]
        if not self.reachable(message.src, message.dst):
            self.stats["lost to partitions"] += 1
        elif not node.up:
            self.stats["lost to down nodes"] += 1
        else:
            node.core().step(message)
            node.dirty = True
            self.stats[f"delivered {message.type.value}"] += 1
        return message

    def flush(
        self, *, hold: Callable[[Message], bool] = lambda m: False, limit: int = 20_000
    ) -> None:
        """Handle every Ready and deliver every message (oldest first) until nothing moves;
        the messages `hold` picks stay in flight (a scenario's slow link)."""
        for _ in range(limit):
            busy = [n.node_id for n in self.up() if n.dirty]
            for node_id in busy:
                if self.handle_ready(node_id):
                    self.log(f"ready {node_id}")
                self.check()
            position = next((k for k, m in enumerate(self.in_flight) if not hold(m)), None)
            if position is not None:
                self.log("deliver " + describe(self.deliver(position)))
                self.check()
            elif not busy:
                return
        raise InvariantViolation(f"the cluster did not quiet down in {limit} rounds")

    # -- invariants checked after every step ---------------------------------------------------

    def check(self) -> None:
        for node in self.leaders():
            raft = node.core()
            if self.history.saw_leader(node.node_id, raft.term):
                self.stats["leaders elected"] += 1
            if node.node_id not in raft.membership.voters:
                raise InvariantViolation(
                    f"{node.node_id} leads term {raft.term} without being a voter of its "
                    f"membership {raft.membership}"
                )
            self._check_leader_complete(node, raft.term)

    def _check_leader_complete(self, node: SimNode, term: int) -> None:
        disk = node.disk
        for index, committed_in in self.history.committed_in.items():
            if committed_in >= term or index <= disk.snapshot_index:
                continue
            entry = self.history.committed[index]
            if disk.term_at(index) != entry.term:
                raise InvariantViolation(
                    f"leader completeness: {node.node_id} leads term {term} without {entry}, "
                    f"committed in term {committed_in} (its log has "
                    f"{disk.entry_at(index)} there)"
                )

    # -- the end -------------------------------------------------------------------------------

    def membership(self) -> Membership:
        """The latest committed membership: that of the node up with the highest commit."""
        best = max(self.up(), key=lambda n: n.core().commit)
        return best.core().membership

    def align_membership(self) -> None:
        """Members up, everyone else down (a removed manager leaves)."""
        members = self.membership().members
        for node_id in self.ids:
            node = self.nodes[node_id]
            if node_id in members and not node.up:
                self.log(f"start {node_id}: a member")
                self.start(node_id)
            elif node_id not in members and node.up:
                self.log(f"stop {node_id}: not a member")
                self.crash(node_id)

    def settled(self) -> bool:
        leaders = self.leaders()
        if len(leaders) != 1:
            return False
        leader = leaders[0].core()
        return leader.commit == leader.last_index and all(
            n.core().commit == leader.commit
            and len(n.applied) == leader.commit
            and n.core().term == leader.term
            and n.node_id in leader.membership.members
            for n in self.up()
        )

    def quiesce(self, rounds: int) -> None:
        """No more faults: deliver everything, tick, until one leader and everyone caught up."""
        for _ in range(rounds):
            self.align_membership()
            self.flush()
            if self.settled():
                return
            self.log("tick all")
            self.tick_all()
        raise InvariantViolation(
            f"liveness: after {rounds} fault-free rounds, no single leader with everyone caught up"
        )

    def check_converged(self) -> None:
        """Every member up applied the same sequence, holding all that was ever applied."""
        first, *others = self.up()
        for node in others:
            if node.applied != first.applied:
                raise InvariantViolation(
                    f"{first.node_id} and {node.node_id} applied different sequences"
                )
        for index, entry in self.history.applied.items():
            if index > len(first.applied) or first.applied[index - 1] != entry:
                raise InvariantViolation(f"durability: {entry}, once applied, was lost")


# -- the scheduler ---------------------------------------------------------------------------


class Simulation:
    """One seeded run: `steps` random actions with invariants checked after each, then the
    quiet period and the end checks."""

    def __init__(
        self,
        seed: int,
        steps: int,
        *,
        options: Options | None = None,
        raft_factory: Callable[..., Raft] = Raft,
        cluster_class: type[Cluster] = Cluster,
        verbose: bool = False,
    ) -> None:
        self.seed = seed
        self.steps = steps
        self.rng = random.Random(seed)
        self.options = options or Options.draw(self.rng)
        self.cluster = cluster_class(
            self.options, random.Random(self.rng.getrandbits(64)), raft_factory=raft_factory
        )
        self.trace: list[str] = []
        self.cluster.log = self.record
        self.verbose = verbose
        self.proposals = 0
        self.reads = 0
        self.doing = "start"  # the action under way, for a failure's report
        self.added: set[str] = set()  # spares ever added (a removed node never comes back)

    def run(self) -> Counter[str]:
        try:
            if self.rng.random() < 0.5:  # `swarmd init`: one node campaigns at once
                node_id = self.rng.choice(self.cluster.ids[: self.options.voters])
                self.cluster.campaign(node_id)
                self.record(f"campaign {node_id}")
            for _ in range(self.steps):
                self.record(self.act())
                self.cluster.check()
            self.finish()
        except Exception as exc:
            raise SimulationFailure(self.report(exc)) from exc
        return self.cluster.stats

    def record(self, action: str) -> None:
        self.trace.append(action)
        if self.verbose:
            print(f"{len(self.trace) - 1:5d} {action}")

    def report(self, exc: Exception) -> str:
        lines = [
            f"seed {self.seed} failed after action {len(self.trace) - 1} ({self.steps} steps), "
            f"doing {self.doing}: {exc!r}",
            f"options: {self.options}",
            f'replay: .venv/bin/pytest "{TEST_FILE}::test_random_cluster_stays_safe[{self.seed}]"'
            f"  (every action: .venv/bin/python -m tests.unit.manager.raft.core.simulation "
            f"{self.seed} --steps {self.steps})",
            f"last {TRACE_TAIL} actions:",
        ]
        first = max(0, len(self.trace) - TRACE_TAIL)
        lines += [f"  {k:5d} {a}" for k, a in enumerate(self.trace[first:], start=first)]
        lines.append("nodes:")
        for node_id in self.cluster.ids:
            node = self.cluster.nodes[node_id]
            disk = node.disk
            log = " ".join(f"{e.index}/t{e.term}" for e in disk.entries[-8:])
            state = "down"
            if node.raft is not None:
                r = node.raft
                state = (
                    f"{r.role.value} t{r.term} leader={r.leader or '-'} commit {r.commit} "
                    f"applied {r.applied} {sorted(r.membership.voters)}"
                    f"+{sorted(r.membership.learners)}"
                )
            lines.append(
                f"  {node_id}: {state}; disk {disk.hard_state} snapshot {disk.snapshot_index} "
                f"log ..{log}"
            )
        return "\n".join(lines)

    # -- actions: each does one thing and says what ------------------------------------------

    # How often each action is picked, relative to the others, when it can be: mostly the
    # network and the disks doing their work, with faults and operator actions in between.
    WEIGHTS: ClassVar[dict[str, float]] = {
        "deliver": 40,
        "handle_ready": 25,
        "tick_all": 6,
        "tick_one": 2,
        "propose": 6,
        "read": 3,
        "drop": 2,
        "duplicate": 2,
        "partition": 1,
        "heal": 2,
        "crash": 1,
        "restart": 3,
        "compact": 2,
        "change_membership": 1.5,
        "transfer": 0.5,
        "leader_lost": 0.5,
    }

    def possible(self, action: str) -> bool:
        cluster = self.cluster
        if action in ("deliver", "drop", "duplicate"):
            return bool(cluster.in_flight)
        if action == "handle_ready":
            return any(n.dirty for n in cluster.up())
        if action == "heal":
            return bool(cluster.sides)
        if action == "restart":
            return any(n.started and not n.up for n in cluster.nodes.values())
        if action == "partition":
            return True
        return bool(cluster.up())

    def act(self) -> str:
        names = [name for name in self.WEIGHTS if self.possible(name)]
        (self.doing,) = self.rng.choices(names, [self.WEIGHTS[name] for name in names])
        action: Callable[[], str] = getattr(self, self.doing)
        return action()

    def deliver(self) -> str:
        position = self.rng.randrange(len(self.cluster.in_flight))
        return "deliver " + describe(self.cluster.deliver(position))

    def drop(self) -> str:
        message = self.cluster.in_flight.pop(self.rng.randrange(len(self.cluster.in_flight)))
        return "drop " + describe(message)

    def duplicate(self) -> str:
        message = self.rng.choice(self.cluster.in_flight)
        self.cluster.in_flight.append(message)
        return "duplicate " + describe(message)

    def handle_ready(self) -> str:
        node_id = self.rng.choice([n.node_id for n in self.cluster.up() if n.dirty])
        raft = self.cluster.core(node_id)
        before = (raft.role, raft.term, raft.commit)
        if not self.cluster.handle_ready(node_id):
            return f"ready {node_id}: nothing"
        return (
            f"ready {node_id}: {before[0].value} t{before[1]} commit {before[2]} -> disk "
            f"{self.cluster.nodes[node_id].disk.hard_state} last {raft.last_index}"
        )

    def tick_all(self) -> str:
        self.cluster.tick_all()
        return "tick all"

    def tick_one(self) -> str:
        node = self.rng.choice(self.cluster.up())
        self.cluster.tick(node.node_id)
        return f"tick {node.node_id}"

    def propose(self) -> str:
        leaders = self.cluster.leaders()
        node = self.rng.choice(leaders or self.cluster.up())
        data = f"{self.seed}-{self.proposals}".encode()
        self.proposals += 1
        try:
            index = self.cluster.propose(node.node_id, data)
        except NotLeader as exc:
            self.cluster.stats["NotLeader"] += 1
            return f"propose {data.decode()} on {node.node_id}: not leader ({exc.leader or '?'})"
        except ProposalDropped as exc:
            self.cluster.stats["ProposalDropped"] += 1
            return f"propose {data.decode()} on {node.node_id}: dropped ({exc})"
        return f"propose {data.decode()} on {node.node_id}: index {index}"

    def read(self) -> str:
        node = self.rng.choice(self.cluster.up())
        context = f"{self.seed}-read-{self.reads}".encode()
        self.reads += 1
        try:
            self.cluster.read(node.node_id, context)
        except NotLeader:
            self.cluster.stats["reads without a leader"] += 1
            return f"read {context.decode()} on {node.node_id}: no leader known"
        return f"read {context.decode()} on {node.node_id}"

    def partition(self) -> str:
        ids = self.cluster.ids
        self.rng.shuffle(ids)
        cut = self.rng.randrange(1, len(ids))
        self.cluster.partition(sorted(ids[:cut]), sorted(ids[cut:]))
        self.cluster.stats["partitions"] += 1
        return f"partition {sorted(ids[:cut])} | {sorted(ids[cut:])}"

    def heal(self) -> str:
        self.cluster.heal()
        return "heal"

    def crash(self) -> str:
        node = self.rng.choice(self.cluster.up())
        self.cluster.crash(node.node_id)
        self.cluster.stats["crashes"] += 1
        return f"crash {node.node_id}"

    def restart(self) -> str:
        down = [n.node_id for n in self.cluster.nodes.values() if n.started and not n.up]
        node_id = self.rng.choice(sorted(down))
        self.cluster.start(node_id)
        self.cluster.stats["restarts"] += 1
        disk = self.cluster.nodes[node_id].disk
        return (
            f"restart {node_id} from {disk.hard_state} snapshot {disk.snapshot_index} "
            f"last {disk.last_index}"
        )

    def compact(self) -> str:
        candidates = [n for n in self.cluster.up() if len(n.applied) > n.disk.snapshot_index]
        if not candidates:
            return "compact: nothing applied past a snapshot"
        node = self.rng.choice(candidates)
        index = self.rng.randint(node.disk.snapshot_index + 1, len(node.applied))
        self.cluster.compact(node.node_id, index)
        return f"compact {node.node_id} to {index}"

    def change_membership(self) -> str:
        leaders = self.cluster.leaders()
        if not leaders:
            return "membership change: no leader"
        leader = self.rng.choice(leaders)
        membership = leader.core().membership
        spares = [s for s in self.cluster.ids if s not in self.cluster.initial.voters]
        changes = [
            ConfigChange(ConfigChangeKind.ADD_LEARNER, s) for s in spares if s not in self.added
        ]
        changes += [ConfigChange(ConfigChangeKind.PROMOTE, n) for n in sorted(membership.learners)]
        changes += [ConfigChange(ConfigChangeKind.REMOVE, n) for n in sorted(membership.learners)]
        if len(membership.voters) > 3:
            changes += [ConfigChange(ConfigChangeKind.REMOVE, n) for n in sorted(membership.voters)]
        if not changes:
            return "membership change: none possible"
        change = self.rng.choice(changes)
        what = f"{change.kind.value} {change.node} on {leader.node_id}"
        try:
            index = self.cluster.propose_config(leader.node_id, change)
        except (NotLeader, ProposalDropped) as exc:
            return f"{what}: refused ({exc})"
        if change.kind is ConfigChangeKind.ADD_LEARNER:
            self.added.add(change.node)
            if not self.cluster.nodes[change.node].started:
                self.cluster.start(change.node)  # the new manager boots, empty, and waits
        self.cluster.stats["membership changes proposed"] += 1
        return f"{what}: index {index}"

    def transfer(self) -> str:
        leaders = self.cluster.leaders()
        if not leaders:
            return "transfer: no leader"
        leader = self.rng.choice(leaders)
        others = sorted(leader.core().membership.voters - {leader.node_id})
        if not others:
            return "transfer: no other voter"
        to = self.rng.choice(others)
        try:
            self.cluster.transfer(leader.node_id, to)
        except ProposalDropped as exc:
            return f"transfer {leader.node_id} -> {to}: refused ({exc})"
        self.cluster.stats["transfers"] += 1
        return f"transfer {leader.node_id} -> {to}"

    def leader_lost(self) -> str:
        """A follower told its leader is gone: rightly (it crashed) or not (a connection
        blip); either way nothing unsafe may follow."""
        followers = [n for n in self.cluster.up() if n.core().leader]
        if not followers:
            return "leader lost: no follower knows a leader"
        node = self.rng.choice(followers)
        leader = node.core().leader
        self.cluster.leader_lost(node.node_id)
        self.cluster.stats["leaders lost"] += 1
        return f"leader lost: {node.node_id} forgets {leader}"

    # -- the end -----------------------------------------------------------------------------

    def finish(self) -> None:
        cluster = self.cluster
        self.doing = "the end"
        self.record("-- end: heal, restart everyone, no more faults")
        cluster.heal()
        for node_id in cluster.ids:
            node = cluster.nodes[node_id]
            if node.started and not node.up:
                cluster.start(node_id)
        rounds = 40 * self.options.election_ticks
        cluster.quiesce(rounds)
        cluster.check_converged()
        final = f"{self.seed}-final".encode()
        for _ in range(rounds):
            leader = cluster.leaders()[0]
            term = leader.core().term
            try:
                index = cluster.propose(leader.node_id, final)
            except ProposalDropped as exc:  # a leadership transfer not over yet
                self.record(f"propose {final.decode()} on {leader.node_id}: dropped ({exc})")
                cluster.tick_all()
                cluster.quiesce(rounds)
                continue
            self.record(f"propose {final.decode()} on {leader.node_id} (term {term}): {index}")
            cluster.quiesce(rounds)
            cluster.check_converged()
            applied = cluster.up()[0].applied
            if len(applied) >= index and applied[index - 1].data == final:
                self.record(f"-- the final proposal committed at {index} on every member")
                return
            if cluster.leaders()[0].core().term == term:
                raise InvariantViolation(
                    f"liveness: the final proposal at {index} was not applied, with no "
                    "leadership change"
                )
        raise InvariantViolation("liveness: no leader took the final proposal")


def run(seed: int, steps: int) -> Counter[str]:
    return Simulation(seed, steps).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay one seeded Raft simulation.")
    parser.add_argument("seed", type=int)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    simulation = Simulation(args.seed, args.steps, verbose=True)
    print(f"options: {simulation.options}")
    try:
        stats = simulation.run()
    except SimulationFailure as failure:
        print(failure, file=sys.stderr)
        return 1
    for key, count in sorted(stats.items()):
        print(f"{key}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
