"""What the Control API asks of the rest of the manager, as replaceable callables.

- `RaftMemberCheck`: whether a node is still a member of the raft group. RemoveNode refuses
  a manager that is (it must be demoted first, so that quorum is kept). The manager passes
  a check backed by its raft; the default reads the node's manager_status.
- `RaftViewSource`: this manager's view of the raft group (the leader, the members it
  reaches), shown in the nodes' manager_status when they are read, as SwarmKit does; the
  default (no raft) leaves the stored status as it is.
- `JoinTokenRotation`: fresh join tokens with one role's secret replaced. UpdateCluster
  stores the result in the cluster object, which raft carries to every manager; each
  manager must keep its ClusterCA's tokens in step with that object (the default is pure,
  so a rotation refused or forwarded leaves no CA changed).
- `ReadBarrier`: returns once the store holds every write committed before the call, so
  that Get and List answer what any manager acknowledged before them (a client reads its
  own writes back from any manager). The manager passes its raft's read barrier; the
  default is for a store whose writes are applied before they are acknowledged (no raft).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from manager.ca.errors import CAError
from manager.ca.join_tokens import JoinTokens
from manager.ca.roles import Role
from manager.controlapi.errors import FailedPrecondition
from shoal.v1 import objects_pb2, types_pb2

RaftMemberCheck = Callable[[objects_pb2.Node], Awaitable[bool]]


@dataclass(frozen=True)
class RaftView:
    leader: str | None  # node id
    reachable: frozenset[str]  # node ids, this manager's own included


RaftViewSource = Callable[[], Awaitable[RaftView | None]]
JoinTokenRotation = Callable[[types_pb2.JoinTokens, Role], types_pb2.JoinTokens]
ReadBarrier = Callable[[], Awaitable[object]]


async def has_manager_status(node: objects_pb2.Node) -> bool:
    """The store's own answer: a node with a manager_status is (still) a raft member."""
    return node.HasField("manager_status")


async def no_raft_view() -> RaftView | None:
    return None


async def no_read_barrier() -> None:
    """Nothing to wait for: every acknowledged write is in this store already."""


def rotate_join_token(tokens: types_pb2.JoinTokens, role: Role) -> types_pb2.JoinTokens:
    """`tokens` with a new secret for `role`, pinned to the same root CA."""
    try:
        current = JoinTokens.from_proto(tokens)
    except CAError as exc:
        raise FailedPrecondition(
            f"the cluster's join tokens cannot be rotated: the stored ones are unusable ({exc})"
        ) from None
    return current.rotate(role).to_proto()
