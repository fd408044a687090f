"""RaftMembership: a manager joins (or leaves) the raft group through the leader.

The caller is a manager (its certificate says so, checked by the authorization interceptor);
the leader adds its raft address as a member (one change at a time, never losing quorum),
records it on its Node object, and answers with the members and the cluster raft key.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from manager.ca.auth import Authorizer, Policy, requires, rpc_method
from manager.ca.roles import Role
from manager.node_rpc import address_host, peer_host
from manager.raft import MembershipRefused, Raft
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
    leader = raft.leader_address()
    return next((m.addr for m in members(store) if m.raft_addr == leader), "")


class RaftMembershipServicer(raft_pb2_grpc.RaftMembershipServicer):
    def __init__(self, store: Store, raft: Raft, authorizer: Authorizer, raft_key: bytes) -> None:
        self.store = store
        self.raft = raft
        self.authorizer = authorizer
        self.raft_key = raft_key
        self._adding: set[asyncio.Task[None]] = set()

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
        known = {m.raft_addr: m for m in members(self.store)}
        raft_id = max([m.raft_id for m in known.values()] + [0]) + 1
        if request.raft_addr not in known and request.raft_addr != self.raft.config.address:
            # The new member starts raft only once it has the key from this answer, and the
            # change cannot commit before it runs (two members need both): so answer now and
            # let the change commit in the background, as etcd's "member add, then start".
            task = asyncio.create_task(self._add(caller.node_id, request, raft_id))
            self._adding.add(task)
            task.add_done_callback(self._adding.discard)
        wanted = raft_pb2.RaftMember(
            raft_id=raft_id, node_id=caller.node_id, addr=request.addr, raft_addr=request.raft_addr
        )
        current = [m for m in known.values() if m.raft_addr != request.raft_addr]
        return raft_pb2.JoinResponse(
            raft_id=raft_id, members=[*current, wanted], raft_key=self.raft_key
        )

    async def _add(self, node_id: str, request: raft_pb2.JoinRequest, raft_id: int) -> None:
        try:
            await self.raft.add_member(request.raft_addr, force=True)
        except (MembershipRefused, StoreError) as exc:
            log.warning("adding raft member %s failed: %s", request.raft_addr, exc)
            return

        def record(tx: WriteTx) -> None:
            node = tx.get(objects_pb2.Node, node_id)
            if node is None:
                return
            node.manager_status.raft_id = raft_id
            node.manager_status.addr = request.addr
            node.manager_status.raft_addr = request.raft_addr
            node.role = types_pb2.MANAGER
            tx.update(node)

        try:
            await self.store.update_redone(record)
        except StoreError as exc:
            log.warning("recording raft member %s failed: %s", request.raft_addr, exc)

    async def Leave(
        self, request: raft_pb2.LeaveRequest, context: grpc.aio.ServicerContext
    ) -> raft_pb2.LeaveResponse:
        if not self.raft.is_leader():
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not the raft leader")
        caller = self.authorizer.identify(context)
        assert caller is not None  # the interceptor admits managers only
        own = next((m for m in members(self.store) if m.node_id == caller.node_id), None)
        if own is None or own.raft_addr != request.node.raft_addr:
            # Removing another member is a Control action (node demote / node rm).
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {caller.node_id} may take only itself out of raft, not "
                f"{request.node.raft_addr or 'an unnamed member'}",
            )
        try:
            await self.raft.remove_member(request.node.raft_addr)
        except MembershipRefused as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return raft_pb2.LeaveResponse()
