"""A raft group of in-process members on loopback (real gRPC, mutual TLS, files in
tmp_path): replication, follower reads, failover, members added (caught up from the log or
by a snapshot) and removed, leadership handed over, and managers of the cluster that are
no members kept out. Partitions are the integration fault suite's (network namespaces)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from manager.ca.client import NodeCredentials
from manager.ca.cluster_ca import ClusterCA
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS
from manager.raft import MembershipRefused, Raft, RaftConfig, RaftStatus
from manager.raft.config import MIN_MESSAGE_BYTES
from manager.raft.core import Message, MsgType
from manager.raft.peer_transport import Peers
from manager.raft.raft import SNAPSHOT_FILE, WAL_FILE
from manager.raft.wal import WriteAheadLog
from manager.store import NotLeader, Store, WriteTx, new_id
from shoal.v1 import objects_pb2
from tests.polling import until_async, until_awaited
from tests.raft_support import create_task, free_port, node_credentials

# Fast timers: elections within 0.25-0.5 s.
TIMING = {"tick_period": 0.025, "election_ticks": 10, "heartbeat_ticks": 2}
WAIT_S = 15.0
FOUNDERS = ("n1", "n2", "n3")


@dataclass
class Member:
    node_id: str
    config: RaftConfig
    credentials: NodeCredentials
    store: Store
    raft: Raft

    async def status(self) -> RaftStatus:
        return await self.raft.status()


class Group:
    """Members started on free loopback ports (`members`: the running ones); every one
    started is stopped at the end."""

    def __init__(self, ca: ClusterCA, tmp_path: Path) -> None:
        self.ca = ca
        self.tmp_path = tmp_path
        self.addresses: dict[str, str] = {}
        self.members: dict[str, Member] = {}
        self._started: list[Raft] = []

    def address(self, node_id: str) -> str:
        return self.addresses.setdefault(node_id, f"127.0.0.1:{free_port()}")

    async def start(
        self, node_id: str, *, bootstrap: bool, peers: Iterable[str], **changes: Any
    ) -> Member:
        """Start `node_id` (again, with its data dir, if it ran before)."""
        config = RaftConfig(
            node_id=node_id,
            address=self.address(node_id),
            data_dir=self.tmp_path / node_id,
            peers={peer: self.address(peer) for peer in peers if peer != node_id},
            bootstrap=bootstrap,
        )
        config = dataclasses.replace(config, **{**TIMING, **changes})
        store = Store()
        credentials = node_credentials(self.ca, node_id)
        raft = Raft(config, store, credentials)
        store.proposer = raft
        self._started.append(raft)
        await raft.start()
        member = self.members[node_id] = Member(node_id, config, credentials, store, raft)
        return member

    async def found(self, *node_ids: str, **changes: Any) -> list[Member]:
        """A new group of `node_ids`, each bootstrapped with the others as peers."""
        return [
            await self.start(node_id, bootstrap=True, peers=node_ids, **changes)
            for node_id in node_ids
        ]

    async def stop(self, node_id: str) -> Member:
        member = self.members.pop(node_id)
        await member.raft.stop()
        return member

    async def halt(self, node_id: str) -> Member:
        """Stop `node_id` at once, as a crash would: a leader hands nothing over."""
        member = self.members.pop(node_id)
        await halt(member.raft)
        return member

    async def stop_all(self) -> None:
        await asyncio.gather(*(halt(raft) for raft in self._started), return_exceptions=True)

    async def leader(self) -> Member:
        """The running member that announced leadership (of the highest term, should two)."""

        def find() -> Member | None:
            leading = [m for m in self.members.values() if m.raft.leadership.current.is_leader]
            return max(leading, key=lambda m: m.raft.leadership.current.term, default=None)

        found = await until_async(find, f"a leader among {sorted(self.members)}", timeout_s=WAIT_S)
        assert found is not None
        return found

    def others(self, member: Member) -> list[Member]:
        return [m for m in self.members.values() if m is not member]


async def halt(raft: Raft) -> None:
    """Cancel the driver (what `stop()` does after a leader's handover)."""
    driver = raft._driver
    if driver is not None:
        driver.cancel()
        await raft.wait_stopped()


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[Group]:
    founded = Group(ClusterCA.initialize(), tmp_path)
    try:
        yield founded
    finally:
        await founded.stop_all()


async def write_tasks(store: Store, count: int, concurrently: int = 1) -> list[str]:
    """`count` new tasks, written `concurrently` at a time; their ids."""
    ids: list[str] = []
    while len(ids) < count:
        batch = [create_task() for _ in range(min(concurrently, count - len(ids)))]
        await asyncio.gather(*(store.update(create) for _, create in batch))
        ids += [task_id for task_id, _ in batch]
    return ids


def task_ids(store: Store) -> set[str]:
    return store.view(lambda tx: {t.id for t in tx.list(objects_pb2.Task)})


async def holds_all(member: Member, ids: Iterable[str]) -> None:
    wanted = set(ids)
    await until_async(
        lambda: wanted - task_ids(member.store),
        f"{member.node_id}'s store to hold {len(wanted)} tasks",
        holds=lambda missing: not missing,
        timeout_s=WAIT_S,
    )


async def statuses_settle(members: Iterable[Member], members_are: list[str]) -> None:
    """Every one of `members` sees exactly `members_are` as voters (no learners)."""
    for member in members:
        await until_awaited(
            member.status,
            f"{member.node_id} to see the voters {members_are}",
            holds=lambda s: s.members == members_are and s.learners == [],
            timeout_s=WAIT_S,
        )


async def undisturbed_for(group: Group, leader: Member, seconds: float) -> None:
    """Over `seconds`, polled: `leader` keeps leading in the same term, and every member
    agrees."""
    term = (await leader.status()).term
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        for member in group.members.values():
            status = await member.status()
            assert (status.term, status.leader) == (term, leader.node_id), status
        await asyncio.sleep(leader.config.tick_period)


# -- replication and reads -------------------------------------------------------------------


async def test_writes_on_the_leader_reach_every_store(group: Group) -> None:
    await group.found(*FOUNDERS)
    leader = await group.leader()
    ids = await write_tasks(leader.store, 30, concurrently=5)
    for member in group.members.values():
        await holds_all(member, ids)
    status = await leader.status()
    assert status.members == sorted(FOUNDERS) and status.learners == []
    assert status.reachable == sorted(FOUNDERS)
    for follower in group.others(leader):
        assert not follower.raft.is_leader() and follower.raft.leader_id() == leader.node_id
        assert follower.raft.leader_address() == leader.config.address
        with pytest.raises(NotLeader) as refused:
            await follower.store.update(create_task()[1])
        assert refused.value.leader == leader.config.address


async def test_a_read_barrier_on_a_follower_covers_every_acknowledged_write(
    group: Group,
) -> None:
    await group.found(*FOUNDERS)
    leader = await group.leader()
    follower = group.others(leader)[0]
    for _ in range(15):
        task_id, create = create_task()
        written = await leader.store.update(create)
        index = await follower.raft.read_barrier()
        # No waiting: once the barrier returns, the follower's store has the write.
        assert index >= written.index and follower.store.index >= index
        assert task_id in task_ids(follower.store)


async def test_a_read_barrier_on_a_lagging_follower_waits_for_what_it_lacks(
    group: Group,
) -> None:
    # Small append messages: a follower back from a stop takes many round trips (each with
    # an fsync) to catch up, while the leader answers its read at once.
    limits = {"max_proposal_bytes": 256 << 10, "max_message_bytes": MIN_MESSAGE_BYTES}
    await group.found(*FOUNDERS, **limits)
    leader = await group.leader()
    lagging = await group.stop(group.others(leader)[0].node_id)
    written = []
    for _ in range(30):  # one entry per append message
        config = objects_pb2.Config(id=new_id())
        config.spec.data = b"x" * (200 << 10)  # over a quarter of the message limit
        written.append(config.id)

        def create(tx: WriteTx, config: objects_pb2.Config = config) -> None:
            tx.create(config)

        await leader.store.update(create)
    commit = (await leader.status()).commit_index
    log = WriteAheadLog(lagging.config.data_dir / WAL_FILE)
    log.close()
    assert log.loaded.entries[-1].index < commit - 20  # it lacks most of them

    back = await group.start(lagging.node_id, bootstrap=True, peers=FOUNDERS, **limits)
    index = await back.raft.read_barrier()
    assert index >= commit and back.store.index >= index
    configs = back.store.view(lambda tx: {c.id for c in tx.list(objects_pb2.Config)})
    assert configs == set(written)


async def test_a_failed_leader_is_replaced_by_one_that_takes_writes(group: Group) -> None:
    await group.found(*FOUNDERS)
    old = await group.leader()
    old_term = (await old.status()).term
    before = await write_tasks(old.store, 5)
    await group.halt(old.node_id)

    new = await group.leader()
    assert new.node_id != old.node_id and (await new.status()).term > old_term
    after = await write_tasks(new.store, 5)
    for member in group.members.values():
        await holds_all(member, before + after)

    # The old leader, restarted from its log, follows and catches up.
    back = await group.start(old.node_id, bootstrap=True, peers=FOUNDERS)
    await holds_all(back, before + after)
    assert (await group.leader()).node_id == new.node_id
    assert not back.raft.is_leader()


async def test_a_leader_that_stops_hands_leadership_over_first(group: Group) -> None:
    # Elections only after 0.6-1.2 s without a leader: a new one right after stop()
    # returns was handed leadership, not elected.
    await group.found(*FOUNDERS, election_ticks=24)
    old = await group.leader()
    ids = await write_tasks(old.store, 3)
    await group.stop(old.node_id)
    successors = [m for m in group.members.values() if m.raft.is_leader()]
    assert len(successors) == 1, [m.raft.leader_id() for m in group.members.values()]
    new = await group.leader()
    assert new is successors[0]
    more = await write_tasks(new.store, 3)
    for member in group.members.values():
        await holds_all(member, ids + more)


# -- membership --------------------------------------------------------------------------------


async def add(group: Group, leader: Member, node_id: str, **changes: Any) -> Member:
    """`node_id` added by `leader` as a learner, then started with an empty data dir."""
    await leader.raft.add_member(node_id, group.address(node_id))
    status = await leader.status()
    assert node_id in status.members and status.learners == [node_id]  # no vote yet
    return await group.start(node_id, bootstrap=False, peers=FOUNDERS, **changes)


async def test_an_added_member_catches_up_and_becomes_a_voter(group: Group) -> None:
    await group.found(*FOUNDERS)
    leader = await group.leader()
    ids = await write_tasks(leader.store, 20, concurrently=5)
    joined = await add(group, leader, "n4")

    await statuses_settle(group.members.values(), ["n1", "n2", "n3", "n4"])
    await holds_all(joined, ids)
    more = await write_tasks(leader.store, 3)
    await holds_all(joined, more)
    assert (await joined.status()).leader == leader.node_id
    assert not (joined.config.data_dir / SNAPSHOT_FILE).exists()  # the log sufficed


async def test_an_added_member_is_caught_up_by_a_snapshot(
    group: Group, caplog: pytest.LogCaptureFixture
) -> None:
    await group.found(*FOUNDERS, compaction_min_entries=50)
    leader = await group.leader()
    ids = await write_tasks(leader.store, 220, concurrently=20)
    # The leader's log no longer starts at 1: a new member cannot be sent it all.
    compacted = await until_awaited(
        leader.status,
        "the leader's log compacted",
        holds=lambda s: s.snapshot_index > 0 and s.log_entries < s.commit_index,
        timeout_s=WAIT_S,
    )
    caplog.set_level(logging.INFO, logger="manager.raft.raft")
    joined = await add(group, leader, "n4", compaction_min_entries=50)

    await holds_all(joined, ids)
    await statuses_settle(group.members.values(), ["n1", "n2", "n3", "n4"])
    assert (await joined.status()).snapshot_index >= compacted.snapshot_index
    assert (joined.config.data_dir / SNAPSHOT_FILE).exists()
    assert any(
        "store restored from the leader's snapshot" in record.getMessage()
        for record in caplog.records
    )
    more = await write_tasks(leader.store, 3)
    await holds_all(joined, more)


def forged(src: str, dst: str, term: int) -> list[Message]:
    """What, taken, would depose the group's leader: a heartbeat of a leader of `term`,
    and a vote request that a leadership transfer forces."""
    return [
        Message(MsgType.HEARTBEAT, src, dst, term),
        Message(MsgType.VOTE, src, dst, term, log_term=term, index=1 << 20, force=True),
    ]


async def send_until_delivered(
    group: Group, credentials: NodeCredentials, term: int, to: Iterable[Member]
) -> None:
    """Messages in the name of the node `credentials` name, at `term`, sent to each of
    `to` until its transport has delivered one to its driver (which must ignore them)."""
    src = credentials.identity.node_id
    since = time.monotonic()

    def connect(address: str) -> grpc.aio.Channel:
        creds = credentials.channel_credentials()
        return grpc.aio.secure_channel(address, creds, MANAGER_CHANNEL_OPTIONS)

    peers = Peers(connect, group.addresses.get)
    try:
        for member in to:

            def delivered(member: Member = member) -> bool:
                # Raft notes the time of each delivery, before it looks at the message.
                if member.raft._heard.get(src, 0.0) > since:
                    return True
                for message in forged(src, member.node_id, term):
                    peers.send(message)
                return False

            await until_async(
                delivered, f"{src}'s messages delivered to {member.node_id}", timeout_s=WAIT_S
            )
    finally:
        await peers.close()


async def test_a_removed_follower_leaves_and_is_ignored_afterwards(group: Group) -> None:
    await group.found(*FOUNDERS)
    leader = await group.leader()
    removed = group.others(leader)[0]
    await leader.raft.remove_member(removed.node_id)
    remaining = sorted(set(FOUNDERS) - {removed.node_id})
    stayed = [m for m in group.members.values() if m is not removed]
    await statuses_settle(stayed, remaining)

    # Still running, with a valid certificate, it hears from no leader and campaigns.
    group.members.pop(removed.node_id)
    await undisturbed_for(group, leader, 3 * leader.config.election_timeout)
    ids = await write_tasks(leader.store, 3)
    for member in stayed:
        await holds_all(member, ids)
    assert not set(ids) & task_ids(removed.store)
    # Messages of a higher term in its name would depose the leader if they counted.
    await removed.raft.stop()
    term = (await leader.status()).term
    await send_until_delivered(group, removed.credentials, term + 10, stayed)
    await undisturbed_for(group, leader, 3 * leader.config.election_timeout)


async def test_a_removal_that_leaves_no_reachable_quorum_is_refused_unless_forced(
    group: Group,
) -> None:
    await group.found(*FOUNDERS)
    leader = await group.leader()
    down, alive = group.others(leader)
    with pytest.raises(MembershipRefused, match="is the leader"):
        await leader.raft.remove_member(leader.node_id, force=True)
    await group.stop(down.node_id)
    await until_awaited(
        leader.status,
        f"{down.node_id} unreachable",
        holds=lambda s: down.node_id not in s.reachable,
        timeout_s=WAIT_S,
    )

    with pytest.raises(MembershipRefused, match="would lose quorum"):
        await leader.raft.remove_member(alive.node_id)
    assert (await leader.status()).members == sorted(FOUNDERS)

    await leader.raft.remove_member(alive.node_id, force=True)
    assert (await leader.status()).members == sorted([leader.node_id, down.node_id])


async def test_leadership_moves_on_request(group: Group) -> None:
    await group.found(*FOUNDERS)
    old = await group.leader()
    old_term = (await old.status()).term

    moved_to = await old.raft.transfer_leadership()
    assert moved_to in FOUNDERS and moved_to != old.node_id
    new = await group.leader()
    assert new.node_id == moved_to and (await new.status()).term > old_term
    assert not old.raft.is_leader()
    ids = await write_tasks(new.store, 3)
    for member in group.members.values():
        await holds_all(member, ids)

    # To a member named: back to the first leader.
    assert await new.raft.transfer_leadership(to=old.node_id) == old.node_id
    assert (await group.leader()).node_id == old.node_id
    with pytest.raises(NotLeader):
        await new.raft.transfer_leadership()


async def test_a_manager_that_is_no_member_cannot_disturb_the_group(group: Group) -> None:
    """A manager certificate of this cluster gets a node's messages through the transport;
    only members' messages reach the consensus."""
    await group.found(*FOUNDERS)
    leader = await group.leader()
    term = (await leader.status()).term
    stranger = node_credentials(group.ca, "n9")
    await send_until_delivered(group, stranger, term + 10, group.members.values())
    await undisturbed_for(group, leader, 3 * leader.config.election_timeout)
    ids = await write_tasks(leader.store, 3)
    for member in group.members.values():
        await holds_all(member, ids)
    assert (await leader.status()).members == sorted(FOUNDERS)
