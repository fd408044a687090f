"""The error of a value a user gave that does not parse, and how its message quotes it."""

from __future__ import annotations


class InvalidValue(ValueError):
    """A size, duration, time or image reference that does not parse; the message names the
    value and says what was expected, fit to show as it is (every CLI prints it as one line)."""


def shown(text: str, limit: int = 80) -> str:
    """`text` quoted for a message, cut short so a hostile string cannot flood it."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
