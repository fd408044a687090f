"""What the store says of a caller whose certificate checked out.

A certificate stays valid for 90 days, so it alone cannot tell that its node was removed
or demoted meanwhile. On every RPC: a node the store no longer has (removed: node ids are
never reused) is refused, whatever its certificate says; a node whose role was changed
calls only what both its certificate and its new role allow, until it renews its
certificate (a demoted manager keeps the Dispatcher and the CA, not Control; a promoted
worker gets Control only with its manager certificate).
"""

from __future__ import annotations

from manager.ca.auth import Policy, Standing
from manager.ca.certificates import NodeIdentity
from manager.ca.errors import PermissionDenied
from manager.ca.roles import Role
from manager.store import ReadTx, Store
from shoal.v1 import objects_pb2, types_pb2


def store_standing(store: Store) -> Standing:
    def check(caller: NodeIdentity, method: str, policy: Policy) -> None:
        node = store.view(lambda tx: tx.get(objects_pb2.Node, caller.node_id))
        if node is None:
            raise PermissionDenied(
                f"node {caller.node_id} was removed from the cluster: its certificate is "
                "no longer accepted"
            )
        wanted = Role.MANAGER if node.spec.desired_role == types_pb2.MANAGER else Role.WORKER
        if wanted not in policy.roles:
            raise PermissionDenied(
                f"{method} is for {' or '.join(sorted(r.ou for r in policy.roles))} only; "
                f"node {caller.node_id} is to be a {wanted.ou} now"
            )

    return check


def raft_standing(store: Store) -> Standing:
    """For the raft port, where a manager certificate is already required: a node the store
    no longer has is refused. Its role may lag (a demoted leader hands over leadership
    before it leaves), and a store still empty (a manager catching up) refuses no one."""

    def check(caller: NodeIdentity, method: str, policy: Policy) -> None:
        def read(tx: ReadTx) -> tuple[bool, bool]:
            known = tx.get(objects_pb2.Node, caller.node_id) is not None
            return known, bool(tx.list(objects_pb2.Cluster))

        known, has_cluster = store.view(read)
        if has_cluster and not known:
            raise PermissionDenied(
                f"node {caller.node_id} was removed from the cluster: it takes no part in raft"
            )

    return check
