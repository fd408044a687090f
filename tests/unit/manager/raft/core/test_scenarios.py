"""Hand-written runs of the Raft core on the simulated cluster (simulation.py), one behaviour
each: elections, check-quorum and pre-vote around partitions, learners, membership changes
(the leader removing itself included), leadership transfer, snapshots to a follower far
behind, a new leader overwriting an uncommitted suffix, Figure 8 of the Raft paper,
NotLeader. Nothing random but the cores' election timeouts, from a fixed seed; the
simulation's invariants are checked after every step here too.
"""

from __future__ import annotations

import random

import pytest

from manager.raft.core import (
    ConfigChange,
    ConfigChangeKind,
    EntryKind,
    Message,
    MsgType,
    NotLeader,
    ProposalDropped,
    ReadState,
    Role,
)
from tests.unit.manager.raft.core.simulation import Cluster, Options

ELECTION = 10  # election_ticks in every scenario


def cluster(
    spares: int = 0,
    *,
    pre_vote: bool = True,
    check_quorum: bool = True,
    max_append_entries: int = 64,
) -> Cluster:
    """Three voters n1..n3, `spares` machines to add later."""
    options = Options(
        voters=3,
        spares=spares,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        election_ticks=ELECTION,
        max_append_entries=max_append_entries,
    )
    return Cluster(options, random.Random(7))


def elect(c: Cluster, node_id: str) -> None:
    c.campaign(node_id)
    c.flush()
    assert c.core(node_id).role is Role.LEADER


def ticks(c: Cluster, count: int) -> None:
    for _ in range(count):
        c.tick_all()
        c.flush()


def settle(c: Cluster) -> None:
    """Everything delivered, then a heartbeat: a follower whose acknowledgement reached the
    leader after the commit index moved learns the new one from the next heartbeat."""
    c.flush()
    ticks(c, 1)


def data(c: Cluster, node_id: str) -> list[bytes]:
    """What the node's state machine applied, no-ops and membership changes left out."""
    return [e.data for e in c.nodes[node_id].applied if e.kind is EntryKind.NORMAL and e.data]


def leader_of(c: Cluster) -> str:
    (leader,) = c.leaders()
    return leader.node_id


def test_three_nodes_elect_a_leader_and_commit() -> None:
    c = cluster()
    ticks(c, 3 * ELECTION)  # timeouts alone, no campaign() call
    leader = leader_of(c)
    term = c.core(leader).term
    assert all(c.core(n).leader == leader and c.core(n).term == term for n in c.ids)

    c.propose(leader, b"a")
    c.propose(leader, b"b")
    settle(c)
    for node_id in c.ids:
        assert data(c, node_id) == [b"a", b"b"]
        assert c.core(node_id).commit == 3  # the leader's no-op, a, b
        assert c.nodes[node_id].disk.hard_state.commit == 3
    voted = {c.nodes[n].disk.hard_state.vote for n in c.ids}
    assert leader in voted  # the votes that elected it are durable


def test_a_partitioned_leader_steps_down_and_the_majority_goes_on() -> None:
    c = cluster()
    elect(c, "n1")
    c.partition({"n1"}, {"n2", "n3"})
    # Check-quorum: within two election timeouts of silence, the old leader steps down.
    for _ in range(2 * ELECTION + 1):
        c.tick("n1")
        c.flush()
    assert c.core("n1").role is Role.FOLLOWER
    assert c.core("n1").term == 1  # pre-vote: being alone never raised its term

    ticks(c, 3 * ELECTION)
    new = leader_of(c)
    assert new in ("n2", "n3")
    assert c.core(new).term == 2
    c.propose(new, b"while n1 was away")
    c.flush()

    c.heal()
    ticks(c, 2)
    assert leader_of(c) == new
    assert c.core("n1").leader == new
    assert data(c, "n1") == [b"while n1 was away"]


@pytest.mark.parametrize("pre_vote", [True, False])
def test_a_follower_back_from_a_partition_deposes_the_leader_only_without_pre_vote(
    pre_vote: bool,
) -> None:
    c = cluster(pre_vote=pre_vote, check_quorum=pre_vote)
    elect(c, "n1")
    c.partition({"n3"}, {"n1", "n2"})
    ticks(c, 5 * ELECTION)  # n3 times out again and again
    c.propose("n1", b"x")
    c.flush()
    assert leader_of(c) == "n1"

    c.heal()
    ticks(c, 2 * ELECTION)  # n3's next timeout, at least
    if pre_vote:
        assert c.core("n3").term == 1  # its pre-votes never won: no term raised
        assert leader_of(c) == "n1" and c.core("n1").term == 1
        assert c.core("n3").leader == "n1"
    else:
        assert c.core("n3").term > 1
        assert c.core("n1").term > 1  # the healthy leader was deposed
    ticks(c, 3 * ELECTION)
    assert all(data(c, n) == [b"x"] for n in c.ids)


def add_learner(c: Cluster, leader: str, node_id: str) -> None:
    c.propose_config(leader, ConfigChange(ConfigChangeKind.ADD_LEARNER, node_id))
    c.start(node_id)
    c.flush()
    ticks(c, 1)
    assert all(c.core(n).membership.learners == {node_id} for n in c.ids)


def test_a_learner_gets_the_log_but_neither_votes_nor_counts_for_commit() -> None:
    c = cluster(spares=1)
    elect(c, "n1")
    c.propose("n1", b"before")
    c.flush()
    add_learner(c, "n1", "n4")
    assert data(c, "n4") == [b"before"]

    # n1 and the learner alone: a proposal reaches n4's log but does not commit.
    c.partition({"n1", "n4"}, {"n2", "n3"})
    commit = c.core("n1").commit
    index = c.propose("n1", b"not committed")
    ticks(c, ELECTION // 2)
    assert c.nodes["n4"].disk.last_index == index
    assert c.core("n1").commit == commit
    assert data(c, "n4") == [b"before"]

    # A learner never campaigns, and candidates do not ask it for a vote.
    c.heal()
    ticks(c, 1)
    term = c.core("n4").term
    for _ in range(5 * ELECTION):
        c.tick("n4")
        c.flush()
    assert c.core("n4").role is Role.FOLLOWER and c.core("n4").term == term
    c.campaign("n2")
    c.handle_ready("n2")
    asked = {m.dst for m in c.in_flight if m.type in (MsgType.PRE_VOTE, MsgType.VOTE)}
    assert asked == {"n1", "n3"}
    c.flush()
    ticks(c, 3 * ELECTION)
    assert leader_of(c) != "n4"


def test_a_promoted_learner_votes_and_counts() -> None:
    c = cluster(spares=1)
    elect(c, "n1")
    add_learner(c, "n1", "n4")
    c.propose_config("n1", ConfigChange(ConfigChangeKind.PROMOTE, "n4"))
    c.flush()
    ticks(c, 1)
    assert all(c.core(n).membership.voters == {"n1", "n2", "n3", "n4"} for n in c.ids)

    # Four voters: a quorum is three, and n4 is one of them.
    c.partition({"n1", "n2"}, {"n3", "n4"})
    commit = c.core("n1").commit
    c.propose("n1", b"two of four")
    c.flush()
    assert c.core("n1").commit == commit
    c.partition({"n1", "n2", "n4"}, {"n3"})
    ticks(c, 1)
    assert c.core("n1").commit > commit
    assert data(c, "n4") == [b"two of four"]

    c.heal()
    ticks(c, 1)
    c.transfer("n1", "n4")
    c.flush()
    assert leader_of(c) == "n4"


def test_a_leader_removing_itself_steps_down_once_the_change_commits() -> None:
    c = cluster()
    elect(c, "n1")
    c.propose("n1", b"a")
    c.flush()
    c.propose_config("n1", ConfigChange(ConfigChangeKind.REMOVE, "n1"))
    c.flush()
    assert c.core("n1").role is Role.FOLLOWER
    assert c.core("n1").membership.voters == {"n2", "n3"}

    ticks(c, 3 * ELECTION)
    new = leader_of(c)
    assert new in ("n2", "n3")
    assert c.core(new).membership.voters == {"n2", "n3"}
    c.propose(new, b"b")
    c.flush()
    assert data(c, "n2") == data(c, "n3") == [b"a", b"b"]
    term = c.core("n1").term
    ticks(c, 3 * ELECTION)
    assert c.core("n1").role is Role.FOLLOWER  # no longer a voter: never campaigns again
    assert c.core("n1").term == term


def lose_the_appends_of(c: Cluster, leader: str) -> None:
    """The leader's pending appends go out and are lost: the followers fall behind, and the
    leader sends them one entry at a time (max_append_entries=1) after the next heartbeat."""
    c.handle_ready(leader)
    c.in_flight.clear()


def test_a_leader_removing_itself_while_followers_lag_steps_down() -> None:
    c = cluster(max_append_entries=1)
    elect(c, "n1")
    c.propose("n1", b"a")
    settle(c)
    c.propose_config("n1", ConfigChange(ConfigChangeKind.REMOVE, "n1"))
    c.propose("n1", b"x")
    c.propose("n1", b"y")
    lose_the_appends_of(c, "n1")
    ticks(c, 1)  # n2's acknowledgement commits the removal with x and y still to send
    assert c.core("n1").role is Role.FOLLOWER
    assert c.core("n1").membership.voters == {"n2", "n3"}

    ticks(c, 3 * ELECTION)
    new = leader_of(c)
    assert new in ("n2", "n3")
    c.propose(new, b"b")
    settle(c)
    # x and y, never committed, left with n1's leadership.
    assert data(c, "n2") == data(c, "n3") == [b"a", b"b"]


def test_a_follower_whose_acknowledgement_commits_its_own_removal() -> None:
    c = cluster(max_append_entries=1)
    elect(c, "n1")
    c.propose("n1", b"a")
    settle(c)
    c.partition({"n1", "n3"}, {"n2"})  # n3's acknowledgement is the one that commits
    c.propose_config("n1", ConfigChange(ConfigChangeKind.REMOVE, "n3"))
    c.propose("n1", b"x")
    lose_the_appends_of(c, "n1")
    ticks(c, 1)
    assert c.core("n1").role is Role.LEADER
    assert c.core("n1").membership.voters == {"n1", "n2"}

    c.heal()
    c.propose("n1", b"y")
    settle(c)
    assert data(c, "n1") == data(c, "n2") == [b"a", b"x", b"y"]


def test_leadership_moves_to_a_caught_up_follower() -> None:
    c = cluster()
    elect(c, "n1")
    c.propose("n1", b"a")
    c.flush()
    c.transfer("n1", "n2")
    with pytest.raises(ProposalDropped):
        c.propose("n1", b"during the transfer")
    c.flush()
    assert leader_of(c) == "n2"
    assert c.core("n2").term == 2
    c.propose("n2", b"b")
    settle(c)
    assert all(data(c, n) == [b"a", b"b"] for n in c.ids)


def test_leadership_moves_to_a_follower_behind_once_it_caught_up() -> None:
    c = cluster()
    elect(c, "n1")
    c.partition({"n1", "n2"}, {"n3"})
    for k in range(5):
        c.propose("n1", b"%d" % k)
    c.flush()
    c.heal()
    c.transfer("n1", "n3")  # n3 lacks 5 entries: the leader sends them first
    c.flush()
    assert leader_of(c) == "n3"
    assert data(c, "n3") == [b"0", b"1", b"2", b"3", b"4"]


def test_a_follower_far_behind_gets_a_snapshot() -> None:
    c = cluster(max_append_entries=4)
    elect(c, "n1")
    c.partition({"n1", "n2"}, {"n3"})
    for k in range(20):
        c.propose("n1", b"%d" % k)
        c.flush()
    applied = len(c.nodes["n1"].applied)
    c.compact("n1", applied)
    c.compact("n2", applied - 5)
    assert c.nodes["n1"].disk.entries == []

    c.heal()
    ticks(c, 2)
    assert c.stats["snapshots installed"] == 1
    assert c.nodes["n3"].disk.snapshot == c.nodes["n1"].disk.snapshot
    assert data(c, "n3") == [b"%d" % k for k in range(20)]
    c.propose("n1", b"after")
    settle(c)
    assert data(c, "n3")[-1] == b"after"

    c.crash("n3")  # back from its disk: the snapshot, then the entries after it
    c.start("n3")
    c.flush()
    assert data(c, "n3") == data(c, "n1")


def test_a_new_leader_overwrites_an_uncommitted_suffix() -> None:
    c = cluster()
    elect(c, "n1")
    c.propose("n1", b"committed")
    c.flush()
    c.partition({"n1"}, {"n2", "n3"})
    stale = c.propose("n1", b"lost 1")
    c.propose("n1", b"lost 2")
    c.flush()
    assert c.nodes["n1"].disk.term_at(stale) == 1

    ticks(c, 3 * ELECTION)  # n2 and n3 wait out n1's lease, then elect one of them
    (new,) = (n for n in c.leaders() if n.node_id != "n1")
    c.propose(new.node_id, b"kept")
    c.flush()

    c.heal()
    ticks(c, 2)
    assert leader_of(c) == new.node_id
    assert c.core("n1").leader == new.node_id
    assert c.nodes["n1"].disk.term_at(stale) == c.core("n1").term  # the new leader's no-op
    assert c.stats["log suffixes overwritten"] >= 1
    for node_id in c.ids:
        assert data(c, node_id) == [b"committed", b"kept"]


def test_an_entry_of_an_earlier_term_is_not_committed_by_counting_replicas() -> None:
    """Figure 8 of the Raft paper, on three nodes: an entry a new leader finds in its log
    from an earlier term may be on a majority and still be overwritten later, so the leader
    commits it only with an entry of its own term."""
    c = cluster(pre_vote=False, check_quorum=False, max_append_entries=1)
    elect(c, "n1")  # term 1: the no-op at 1
    c.propose("n1", b"a")  # at 2, committed everywhere
    settle(c)

    # Term 1: n1 writes "old" at 3, alone.
    c.partition({"n1"}, {"n2", "n3"})
    c.propose("n1", b"old")
    c.flush()
    # Term 2: n3 wins with n2's vote and writes its no-op at 3, alone.
    c.campaign("n3")
    c.flush(hold=lambda m: m.type is MsgType.APPEND)
    assert c.core("n3").role is Role.LEADER and c.core("n3").term == 2
    c.in_flight.clear()

    # Term 3: n1, back from a restart, wins with n2's vote (its last entry 3/t1 beats n2's
    # 2/t1) and brings "old" to n2; its own no-op at 4 stays on the way.
    c.partition({"n1", "n2"}, {"n3"})
    c.crash("n1")
    c.start("n1")
    c.campaign("n1")  # term 2: n2 already voted for n3
    c.flush()
    c.campaign("n1")  # term 3

    def carries_the_noop(m: Message) -> bool:
        # Held only once "old" is on n2: before, n2 refuses it anyway (it has no entry 3),
        # and the refusal is what makes n1 probe back to 3.
        return (
            m.type is MsgType.APPEND
            and any(e.index == 4 for e in m.entries)
            and c.nodes[m.dst].disk.term_at(3) == 1
        )

    c.flush(hold=carries_the_noop)
    assert c.core("n1").role is Role.LEADER and c.core("n1").term == 3
    c.tick("n1")  # a heartbeat: n2 answers, n1 probes back to 3, then sends the no-op
    c.flush(hold=carries_the_noop)
    assert c.nodes["n2"].disk.term_at(3) == 1  # "old" is on a majority...
    assert c.core("n1").commit == 2  # ...and not committed: it is not of term 3

    # n1 goes down; n3 wins term 4 with n2's vote (3/t2 beats 3/t1) and overwrites "old".
    c.crash("n1")
    c.in_flight.clear()
    c.partition({"n2", "n3"}, {"n1"})
    c.crash("n3")
    c.start("n3")
    c.campaign("n3")  # term 3: n2 already voted for n1
    c.flush()
    c.campaign("n3")  # term 4
    c.flush()
    assert c.core("n3").role is Role.LEADER and c.core("n3").term == 4
    assert c.nodes["n2"].disk.term_at(3) == 2

    c.heal()
    c.start("n1")
    c.propose("n3", b"new")
    settle(c)
    assert all(data(c, n) == [b"a", b"new"] for n in c.ids)


def test_a_proposal_on_a_follower_names_the_leader() -> None:
    c = cluster()
    with pytest.raises(NotLeader) as unknown:
        c.propose("n1", b"x")
    assert unknown.value.leader == ""
    elect(c, "n1")
    with pytest.raises(NotLeader) as known:
        c.propose("n2", b"x")
    assert known.value.leader == "n1"
    with pytest.raises(NotLeader):
        c.propose_config("n3", ConfigChange(ConfigChangeKind.REMOVE, "n1"))


def test_reads_are_confirmed_by_a_quorum_and_a_cut_off_leader_confirms_none() -> None:
    """ReadIndex: a follower's read goes through the leader, whose commit index is confirmed
    by a quorum's heartbeat answers. A leader cut off from the majority (check-quorum off,
    so it still believes it leads) confirms no read: it would miss what the new leader
    committed."""
    c = cluster(check_quorum=False)
    elect(c, "n1")
    c.propose("n1", b"a")
    settle(c)
    c.read("n2", b"first")
    settle(c)
    assert c.read_states["n2"] == [ReadState(c.core("n1").commit, b"first")]

    c.partition({"n1"}, {"n2", "n3"})
    for _ in range(3 * ELECTION):
        c.tick("n2")
        c.tick("n3")
        c.flush()
    (new,) = [n for n in ("n2", "n3") if c.core(n).role is Role.LEADER]
    c.propose(new, b"b")
    settle(c)
    assert c.core("n1").role is Role.LEADER  # in its own mind
    c.read("n1", b"stale?")
    ticks(c, 3)
    assert "n1" not in c.read_states  # never confirmed
    c.read(new, b"fresh")
    settle(c)
    assert c.read_states[new][-1] == ReadState(c.core(new).commit, b"fresh")


def test_followers_told_their_leader_died_elect_another_well_within_a_timeout() -> None:
    """The transport saw the leader's connection reset: the followers need not wait out an
    election timeout (10 ticks here) to replace it."""
    c = cluster()
    elect(c, "n1")
    settle(c)
    c.crash("n1")
    for follower in ("n2", "n3"):
        c.leader_lost(follower)
    elapsed = 0
    while not c.leaders() and elapsed < 10:
        ticks(c, 1)
        c.flush()
        elapsed += 1
    assert [n.node_id for n in c.leaders()] in (["n2"], ["n3"])
    assert elapsed <= 5  # half an election timeout at most


def test_a_follower_wrongly_told_its_leader_died_does_not_depose_it() -> None:
    """A connection blip: pre-vote finds the other follower still hears from the leader."""
    c = cluster()
    elect(c, "n1")
    settle(c)
    term = c.core("n1").term
    c.leader_lost("n2")
    for _ in range(5):
        ticks(c, 1)
        c.flush()
    assert c.core("n1").role is Role.LEADER and c.core("n1").term == term
