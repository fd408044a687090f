"""RaftMembership refuses what a manager's certificate does not entitle it to: joining raft
at an address other than its own, taking another member out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest

from manager.ca.auth import Authorizer
from manager.ca.certificates import NodeIdentity
from manager.ca.roles import Role
from manager.raft import Raft
from manager.raft_membership import RaftMembershipServicer
from manager.store import LocalProposer, Store, WriteTx
from shoal.v1 import objects_pb2, raft_pb2


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
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    class config:
        address = "10.0.0.1:4243"

    def is_leader(self) -> bool:
        return True

    async def add_member(self, address: str, force: bool = False) -> None:
        self.added.append(address)

    async def remove_member(self, address: str) -> None:
        self.removed.append(address)


class Identities:
    def identify(self, context: Context) -> NodeIdentity:
        return NodeIdentity(context.node_id, Role.MANAGER, "cluster")


async def servicer() -> tuple[RaftMembershipServicer, FakeRaft]:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")

    def seed(tx: WriteTx) -> None:
        for number in (1, 2):
            node = objects_pb2.Node(id=f"m{number}")
            node.manager_status.raft_addr = f"10.0.0.{number}:4243"
            node.manager_status.addr = f"10.0.0.{number}:4242"
            tx.create(node)
        tx.create(objects_pb2.Node(id="m3"))

    await store.update(seed)
    raft = FakeRaft()
    membership = RaftMembershipServicer(
        store, cast(Raft, raft), cast(Authorizer, Identities()), b"key"
    )
    return membership, raft


def join(raft_addr: str, addr: str) -> raft_pb2.JoinRequest:
    return raft_pb2.JoinRequest(raft_addr=raft_addr, addr=addr)


async def test_a_manager_joins_at_its_own_address_only() -> None:
    membership, _ = await servicer()
    context: Any = Context("m3", "10.0.0.3")
    answer = await membership.Join(join("10.0.0.3:4243", "10.0.0.3:4242"), context)
    assert answer.raft_key == b"key"
    for request in (join("10.0.0.9:4243", "10.0.0.3:4242"), join("10.0.0.3:4243", "10.0.0.9:4242")):
        with pytest.raises(Aborted, match="not the address this manager calls from") as refused:
            await membership.Join(request, context)
        assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_manager_takes_only_itself_out_of_raft() -> None:
    membership, raft = await servicer()
    other = raft_pb2.LeaveRequest(node=raft_pb2.RaftMember(raft_addr="10.0.0.1:4243"))
    with pytest.raises(Aborted, match="may take only itself out of raft") as refused:
        await membership.Leave(other, cast(Any, Context("m2", "10.0.0.2")))
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert raft.removed == []
    itself = raft_pb2.LeaveRequest(node=raft_pb2.RaftMember(raft_addr="10.0.0.2:4243"))
    await membership.Leave(itself, cast(Any, Context("m2", "10.0.0.2")))
    assert raft.removed == ["10.0.0.2:4243"]
