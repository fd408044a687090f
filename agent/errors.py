"""Errors of the agent; each message names the problem, fit to show as it is."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class TaskSpecError(AgentError):
    """A task whose spec this node cannot run as asked (the task is REJECTED with it)."""


class ConfigError(AgentError):
    """An agent setting that is missing or malformed."""


class SessionEnded(AgentError):
    """The session with the dispatcher ended; the agent reconnects."""


class ContainerGone(AgentError):
    """A task that started on this node has no container any more."""
