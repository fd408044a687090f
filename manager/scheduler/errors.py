"""Errors of the scheduler package; each message names the expression at fault."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the scheduler package raises."""


class ConstraintError(SchedulerError):
    """A placement constraint that does not parse (bad key, operator or value).

    The Control API answers INVALID_ARGUMENT with this message.
    """


class PreferenceError(SchedulerError):
    """A placement preference the scheduler cannot apply (e.g. an unknown spread key)."""
