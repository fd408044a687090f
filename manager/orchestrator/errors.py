"""Errors of the orchestrators; each message names the setting or object at fault."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error the orchestrator package raises."""


class OrchestratorConfigError(OrchestratorError):
    """A setting of `OrchestratorConfig` out of range."""
