"""Errors of the log broker; each message names the subscription, node or task concerned.

The servicer answers each with its gRPC status (see `servicer.STATUS_CODES`).
"""

from __future__ import annotations


class LogBrokerError(Exception):
    """Base of every error the log broker raises."""


class NotRunning(LogBrokerError):
    """The broker is not running here (this manager is not the leader, or it stopped)."""


class InvalidSelector(LogBrokerError):
    """A subscription whose selector names nothing, or an option out of range."""


class UnknownSubscription(LogBrokerError):
    """A publication for a subscription that does not exist (any more)."""


class NotYourSubscription(LogBrokerError):
    """A node published for a subscription not sent to it, or lines of another node or of
    tasks the subscription did not select."""


class IncompleteLogs(LogBrokerError):
    """A subscription without follow ended, but some nodes' logs could not be read."""
