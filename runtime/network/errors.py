"""Errors of single-host networking: each message names what was wrong, for the user to read."""

from __future__ import annotations

from runtime.errors import RuntimeEngineError


class NetworkError(RuntimeEngineError):
    """A network request that cannot be carried out; nothing of it is left behind."""


class InvalidPortError(NetworkError):
    """A published-port specification that does not parse or is out of range."""


class PortConflictError(NetworkError):
    """A host port already published by another container (or twice in one request)."""


class PoolExhaustedError(NetworkError):
    """No free address is left in the bridge subnet."""
