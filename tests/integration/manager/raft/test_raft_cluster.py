"""Raft + store across separate processes in lab machines: replication, read barriers on
every member, failover without lost or doubled writes, full-cluster restart, catch-up from a
large snapshot, the cluster key, and membership changes that would lose quorum."""

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

    # The raft port listens on the machine's address only, not on every address.
    assert leader.netns is not None
    holder: list[socket.socket] = []
    namespaces.run_in_netns(leader.netns, lambda: holder.append(socket.socket()))
    with holder[0] as sock, pytest.raises(ConnectionRefusedError):
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
            assert barrier > acknowledged
            found = node.request("counts")
            assert found["store_index"] >= barrier
            assert found["counts"].get(f"k{i}") == 1, (node.address, i)


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
            f"lost or doubled writes on {node.address}"
        )
        assert all(n == 1 for n in found.values())
    print(f"failover with {members} members: {failover:.2f} s to the next acknowledged write")


def snapshots_above(cluster: RaftCluster, index: int) -> dict[str, int]:
    """Each member's snapshot index, once every member's compaction policy has written a
    snapshot above `index` (polled)."""

    def written() -> dict[str, int] | None:
        found = {n.address: n.status()["snapshot_index"] for n in cluster.nodes}
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
    cluster.start()
    cluster.leader()
    assert cluster.converged() == digest
    for node in cluster.nodes:
        assert counts(node) == expected
        status = node.status()
        assert status["snapshot_index"] >= snapshots[node.address]
        assert sorted(status["members"]) == sorted(n.address for n in cluster.nodes)


def test_new_member_catches_up_from_a_large_snapshot(make_cluster: MakeCluster) -> None:
    """60 MB in 1 MiB chunks, with connections dropped after 1.4 s of silence: sending and
    loading it outlasts that, so it completes only because the member acknowledges every
    chunk (without those acks this test times out: pysyncobj restarts the transfer
    forever, a size cliff)."""
    cluster = make_cluster(4, members=3, connection_timeout=1.4, compaction_min_entries=30)
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

    leader.request("add_member", address=newcomer.address)
    started = time.monotonic()
    newcomer.start([n.address for n in cluster.nodes[:3]], join=True)
    cluster.converged(timeout=120)
    print(f"{size / 1e6:.0f} MB snapshot: joined in {time.monotonic() - started:.1f} s")
    status = newcomer.status()
    # It got the store from the snapshot: its log starts at or after the snapshot.
    assert status["snapshot_index"] >= snapshot_index
    assert newcomer.request("digest")["bytes"] == size
    assert sorted(status["members"]) == sorted(n.address for n in cluster.nodes)


class _Marker:
    """Unpickling this creates a file: proof that a pickle from the wire was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mknod, (str(self.path),))


def _frame(message: Any) -> bytes:
    """A message framed as pysyncobj does without a password: length, zlib(pickle)."""
    data = zlib.compress(pickle.dumps(message, 2), 3)
    return struct.pack("i", len(data)) + data


def test_wrong_key_cannot_join_or_inject(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(4, members=3)
    leader = cluster.leader()
    for i in range(20):
        leader.request("put", key=f"k{i}")
    digest = cluster.converged()
    intruder = cluster.nodes[3]

    # Raw TCP from inside the fourth machine: unencrypted pysyncobj frames carrying a
    # pickle that would create a file if anything unpickled it.
    marker = tmp_path / "unpickled"
    holder: list[socket.socket] = []
    assert intruder.netns is not None
    namespaces.run_in_netns(intruder.netns, lambda: holder.append(socket.socket()))
    host, port = leader.address.rsplit(":", 1)
    with holder[0] as sock:
        sock.settimeout(5)
        sock.connect((host, int(port)))
        try:
            sock.sendall(_frame(_Marker(marker)))  # unpickled on arrival without a key
            sock.sendall(
                _frame({"type": "apply_command", "command": pickle.dumps(_Marker(marker))})
            )
            sock.sendall(_frame(["add", intruder.address]))
            answer = sock.recv(1024)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""  # the server hung up on us
        assert answer == b"", "the raft port answered an unauthenticated peer"
    assert not marker.exists()

    # A manager with the wrong key, added as a member, never gets the data.
    leader.request("add_member", address=intruder.address)
    intruder.key_file = tmp_path / "wrong.key"
    intruder.key_file.write_bytes(os.urandom(32))
    intruder.start([n.address for n in cluster.nodes[:3]], join=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert intruder.status()["store_index"] == 0
        assert intruder.address not in leader.status()["reachable"]
        time.sleep(0.2)
    assert cluster.converged(cluster.nodes[:3]) == digest
    assert len(counts(leader)) == 20


def test_removal_that_loses_quorum_is_refused_without_force(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    healthy, dead = [n for n in cluster.nodes if n is not leader]
    dead.kill()
    wait_until(
        "the leader to see the dead member unreachable",
        lambda: dead.address not in leader.status()["reachable"],
        timeout=10,
    )
    with pytest.raises(NodeError) as refused:
        leader.request("remove_member", address=healthy.address)
    assert refused.value.answer["error"] == "MembershipRefused"
    assert "quorum" in refused.value.answer["message"]
    with pytest.raises(NodeError) as self_removal:
        leader.request("remove_member", address=leader.address)
    assert "leader" in self_removal.value.answer["message"]
    assert sorted(leader.status()["members"]) == sorted(n.address for n in cluster.nodes)

    leader.request("remove_member", address=dead.address)
    assert sorted(leader.status()["members"]) == sorted([leader.address, healthy.address])
    leader.request("put", key="after-removal")
    wait_until("the write to reach the other member", lambda: counts(healthy), timeout=10)

    # Demoting the leader: it hands leadership over first, then the new leader removes it.
    assert leader.request("transfer_leadership")["leader"] == healthy.address
    assert cluster.leader() is healthy
    healthy.request("remove_member", address=leader.address)
    assert healthy.status()["members"] == [healthy.address]
    healthy.request("put", key="alone")
    assert counts(healthy) == {"after-removal": 1, "alone": 1}
