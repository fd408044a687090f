"""RaftMembership: a manager joins (or leaves) the raft group through the leader.

The caller is a manager (its certificate says so, checked by the authorization interceptor);
the leader adds it, by its node id, as a raft learner at the address it calls from (a
learner has no vote: the group's quorum is unchanged until the leader promotes it, once it
has caught up), records its addresses on its Node object, and answers with the members.
There is no shared key to hand out: managers know each other by certificate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from manager.ca.auth import Authorizer, Policy, requires, rpc_method
from manager.ca.roles import Role
from manager.node_rpc import address_host, peer_host
from manager.raft import MembershipRefused, Raft, RaftError
from manager.store import ReadTx, Store, StoreError, WriteTx
from shoal.v1 import objects_pb2, raft_pb2, raft_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

POLICIES: dict[str, Policy] = {
    rpc_method(raft_pb2.DESCRIPTOR, "RaftMembership", "Join"): requires(Role.MANAGER),
    rpc_method(raft_pb2.DESCRIPTOR, "RaftMembership", "Leave"): requires(Role.MANAGER),
}


def members(store: Store) -> list[raft_pb2.RaftMember]:
    def read(tx: ReadTx) -> list[raft_pb2.RaftMember]:
        nodes = tx.list(objects_pb2.Node)
        return [
            raft_pb2.RaftMember(
                raft_id=n.manager_status.raft_id,
                node_id=n.id,
                addr=n.manager_status.addr,
                raft_addr=n.manager_status.raft_addr,
            )
            for n in nodes
            if n.manager_status.raft_addr
        ]

    return store.view(read)


def leader_api_address(store: Store, raft: Raft) -> str:
    """The gRPC address of the current leader (empty when unknown)."""
    leader = raft.leader_id()
    return next((m.addr for m in members(store) if m.node_id == leader), "")


class RaftMembershipServicer(raft_pb2_grpc.RaftMembershipServicer):
    def __init__(self, store: Store, raft: Raft, authorizer: Authorizer) -> None:
        self.store = store
        self.raft = raft
        self.authorizer = authorizer

    async def Join(
        self, request: raft_pb2.JoinRequest, context: grpc.aio.ServicerContext
    ) -> raft_pb2.JoinResponse:
        caller = self.authorizer.identify(context)
        assert caller is not None  # the interceptor admits managers only
        if not self.raft.is_leader():
            leader = leader_api_address(self.store, self.raft)
            message = f"not the raft leader; the leader is at {leader}"
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, message)
        if not request.raft_addr or not request.addr:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "addr and raft_addr are required")
        # A manager adds only itself: at the address it calls from, not one it names.
        calling_from = peer_host(context.peer())
        for field, address in (("addr", request.addr), ("raft_addr", request.raft_addr)):
            if address_host(address) != calling_from:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{field} {address} is not the address this manager calls from "
                    f"({calling_from or 'unknown'}): a manager joins raft at its own address",
                )
        known = {m.node_id: m for m in members(self.store)}
        raft_id = known[caller.node_id].raft_id if caller.node_id in known else 0
        raft_id = raft_id or max([m.raft_id for m in known.values()] + [0]) + 1
        try:
            if caller.node_id not in (await self.raft.status()).members:
                await self.raft.add_member(caller.node_id, request.raft_addr)
            await self.store.update_redone(
                lambda tx: self._record(tx, caller.node_id, request, raft_id)
            )
        except (MembershipRefused, RaftError, StoreError) as exc:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"adding {caller.node_id} to raft failed: {exc}"
            )
        wanted = raft_pb2.RaftMember(
            raft_id=raft_id, node_id=caller.node_id, addr=request.addr, raft_addr=request.raft_addr
        )
        current = [m for m in known.values() if m.node_id != caller.node_id]
        return raft_pb2.JoinResponse(raft_id=raft_id, members=[*current, wanted])

    @staticmethod
    def _record(tx: WriteTx, node_id: str, request: raft_pb2.JoinRequest, raft_id: int) -> None:
        node = tx.get(objects_pb2.Node, node_id)
        if node is None:
            return
        node.manager_status.raft_id = raft_id
        node.manager_status.addr = request.addr
        node.manager_status.raft_addr = request.raft_addr
        node.role = types_pb2.MANAGER
        tx.update(node)

    async def Leave(
        self, request: raft_pb2.LeaveRequest, context: grpc.aio.ServicerContext
    ) -> raft_pb2.LeaveResponse:
        if not self.raft.is_leader():
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not the raft leader")
        caller = self.authorizer.identify(context)
        assert caller is not None  # the interceptor admits managers only
        named = request.node.node_id or next(
            (m.node_id for m in members(self.store) if m.raft_addr == request.node.raft_addr), ""
        )
        if named != caller.node_id:
            # Removing another member is a Control action (node demote / node rm).
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {caller.node_id} may take only itself out of raft, not "
                f"{named or request.node.raft_addr or 'an unnamed member'}",
            )
        try:
            await self.raft.remove_member(caller.node_id)
        except MembershipRefused as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return raft_pb2.LeaveResponse()


def raft_addresses(store: Store) -> Callable[[str], str | None]:
    """Where a manager listens for raft messages, as its Node object records it."""

    def find(node_id: str) -> str | None:
        node = store.view(lambda tx: tx.get(objects_pb2.Node, node_id))
        return node.manager_status.raft_addr or None if node is not None else None

    return find
