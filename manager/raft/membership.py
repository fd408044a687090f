"""Whether a membership change keeps a quorum of reachable members."""

from __future__ import annotations

from collections.abc import Set

from manager.raft.errors import MembershipRefused


def quorum(members: int) -> int:
    return members // 2 + 1


def check_add(members: Set[str], reachable: Set[str], new: str, force: bool) -> None:
    """Adding `new` (not yet running) must leave a quorum of the bigger group reachable."""
    if new in members:
        raise MembershipRefused(f"{new} is already a raft member")
    needed = quorum(len(members) + 1)
    if len(reachable & members) < needed and not force:
        raise MembershipRefused(
            f"adding {new} would need {needed} reachable members of {len(members) + 1}, "
            f"only {len(reachable & members)} are reachable; use force to add anyway"
        )


def check_remove(
    members: Set[str], reachable: Set[str], leader: str, gone: str, force: bool
) -> None:
    """Removing `gone` must leave a quorum of the remaining members reachable."""
    if gone not in members:
        raise MembershipRefused(f"{gone} is not a raft member")
    if gone == leader:
        raise MembershipRefused(f"{gone} is the leader: transfer leadership first, then remove it")
    remaining = members - {gone}
    needed = quorum(len(remaining))
    alive = len(reachable & remaining)
    if alive < needed and not force:
        raise MembershipRefused(
            f"removing {gone} would lose quorum: {alive} of the remaining {len(remaining)} "
            f"members are reachable, {needed} are needed; use force to remove anyway"
        )
