"""RoleManager and RaftRemovalCheck on a real store, with a fake of the few raft calls:
raft members are node ids, the ones their certificates name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from manager.controlapi.errors import FailedPrecondition
from manager.raft import RaftError, RaftStatus
from manager.raft.membership import check_remove
from manager.role_manager import RaftRemovalCheck, RoleManager
from manager.store import LocalProposer, Store, WriteTx
from shoal.v1 import objects_pb2, types_pb2
from tests.polling import until_async

LEADER = "one"  # the node id of the manager these tests run on, the leader at first


class FakeRaft:
    """Members (node ids) and reachability as sets; the quorum check is raft's own."""

    def __init__(self, members: set[str], reachable: set[str] | None = None) -> None:
        self.members = set(members)
        self.learners: set[str] = set()
        self.reachable = set(members if reachable is None else reachable)
        self.leader = LEADER
        self.removed: list[str] = []
        self.transfers = 0
        self.transfer_error: RaftError | None = None

    async def status(self) -> RaftStatus:
        return RaftStatus(
            node_id=LEADER,
            address="10.0.0.1:4243",
            term=1,
            is_leader=self.leader == LEADER,
            leader=self.leader,
            commit_index=0,
            last_applied=0,
            members=sorted(self.members | self.learners),
            learners=sorted(self.learners),
            reachable=sorted(self.reachable & (self.members | self.learners)),
            log_entries=0,
            snapshot_index=0,
        )

    async def remove_member(self, node_id: str, force: bool = False) -> None:
        if node_id in self.learners:  # as raft: a learner never counts towards a quorum
            self.learners.discard(node_id)
        else:
            check_remove(self.members, self.reachable, self.leader, node_id, force)
            self.members.discard(node_id)
        self.removed.append(node_id)

    async def transfer_leadership(self, to: str | None = None, timeout: float = 5.0) -> str:
        self.transfers += 1
        if self.transfer_error is not None:
            raise self.transfer_error
        self.leader = sorted(self.members - {LEADER})[0]
        return self.leader


def _store() -> Store:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="role-test")
    return store


def _manager_node(node_id: str, raft_addr: str) -> objects_pb2.Node:
    node = objects_pb2.Node(id=node_id, role=types_pb2.MANAGER)
    node.spec.desired_role = types_pb2.MANAGER
    node.manager_status.raft_addr = raft_addr
    node.manager_status.addr = raft_addr.replace("4243", "4242")
    return node


def _worker_node(node_id: str) -> objects_pb2.Node:
    return objects_pb2.Node(id=node_id, role=types_pb2.WORKER)


async def _create(store: Store, *nodes: objects_pb2.Node) -> None:
    def create(tx: WriteTx) -> None:
        for node in nodes:
            tx.create(node)

    await store.update(create)


async def _set_desired(store: Store, node_id: str, role: types_pb2.NodeRole.ValueType) -> None:
    def update(tx: WriteTx) -> None:
        node = tx.get(objects_pb2.Node, node_id)
        assert node is not None
        node.spec.desired_role = role
        tx.update(node)

    await store.update(update)


def _node(store: Store, node_id: str) -> objects_pb2.Node:
    node = store.view(lambda tx: tx.get(objects_pb2.Node, node_id))
    assert node is not None
    return node


THREE = {"one", "two", "three"}


@pytest.fixture
async def three_managers() -> tuple[Store, FakeRaft]:
    store = _store()
    await _create(
        store,
        _manager_node("one", "10.0.0.1:4243"),
        _manager_node("two", "10.0.0.2:4243"),
        _manager_node("three", "10.0.0.3:4243"),
        _worker_node("four"),
    )
    return store, FakeRaft(THREE)


async def test_demoted_manager_leaves_raft_and_becomes_a_worker(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    await _set_desired(store, "three", types_pb2.WORKER)

    assert await RoleManager(store, raft, LEADER).reconcile() is False

    assert raft.members == {"one", "two"}
    assert raft.removed == ["three"]
    node = _node(store, "three")
    assert node.role == types_pb2.WORKER
    assert not node.HasField("manager_status")
    assert _node(store, "two").role == types_pb2.MANAGER


async def test_demotion_below_quorum_is_refused_with_a_message_and_retried(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    raft.reachable = {"one", "two"}  # three is down
    await _set_desired(store, "two", types_pb2.WORKER)
    roles = RoleManager(store, raft, LEADER)

    assert await roles.reconcile() is True  # waits

    assert raft.members == THREE
    node = _node(store, "two")
    assert node.role == types_pb2.MANAGER
    assert node.manager_status.raft_addr == "10.0.0.2:4243"
    assert "would lose quorum" in node.status.message
    assert node.status.message.startswith("demotion to worker is waiting")

    raft.reachable = set(THREE)  # three is back: the retry goes through
    assert await roles.reconcile() is False
    node = _node(store, "two")
    assert node.role == types_pb2.WORKER and node.status.message == ""
    assert raft.members == {"one", "three"}


async def test_demoted_leader_hands_leadership_over_and_stays_a_member(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    await _set_desired(store, "one", types_pb2.WORKER)

    assert await RoleManager(store, raft, LEADER).reconcile() is False

    assert raft.transfers == 1
    assert raft.members == THREE  # the new leader removes it
    assert raft.removed == []
    assert _node(store, "one").role == types_pb2.MANAGER

    # On the new leader, the old one is an ordinary member to remove.
    assert await RoleManager(store, raft, raft.leader).reconcile() is False
    assert raft.removed == [LEADER]
    assert _node(store, "one").role == types_pb2.WORKER


async def test_a_failed_leadership_transfer_is_reported_on_the_node(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    raft.transfer_error = RaftError("leadership did not move within 5.0 s")
    await _set_desired(store, "one", types_pb2.WORKER)

    assert await RoleManager(store, raft, LEADER).reconcile() is True

    node = _node(store, "one")
    assert "leadership did not move" in node.status.message
    assert node.role == types_pb2.MANAGER


async def test_promoted_worker_gets_role_manager_recorded(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    await _set_desired(store, "four", types_pb2.MANAGER)

    assert await RoleManager(store, raft, LEADER).reconcile() is False

    node = _node(store, "four")
    assert node.role == types_pb2.MANAGER
    assert raft.members == THREE  # it joins raft itself, as a manager


async def test_a_demoted_node_no_longer_in_raft_is_only_recorded(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    """A leader that removed it and failed before recording it leaves this state."""
    store, raft = three_managers
    raft.members.discard("three")
    await _set_desired(store, "three", types_pb2.WORKER)

    assert await RoleManager(store, raft, LEADER).reconcile() is False

    assert raft.removed == []
    assert _node(store, "three").role == types_pb2.WORKER


async def test_a_demoted_learner_leaves_raft_whatever_the_quorum(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    """A manager that joined but is not caught up yet is a learner: it counts towards no
    quorum, so it leaves even while the voters are down."""
    store, raft = three_managers
    await _create(store, _manager_node("five", "10.0.0.5:4243"))
    raft.learners.add("five")
    raft.reachable = {"one"}
    await _set_desired(store, "five", types_pb2.WORKER)

    assert await RoleManager(store, raft, LEADER).reconcile() is False

    assert raft.removed == ["five"] and raft.learners == set()
    assert _node(store, "five").role == types_pb2.WORKER


@contextlib.asynccontextmanager
async def _running(roles: RoleManager) -> AsyncIterator[None]:
    task = asyncio.create_task(roles.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_run_follows_changes_one_at_a_time_and_retries_refusals(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    raft.reachable = {"one", "two"}
    async with _running(RoleManager(store, raft, LEADER, retry_seconds=0.05)):
        await _set_desired(store, "two", types_pb2.WORKER)
        await until_async(lambda: _node(store, "two").status.message, "refusal reported")
        assert raft.members == THREE
        raft.reachable = set(THREE)  # no store event: the timed retry picks it up
        await until_async(
            lambda: _node(store, "two").role, "demoted", holds=lambda r: r == types_pb2.WORKER
        )
        await _set_desired(store, "four", types_pb2.MANAGER)
        await until_async(
            lambda: _node(store, "four").role, "promoted", holds=lambda r: r == types_pb2.MANAGER
        )
    assert raft.removed == ["two"]


async def test_removal_check_removes_an_unreachable_member_from_raft(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    raft.reachable = {"one", "two"}
    check = RaftRemovalCheck(raft, LEADER)

    assert await check(_node(store, "three")) is False
    assert raft.removed == ["three"]


async def test_removal_check_keeps_running_members_and_non_members(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    check = RaftRemovalCheck(raft, LEADER)

    assert await check(_node(store, "two")) is True  # reachable: demote it first
    assert await check(_node(store, "one")) is True  # the leader itself
    assert await check(_node(store, "four")) is False  # a worker
    assert raft.removed == []
    # This manager is running, whatever raft says of its reachability.
    raft.reachable = {"two", "three"}
    assert await check(_node(store, "one")) is True
    assert raft.removed == []


async def test_removal_check_refuses_to_lose_quorum(
    three_managers: tuple[Store, FakeRaft],
) -> None:
    store, raft = three_managers
    raft.reachable = {LEADER}  # two and three are down
    with pytest.raises(FailedPrecondition, match=r"cannot leave the raft group.*quorum"):
        await RaftRemovalCheck(raft, LEADER)(_node(store, "three"))
    assert raft.members == THREE
