"""Role changes (leader only): a node's `spec.desired_role` carried out on raft membership.

A manager whose desired role became WORKER leaves the raft group, one change at a time and
never below quorum (raft refuses, the node's status says why, and the change is retried);
the leader hands leadership over first when it is the one demoted, and the new leader does
the removal. Only then are its manager_status cleared and its role set to WORKER, so the CA
issues it a worker certificate at its next renewal. A worker whose desired role became
MANAGER gets role MANAGER recorded: its next renewal yields a manager certificate.

`RaftRemovalCheck` is Control RemoveNode's `raft_member` hook on the real raft: an
unreachable member (a dead manager) is removed from raft first; a running one must be
demoted before it can be removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from manager.controlapi.errors import FailedPrecondition
from manager.raft import MembershipRefused, RaftError, RaftStatus
from manager.store import ReadTx, Store, StoreError, Subscription, WatchClosed, WriteTx
from manager.store.kinds import Kind
from shoal.v1 import objects_pb2, types_pb2

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0


class RaftMembers(Protocol):
    """The part of manager.raft.Raft that role changes use."""

    async def status(self) -> RaftStatus: ...

    async def remove_member(self, node_id: str, force: bool = False) -> None: ...

    async def transfer_leadership(self, to: str | None = None, timeout: float = 5.0) -> str: ...


def _role_changes(tx: ReadTx) -> list[objects_pb2.Node]:
    """Nodes whose role (or raft membership) differs from their desired role."""
    return [
        node
        for node in tx.list(objects_pb2.Node)
        if node.spec.desired_role != node.role
        or (node.spec.desired_role == types_pb2.WORKER and node.HasField("manager_status"))
    ]


class RoleManager:
    """Leader subsystem: `await run()` carries out role changes until cancelled."""

    def __init__(
        self,
        store: Store,
        raft: RaftMembers,
        own_node_id: str,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._store = store
        self._raft = raft
        self._own = own_node_id
        self._retry_seconds = retry_seconds

    async def run(self) -> None:
        while True:
            events = self._store.watch(kinds=(Kind.NODE,))
            try:
                await self._follow(events)
            except WatchClosed as exc:  # fell behind: start over from the store
                log.warning("role manager: %s; rebuilding from the store", exc)
            finally:
                events.close()

    async def _follow(self, events: Subscription) -> None:
        while True:
            waiting = await self.reconcile()
            # A refused change is retried on the next node change, or after a while (raft
            # reachability changes are not store events).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(events.get(), self._retry_seconds if waiting else None)
            for _ in range(events.pending()):
                await events.get()

    async def reconcile(self) -> bool:
        """Carry out every pending role change, one at a time; True when one waits."""
        waiting = False
        for node in self._store.view(_role_changes):
            if node.spec.desired_role == types_pb2.WORKER:
                done = await self._demote(node)
            else:
                done = await self._record_role(node.id, types_pb2.MANAGER)
            waiting = waiting or not done
        return waiting

    async def _demote(self, node: objects_pb2.Node) -> bool:
        if node.id == self._own:
            return await self._hand_over_leadership(node)
        if node.manager_status.raft_addr:
            try:
                if node.id in (await self._raft.status()).members:
                    await self._raft.remove_member(node.id)
                    log.info("node %s left the raft group", node.id)
            except (MembershipRefused, RaftError, StoreError) as exc:
                await self._set_message(node.id, f"demotion to worker is waiting: {exc}")
                return False
        return await self._record_role(node.id, types_pb2.WORKER)

    async def _hand_over_leadership(self, node: objects_pb2.Node) -> bool:
        """The leader itself is demoted: another manager leads and removes it."""
        try:
            leader = await self._raft.transfer_leadership()
        except (RaftError, StoreError) as exc:
            await self._set_message(node.id, f"demotion to worker is waiting: {exc}")
            return False
        log.info("demoted: handed raft leadership to %s, which removes this manager", leader)
        return True

    async def _record_role(self, node_id: str, role: types_pb2.NodeRole.ValueType) -> bool:
        def record(tx: WriteTx) -> None:
            node = tx.get(objects_pb2.Node, node_id)
            if node is None or node.spec.desired_role != role:
                return  # removed, or changed its mind: the next pass sees it
            node.role = role
            if role == types_pb2.WORKER:
                node.ClearField("manager_status")
            node.status.message = ""
            tx.update(node)

        return await self._write(record, node_id)

    async def _set_message(self, node_id: str, message: str) -> None:
        def record(tx: WriteTx) -> None:
            node = tx.get(objects_pb2.Node, node_id)
            if node is not None and node.status.message != message:
                node.status.message = message
                tx.update(node)

        log.warning("node %s: %s", node_id, message)
        await self._write(record, node_id)

    async def _write(self, fn: Callable[[WriteTx], None], node_id: str) -> bool:
        try:
            await self._store.update_redone(fn)
        except StoreError as exc:
            log.warning("role change of node %s not recorded: %s", node_id, exc)
            return False
        return True


class RaftRemovalCheck:
    """Control RemoveNode's `raft_member` hook: True while `node` stays a raft member."""

    def __init__(self, raft: RaftMembers, own_node_id: str) -> None:
        self._raft = raft
        self._own = own_node_id

    async def __call__(self, node: objects_pb2.Node) -> bool:
        status = await self._raft.status()
        if node.id not in status.members:
            return False
        if node.id == self._own or node.id in status.reachable:
            return True  # running: Control refuses, it must be demoted first
        try:
            await self._raft.remove_member(node.id)
        except MembershipRefused as exc:
            raise FailedPrecondition(
                f"node {node.id!r} cannot leave the raft group: {exc}"
            ) from None
        log.info("removed unreachable manager %s from the raft group", node.id)
        return False
