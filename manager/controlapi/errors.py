"""Errors of the Control API, and the one place that turns any error into a gRPC status.

Handlers raise `ControlError`s (or let the store's errors through); `status_of` maps both to
the code and message the client gets, so every RPC answers the same way for the same fault.
"""

from __future__ import annotations

import grpc

from manager.store import (
    AlreadyExists,
    NameConflict,
    NotFound,
    ProposalFailed,
    ProposalOutcomeUnknown,
    StoreError,
    VersionConflict,
)


class ControlError(Exception):
    """A refusal with the gRPC code it is answered with."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ControlError):
    """A request field that can never be accepted; the message starts with the field's path."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ObjectNotFound(ControlError):
    code = grpc.StatusCode.NOT_FOUND


class NameTaken(ControlError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ControlError):
    """The request is well formed but the cluster's state refuses it (in use, stale, ...)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ControlError):
    """Retry later, possibly on another manager (no leader known, raft busy...)."""

    code = grpc.StatusCode.UNAVAILABLE


_STORE_CODES: tuple[tuple[type[StoreError], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (NameConflict, grpc.StatusCode.ALREADY_EXISTS),
    (VersionConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (ProposalOutcomeUnknown, grpc.StatusCode.UNAVAILABLE),
    (ProposalFailed, grpc.StatusCode.UNAVAILABLE),
)


def status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC code and message for an error raised while serving a call.

    Anything that is neither a ControlError nor a known store refusal is a bug of ours:
    INTERNAL, with the error's type so that the log and the client can be matched.
    """
    if isinstance(error, ControlError):
        return error.code, str(error)
    if isinstance(error, VersionConflict):
        return grpc.StatusCode.FAILED_PRECONDITION, f"update out of sequence: {error}"
    if isinstance(error, ProposalOutcomeUnknown):
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"the change may or may not have been made ({error}); read the object, then retry",
        )
    for store_error, code in _STORE_CODES:
        if isinstance(error, store_error):
            return code, str(error)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}): {error}"
