"""Raft + store across separate processes in lab machines: replication, read barriers on
every member, failover without lost or doubled writes, full-cluster restart, a new member
catching up from a large snapshot, a manager of another cluster and garbage on the raft
port, learners that never start, and membership changes that would lose quorum.

Members are node ids (m1, m2...), the ones their manager certificates name. That a
certificate for one node id cannot send messages as another is checked by
tests/unit/manager/raft/test_peer_transport.py."""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common import namespaces
from tests.integration.manager.raft.cluster import (
    NodeError,
    RaftCluster,
    RaftProcess,
    wait_until,
)
from tests.integration.manager.raft.raft_node import write_test_ca

MakeCluster = Callable[..., RaftCluster]


def put_until_acked(
    cluster: RaftCluster, key: str, proposer: str, seq: int, timeout: float = 20
) -> float:
    """Write `key` as (proposer, seq), retrying the same (proposer, seq) on whichever node
    leads until one acknowledges it; returns when it was acknowledged."""

    def attempt() -> bool:
        leader = cluster.leader(timeout=timeout)
        leader.request("put", key=key, proposer=proposer, seq=seq, timeout=5)
        return True

    wait_until(f"write {key} acknowledged", attempt, timeout, period=0.02)
    return time.monotonic()


def counts(node: RaftProcess) -> dict[str, int]:
    result: dict[str, int] = node.request("counts")["counts"]
    return result


def node_ids(nodes: list[RaftProcess]) -> list[str]:
    return sorted(n.node_id for n in nodes)


def holds_for(what: str, check: Callable[[], object], seconds: float) -> None:
    """Run `check` (which asserts) again and again for `seconds`: watching for a while
    that something does not happen. Its first failed assertion fails the test."""
    deadline = time.monotonic() + seconds

    def watched() -> bool:
        check()
        return time.monotonic() >= deadline

    wait_until(what, watched, timeout=seconds + 30, period=0.2)


def socket_in(netns: str) -> socket.socket:
    """A TCP socket of lab machine `netns`'s network namespace."""
    holder: list[socket.socket] = []
    namespaces.run_in_netns(netns, lambda: holder.append(socket.socket()))
    return holder[0]


def fill(cluster: RaftCluster, total_bytes: int) -> None:
    """Add `total_bytes` of Configs, a few MB per request (retried after a leader change)."""
    step = 2_000_000
    for _ in range(0, total_bytes, step):
        wait_until(
            "a fill step",
            lambda: cluster.leader().request(
                "fill", total_bytes=step, object_bytes=4000, timeout=60
            ),
            timeout=60,
        )


def test_writes_replicate_to_every_member(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    for i in range(50):
        leader.request("put", key=f"k{i}")
    cluster.converged()
    for node in cluster.nodes:
        assert counts(node) == {f"k{i}": 1 for i in range(50)}
        status = node.status()
        assert status["leader"] == leader.node_id
        assert status["members"] == node_ids(cluster.nodes)
        assert status["learners"] == []

    # The raft port listens on the machine's address only, not on every address.
    assert leader.netns is not None
    with socket_in(leader.netns) as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", int(leader.address.rsplit(":", 1)[1])))

    follower = next(n for n in cluster.nodes if n is not leader)
    with pytest.raises(NodeError) as refused:
        follower.request("put", key="on-a-follower")
    assert refused.value.answer["error"] == "NotLeader"
    assert refused.value.answer["leader"] == leader.address


def test_a_read_barrier_on_any_member_sees_every_write_acknowledged_before_it(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    followers = [n for n in cluster.nodes if n is not leader]
    for i in range(20):
        acknowledged = leader.request("put", key=f"k{i}")["index"]
        for node in [*followers, leader]:
            barrier = node.request("barrier")["index"]
            assert barrier >= acknowledged
            found = node.request("counts")
            assert found["store_index"] >= barrier
            assert found["counts"].get(f"k{i}") == 1, (node.node_id, i)


@pytest.mark.parametrize("members", [3, 5])
def test_leader_kill_loses_no_acknowledged_write_and_applies_none_twice(
    make_cluster: MakeCluster, members: int
) -> None:
    cluster = make_cluster(members)
    proposer = f"client-{os.getpid()}"
    acked: list[str] = []
    killed_at = failover = 0.0
    for seq in range(1, 301):
        if seq == 150:
            # Kill the leader with this write in flight: it may or may not commit.
            victim = cluster.leader()
            with socket.socket(socket.AF_UNIX) as in_flight:
                in_flight.connect(str(victim.control))
                put = {"op": "put", "key": "w150", "proposer": proposer, "seq": 150}
                in_flight.sendall(json.dumps(put).encode() + b"\n")
                victim.kill()
            killed_at = time.monotonic()
        acked_at = put_until_acked(cluster, f"w{seq}", proposer, seq)
        acked.append(f"w{seq}")
        if seq == 150:
            failover = acked_at - killed_at
    # Retries of writes the old leader acknowledged: the new leader skips them.
    leader = cluster.leader()
    for seq in (1, 149):
        leader.request("put", key=f"w{seq}", proposer=proposer, seq=seq)
    survivors = cluster.running()
    assert len(survivors) == members - 1
    cluster.converged()
    for node in survivors:
        found = counts(node)
        assert {k: found.get(k, 0) for k in acked} == {k: 1 for k in acked}, (
            f"lost or doubled writes on {node.node_id}"
        )
        assert all(n == 1 for n in found.values())
    print(f"failover with {members} members: {failover:.2f} s to the next acknowledged write")


def snapshots_above(cluster: RaftCluster, index: int) -> dict[str, int]:
    """Each member's snapshot index, once every member's compaction policy has written a
    snapshot above `index` (polled)."""

    def written() -> dict[str, int] | None:
        found = {n.node_id: n.status()["snapshot_index"] for n in cluster.nodes}
        return found if all(i > index for i in found.values()) else None

    result: dict[str, int] = wait_until(f"snapshots above index {index}", written, timeout=60)
    return result


def test_whole_cluster_killed_and_restarted_keeps_everything(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3, compaction_min_entries=100)
    leader = cluster.leader()
    for i in range(250):
        leader.request("put", key=f"before-{i}")
    cluster.converged()
    # More than 100 entries in a journal: the compaction policy snapshots (twice by now).
    snapshots = snapshots_above(cluster, 150)
    for i in range(40):  # in the journals only, after the snapshots
        leader.request("put", key=f"after-{i}")
    digest = cluster.converged()
    for node in cluster.nodes:
        status = node.status()
        assert status["snapshot_index"] < status["store_index"], "nothing in the journal"
    expected = counts(leader)
    assert len(expected) == 290

    cluster.kill_all()
    cluster.start()  # with their data: --bootstrap changes nothing
    cluster.leader()
    assert cluster.converged() == digest
    for node in cluster.nodes:
        assert counts(node) == expected
        status = node.status()
        assert status["snapshot_index"] >= snapshots[node.node_id]
        assert status["members"] == node_ids(cluster.nodes)
    cluster.leader().request("put", key="after-restart")
    cluster.converged()


def test_new_member_catches_up_from_a_large_snapshot(make_cluster: MakeCluster) -> None:
    """60 MB of store sent to a new member as a snapshot (in 1 MiB pieces): added as a
    learner, it joins with an empty data dir, catches up, and the leader makes it a
    voter."""
    cluster = make_cluster(4, members=3, compaction_min_entries=30)
    newcomer = cluster.nodes[3]
    fill(cluster, 60_000_000)
    leader = cluster.leader()
    filled = leader.status()["store_index"]
    # Small writes until the compaction policy has snapshotted all of the fill.
    extra = iter(range(10**6))

    def snapshot_of_the_fill() -> int | None:
        status = leader.status()
        if status["snapshot_index"] >= filled:
            return int(status["snapshot_index"])
        leader.request("put", key=f"after-fill-{next(extra)}")
        return None

    snapshot_index: int = wait_until("a snapshot of the fill", snapshot_of_the_fill, 120)
    size = leader.request("digest")["bytes"]
    assert size >= 60_000_000

    leader.request("add_member", node_id=newcomer.node_id, address=newcomer.address)
    status = leader.status()
    assert status["learners"] == [newcomer.node_id]
    assert status["members"] == node_ids(cluster.nodes)
    started = time.monotonic()
    cluster.join(newcomer)
    cluster.converged(timeout=120)
    print(
        f"{size / 1e6:.0f} MB snapshot: joined in {time.monotonic() - started:.1f} s; "
        f"raft term {status['term']} -> {newcomer.status()['term']}"
    )
    status = newcomer.status()
    # It got the store from the snapshot: its log starts at or after the snapshot.
    assert status["snapshot_index"] >= snapshot_index
    assert newcomer.request("digest")["bytes"] == size

    def a_voter_everywhere() -> bool:
        for node in cluster.nodes:
            found = node.status()
            if found["learners"] or found["members"] != node_ids(cluster.nodes):
                return False
        return True

    wait_until(f"{newcomer.node_id} promoted to voter", a_voter_everywhere, timeout=30)
    assert newcomer.status()["leader"] == cluster.leader().node_id
    cluster.leader().request("put", key="with-four-voters")
    cluster.converged()


def test_a_learner_that_never_starts_costs_no_quorum(make_cluster: MakeCluster) -> None:
    """3 voters and a learner added but never started: with one voter killed, the two
    others still commit (4 members, but the learner has no vote)."""
    cluster = make_cluster(4, members=3)
    leader = cluster.leader()
    absent = cluster.nodes[3]
    leader.request("add_member", node_id=absent.node_id, address=absent.address)
    leader.request("put", key="all-voters-up")
    follower, victim = [n for n in cluster.nodes[:3] if n is not leader]
    victim.kill()
    wait_until(
        "the leader to see the killed voter unreachable",
        lambda: victim.node_id not in leader.status()["reachable"],
        timeout=10,
    )
    for i in range(10):
        leader.request("put", key=f"one-voter-down-{i}", timeout=10)
    status = leader.status()
    assert status["is_leader"]
    assert status["learners"] == [absent.node_id]
    assert status["members"] == node_ids(cluster.nodes)
    cluster.converged([leader, follower])
    expected = {"all-voters-up": 1, **{f"one-voter-down-{i}": 1 for i in range(10)}}
    assert counts(follower) == expected


class _Marker:
    """Unpickling this creates a file: proof that a pickle from the wire was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mknod, (str(self.path),))


def _frame(message: Any) -> bytes:
    """A message framed as pysyncobj did without a password: length, zlib(pickle)."""
    data = zlib.compress(pickle.dumps(message, 2), 3)
    return struct.pack("i", len(data)) + data


def test_garbage_on_the_raft_port_disturbs_nothing(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """Raw TCP from another machine to every member: pickles and random bytes where a TLS
    handshake belongs. Nothing is unpickled, nothing answers but a TLS alert, and the
    group goes on committing."""
    cluster = make_cluster(4, members=3)
    members = cluster.nodes[:3]
    outsider = cluster.nodes[3]
    leader = cluster.leader()
    for i in range(20):
        leader.request("put", key=f"k{i}")
    cluster.converged(members)
    assert outsider.netns is not None
    marker = tmp_path / "unpickled"
    for member in members:
        host, port = member.address.rsplit(":", 1)
        with socket_in(outsider.netns) as sock:
            sock.settimeout(5)
            sock.connect((host, int(port)))
            answer = b""
            try:
                sock.sendall(_frame(_Marker(marker)))
                sock.sendall(_frame({"type": "append", "command": pickle.dumps(_Marker(marker))}))
                sock.sendall(os.urandom(4096))
                while chunk := sock.recv(4096):  # until the server hangs up
                    answer += chunk
            except (BrokenPipeError, ConnectionResetError):
                pass  # it hung up on us
            # At most a TLS alert record (content type 21): no raft, no gRPC.
            assert answer[:1] in (b"", b"\x15"), f"{member.node_id} answered {answer[:64]!r}"
    assert not marker.exists()
    for i in range(20):
        leader.request("put", key=f"after-{i}", timeout=10)
    cluster.converged(members)
    expected = {**{f"k{i}": 1 for i in range(20)}, **{f"after-{i}": 1 for i in range(20)}}
    for member in members:
        assert counts(member) == expected
        assert member.status()["leader"] == leader.node_id


def test_a_manager_of_another_cluster_cannot_join_or_inject(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """A manager certificate from another ClusterCA, for the node id the group has added
    (m4): the group and it refuse each other's TLS, so it never learns a leader nor gets
    the store; bootstrapped as a voter of a group with the members, its election messages
    reach none of them (none hears from m4), and their stores do not change."""
    cluster = make_cluster(4, members=3)
    members = cluster.nodes[:3]
    leader = cluster.leader()
    for i in range(20):
        leader.request("put", key=f"k{i}")
    digest = cluster.converged(members)
    term = leader.status()["term"]
    stranger = cluster.nodes[3]
    stranger.ca_dir = tmp_path / "another-ca"
    write_test_ca(stranger.ca_dir)

    def refused_both_ways() -> None:
        found = stranger.status()
        assert found["leader"] is None, found
        for member in members:
            seen = member.status()
            assert stranger.node_id not in seen["reachable"], (member.node_id, seen)
            assert (seen["term"], seen["leader"]) == (term, leader.node_id), seen

    leader.request("add_member", node_id=stranger.node_id, address=stranger.address)
    cluster.join(stranger)
    holds_for("the stranger getting nothing", refused_both_ways, 5)
    assert stranger.status()["store_index"] == 0
    assert stranger.status()["members"] == []
    assert leader.status()["learners"] == [stranger.node_id]

    # As the founder of a group of itself and the members: it campaigns (pre-votes) on
    # TLS streams the members refuse.
    stranger.kill()
    stranger.start(cluster.address_book, bootstrap=True, address_book=cluster.address_book)
    assert stranger.status()["members"] == node_ids(cluster.nodes)
    holds_for("the stranger reaching no member", refused_both_ways, 5)
    assert cluster.converged(members) == digest
    assert counts(leader) == {f"k{i}": 1 for i in range(20)}
    assert leader.status()["learners"] == [stranger.node_id]
    leader.request("put", key="still-committing")
    cluster.converged(members)


def test_removal_that_loses_quorum_is_refused_without_force(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    healthy, dead = [n for n in cluster.nodes if n is not leader]
    dead.kill()
    wait_until(
        "the leader to see the dead member unreachable",
        lambda: dead.node_id not in leader.status()["reachable"],
        timeout=10,
    )
    with pytest.raises(NodeError) as refused:
        leader.request("remove_member", node_id=healthy.node_id)
    assert refused.value.answer["error"] == "MembershipRefused"
    assert "quorum" in refused.value.answer["message"]
    with pytest.raises(NodeError) as self_removal:
        leader.request("remove_member", node_id=leader.node_id)
    assert "leader" in self_removal.value.answer["message"]
    assert leader.status()["members"] == node_ids(cluster.nodes)

    leader.request("remove_member", node_id=dead.node_id)
    assert leader.status()["members"] == node_ids([leader, healthy])
    leader.request("put", key="after-removal")
    wait_until("the write to reach the other member", lambda: counts(healthy), timeout=10)

    # Demoting the leader: it hands leadership over first, then the new leader removes it.
    assert leader.request("transfer_leadership")["leader"] == healthy.node_id
    assert cluster.leader() is healthy
    healthy.request("remove_member", node_id=leader.node_id)
    assert healthy.status()["members"] == [healthy.node_id]
    healthy.request("put", key="alone")
    assert counts(healthy) == {"after-removal": 1, "alone": 1}
