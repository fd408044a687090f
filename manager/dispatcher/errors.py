"""Errors of the dispatcher; each message names the node, session or task and the problem.

The servicer answers each with its gRPC status (see `servicer.STATUS_CODES`).
"""

from __future__ import annotations


class DispatcherError(Exception):
    """Base of every error the dispatcher raises."""


class ConfigError(DispatcherError):
    """A dispatcher setting out of range."""


class NotRunning(DispatcherError):
    """The dispatcher is not running here (this manager is not the leader, or it stopped)."""


class StoreUnavailable(DispatcherError):
    """A store write the call needs did not commit; the caller may retry."""


class RateLimited(DispatcherError):
    """The node re-registered too often; it may try again later."""


class UnknownNode(DispatcherError):
    """The caller's node id is not (or no longer) a member of the cluster."""


class InvalidSession(DispatcherError):
    """The session id is not the caller's current session; the agent opens a new one."""


class SessionEnded(DispatcherError):
    """The session was closed (replaced, heartbeats missed, node removed, leader lost)."""


class InvalidRequest(DispatcherError):
    """A malformed request (bad node description, bad task status update)."""


class NotYourTask(DispatcherError):
    """A node reported the status of a task that is not assigned to it."""
