"""Errors of the node-local engine: each carries a message fit to show a user as it is."""


class RuntimeEngineError(Exception):
    """Base of every error the engine reports to its user."""


class ContainerError(RuntimeEngineError):
    """A container could not be created, started, stopped or found."""


class NotFound(ContainerError):
    """No container by that name or id."""
