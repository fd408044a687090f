"""Networks' JSON state on disk: written through runtime.files (atomic, durable, root only),
read with a clear error when a file is damaged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime import files
from runtime.network.errors import NetworkError


def read_json(path: Path) -> Any | None:
    """The decoded content of `path`, or None when it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NetworkError(f"network state file {path} is damaged: {exc}") from None


def write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, durably (root only: it names namespaces)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_json(path, data, mode=0o600)
