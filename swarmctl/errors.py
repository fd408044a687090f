"""swarmctl's own exception: a clear one-line message and a non-zero exit (a value that does
not parse raises common.errors.InvalidValue, which `main` prints the same way)."""

from __future__ import annotations


class SwarmctlError(Exception):
    """A user-facing failure; `main` prints `swarmctl: error: <message>` and exits with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
