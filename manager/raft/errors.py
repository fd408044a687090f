"""Errors of the raft layer; each message says what is wrong and with what."""

from __future__ import annotations

from manager.store.errors import ProposalFailed


class RaftError(Exception):
    """Base of the raft layer's own errors."""


class RaftConfigError(RaftError):
    """A RaftConfig field is missing or wrong; the message names the field."""


class RaftDataError(RaftError):
    """A journal, meta or snapshot file on disk cannot be read back."""


class RaftFailed(ProposalFailed):
    """The raft node stopped (its tick thread raised, or it was stopped); it takes no more
    proposals. `cause` is the exception that stopped it, if any."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class MembershipRefused(RaftError):
    """A membership change that was refused (quorum, unknown member, change in progress)."""
