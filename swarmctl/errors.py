"""The one exception swarmctl reports: a clear one-line message and a non-zero exit."""

from __future__ import annotations


class SwarmctlError(Exception):
    """A user-facing failure; `main` prints `swarmctl: error: <message>` and exits with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
