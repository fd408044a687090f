"""JSON state on disk: written atomically (temporary file, fsync, rename), read with a clear
error when a file is damaged, so a crash mid-write never leaves a half-written record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
    """Replace `path` with `data` as JSON in one step."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
