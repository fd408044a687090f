"""Errors of the store; each message names the object and the problem."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises."""


class NotFound(StoreError):
    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id!r} not found")
        self.kind = kind
        self.object_id = object_id


class AlreadyExists(StoreError):
    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id!r} already exists")
        self.kind = kind
        self.object_id = object_id


class NameConflict(StoreError):
    def __init__(self, kind: str, name: str, holder_id: str) -> None:
        super().__init__(f"{kind} name {name!r} is already used by {kind} {holder_id!r}")
        self.kind = kind
        self.name = name
        self.holder_id = holder_id


class VersionConflict(StoreError):
    """An update or removal carried a meta.version other than the stored one."""

    def __init__(self, kind: str, object_id: str, stored: int, given: int) -> None:
        super().__init__(
            f"{kind} {object_id!r}: version {given} is stale (stored version is {stored}); "
            "read the object again and retry"
        )
        self.kind = kind
        self.object_id = object_id
        self.stored = stored
        self.given = given


class InvalidAction(StoreError):
    """A store action that can never apply (no kind, no object, no id...)."""


class SnapshotError(StoreError):
    """A snapshot that cannot be decoded."""


class NotLeader(StoreError):
    """This manager is not the raft leader; `leader` is the leader's raft address if known."""

    def __init__(self, leader: str | None) -> None:
        where = f"the leader is {leader}" if leader else "no leader is known"
        super().__init__(f"this manager is not the raft leader ({where})")
        self.leader = leader


class ProposalFailed(StoreError):
    """The proposal was not committed (queue full, node failed, refused...)."""


class TransactionTooLarge(ProposalFailed):
    """Larger than one raft entry may be: the writer splits it and tries each part."""


class ProposalOutcomeUnknown(StoreError):
    """The proposal may or may not have committed; propose the same StoreActions again
    (same proposer_id and sequence): a retry never applies twice."""


class WatchClosed(StoreError):
    """The subscription was closed (by its owner, or because the store was restored)."""


class WatchOverflow(WatchClosed):
    """The subscriber fell behind by more than its queue size and was dropped."""
