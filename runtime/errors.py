"""Errors of the node-local engine: each carries a message fit to show a user as it is."""


class RuntimeEngineError(Exception):
    """Base of every error the engine reports to its user (a value that does not parse, an
    image reference above all, raises common.errors.InvalidValue instead)."""


class ContainerError(RuntimeEngineError):
    """A container could not be created, started, stopped or found."""


class NotFound(ContainerError):
    """No container by that name or id."""
