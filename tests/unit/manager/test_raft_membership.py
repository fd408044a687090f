"""RaftMembership: a manager joins raft as itself (the node its certificate names) at the
address it calls from, as a learner the leader adds by node id, and takes only itself
out; there is no shared raft key to hand out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest

from manager.ca.auth import Authorizer
from manager.ca.certificates import NodeIdentity
from manager.ca.roles import Role
from manager.raft import MembershipRefused, Raft, RaftStatus
from manager.raft_membership import RaftMembershipServicer
from manager.store import LocalProposer, Store, WriteTx
from shoal.v1 import objects_pb2, raft_pb2, types_pb2


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


@dataclass
class Context:
    node_id: str
    peer_address: str

    def peer(self) -> str:
        return f"ipv4:{self.peer_address}:53122"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


@dataclass
class FakeRaft:
    """The leader's raft as RaftMembership uses it; members are node ids."""

    members: set[str] = field(default_factory=lambda: {"m1", "m2"})
    learners: set[str] = field(default_factory=set)
    leading: bool = True
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refusal: MembershipRefused | None = None

    def is_leader(self) -> bool:
        return self.leading

    def leader_id(self) -> str | None:
        return "m1"

    async def status(self) -> RaftStatus:
        return RaftStatus(
            node_id="m1",
            address="10.0.0.1:4243",
            term=2,
            is_leader=self.leading,
            leader="m1",
            commit_index=10,
            last_applied=10,
            members=sorted(self.members | self.learners),
            learners=sorted(self.learners),
            reachable=sorted(self.members),
            log_entries=10,
            snapshot_index=0,
        )

    async def add_member(self, node_id: str, address: str) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.added.append((node_id, address))
        self.learners.add(node_id)

    async def remove_member(self, node_id: str, force: bool = False) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.removed.append(node_id)
        self.members.discard(node_id)
        self.learners.discard(node_id)


class Identities:
    def identify(self, context: Context) -> NodeIdentity:
        return NodeIdentity(context.node_id, Role.MANAGER, "cluster")


async def servicer() -> tuple[RaftMembershipServicer, FakeRaft, Store]:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")

    def seed(tx: WriteTx) -> None:
        for number in (1, 2):
            node = objects_pb2.Node(id=f"m{number}", role=types_pb2.MANAGER)
            node.manager_status.raft_id = number
            node.manager_status.raft_addr = f"10.0.0.{number}:4243"
            node.manager_status.addr = f"10.0.0.{number}:4242"
            tx.create(node)
        tx.create(objects_pb2.Node(id="m3", role=types_pb2.WORKER))

    await store.update(seed)
    raft = FakeRaft()
    membership = RaftMembershipServicer(store, cast(Raft, raft), cast(Authorizer, Identities()))
    return membership, raft, store


def join(raft_addr: str, addr: str) -> raft_pb2.JoinRequest:
    return raft_pb2.JoinRequest(raft_addr=raft_addr, addr=addr)


def as_node(node_id: str, address: str) -> Any:
    return Context(node_id, address)


def stored(store: Store, node_id: str) -> objects_pb2.Node:
    node = store.view(lambda tx: tx.get(objects_pb2.Node, node_id))
    assert node is not None
    return node


def test_a_join_hands_out_no_key() -> None:
    assert "raft_key" not in raft_pb2.JoinResponse.DESCRIPTOR.fields_by_name


async def test_a_manager_joins_as_a_learner_by_its_node_id() -> None:
    membership, raft, store = await servicer()
    answer = await membership.Join(
        join("10.0.0.3:4243", "10.0.0.3:4242"), as_node("m3", "10.0.0.3")
    )

    assert raft.added == [("m3", "10.0.0.3:4243")]
    assert answer.raft_id == 3  # after the highest one recorded
    assert {(m.node_id, m.raft_addr, m.addr) for m in answer.members} == {
        ("m1", "10.0.0.1:4243", "10.0.0.1:4242"),
        ("m2", "10.0.0.2:4243", "10.0.0.2:4242"),
        ("m3", "10.0.0.3:4243", "10.0.0.3:4242"),
    }
    node = stored(store, "m3")
    assert node.role == types_pb2.MANAGER
    assert node.manager_status.raft_id == 3
    assert (node.manager_status.raft_addr, node.manager_status.addr) == (
        "10.0.0.3:4243",
        "10.0.0.3:4242",
    )

    # Again (a retry after a lost answer): no second add, the same raft id.
    again = await membership.Join(join("10.0.0.3:4243", "10.0.0.3:4242"), as_node("m3", "10.0.0.3"))
    assert raft.added == [("m3", "10.0.0.3:4243")]
    assert again.raft_id == 3


async def test_a_manager_joins_at_its_own_address_only() -> None:
    membership, raft, store = await servicer()
    context = as_node("m3", "10.0.0.3")
    for request in (join("10.0.0.9:4243", "10.0.0.3:4242"), join("10.0.0.3:4243", "10.0.0.9:4242")):
        with pytest.raises(Aborted, match="not the address this manager calls from") as refused:
            await membership.Join(request, context)
        assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(Aborted, match="addr and raft_addr are required") as refused:
        await membership.Join(join("", "10.0.0.3:4242"), context)
    assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert raft.added == []
    assert not stored(store, "m3").HasField("manager_status")


async def test_a_join_goes_to_the_leader() -> None:
    membership, raft, _ = await servicer()
    raft.leading = False
    with pytest.raises(
        Aborted, match=r"not the raft leader; the leader is at 10\.0\.0\.1:4242"
    ) as e:
        await membership.Join(join("10.0.0.3:4243", "10.0.0.3:4242"), as_node("m3", "10.0.0.3"))
    assert e.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert raft.added == []


async def test_a_join_raft_refuses_is_not_recorded() -> None:
    membership, raft, store = await servicer()
    raft.refusal = MembershipRefused("a membership change is still in progress")
    with pytest.raises(Aborted, match="adding m3 to raft failed: a membership change") as e:
        await membership.Join(join("10.0.0.3:4243", "10.0.0.3:4242"), as_node("m3", "10.0.0.3"))
    assert e.value.code is grpc.StatusCode.UNAVAILABLE
    node = stored(store, "m3")
    assert node.role == types_pb2.WORKER and not node.HasField("manager_status")


async def test_a_manager_takes_only_itself_out_of_raft() -> None:
    membership, raft, _ = await servicer()
    context = as_node("m2", "10.0.0.2")
    for other in (
        raft_pb2.RaftMember(raft_addr="10.0.0.1:4243"),
        raft_pb2.RaftMember(node_id="m1"),
        raft_pb2.RaftMember(node_id="m1", raft_addr="10.0.0.2:4243"),  # the id counts
    ):
        with pytest.raises(Aborted, match="m2 may take only itself out of raft") as refused:
            await membership.Leave(raft_pb2.LeaveRequest(node=other), context)
        assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert raft.removed == []

    by_address = raft_pb2.LeaveRequest(node=raft_pb2.RaftMember(raft_addr="10.0.0.2:4243"))
    await membership.Leave(by_address, context)
    assert raft.removed == ["m2"]
    by_id = raft_pb2.LeaveRequest(node=raft_pb2.RaftMember(node_id="m2"))
    await membership.Leave(by_id, context)
    assert raft.removed == ["m2", "m2"]


async def test_a_leave_raft_refuses_says_why() -> None:
    membership, raft, _ = await servicer()
    raft.refusal = MembershipRefused("removing m2 would lose quorum")
    itself = raft_pb2.LeaveRequest(node=raft_pb2.RaftMember(node_id="m2"))
    with pytest.raises(Aborted, match="would lose quorum") as refused:
        await membership.Leave(itself, as_node("m2", "10.0.0.2"))
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
    raft.leading = False
    with pytest.raises(Aborted, match="not the raft leader") as refused:
        await membership.Leave(itself, as_node("m2", "10.0.0.2"))
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
