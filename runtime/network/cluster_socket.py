"""The engine's way to the node's swarmd, for standalone containers on the cluster's
attachable overlay networks (`shoal run --network NAME`).

swarmd listens on a unix socket in the engine's root (mode 0600: root only) while it runs;
the `shoal` commands, which know nothing of the cluster's API, ask it there: one JSON
request and one JSON answer per connection, each a line.

- {"op": "attach", "container_id", "container_name", "network"} -> {"overlay": {...}}
  (an OverlayAttachment: swarmd asks the managers for an address and waits for it);
- {"op": "serve", "container_id", "netns_path", "network_ids"} -> {} (swarmd answers the
  container's DNS queries and balances its virtual IPs, as for its own tasks' containers);
- {"op": "release", "container_id"} -> {} (the container ended: swarmd stops serving it
  and gives its addresses back).

A refusal answers {"error": "..."}, raised here as NetworkError with that text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from runtime.config import EngineConfig
from runtime.network.errors import NetworkError

SOCKET_NAME = "swarmd.sock"
# An attach waits for the managers' allocation; the other operations answer at once.
TIMEOUT_S = 60.0
MAX_LINE = 1 << 16

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(config: EngineConfig) -> Path:
    return config.root / SOCKET_NAME


def call(path: Path, op: str, timeout_s: float = TIMEOUT_S, **fields: Any) -> dict[str, Any]:
    """Ask the node's swarmd; NetworkError when none listens or it refuses."""
    request = json.dumps({"op": op, **fields}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(request)
            with sock.makefile("rb") as reader:
                line = reader.readline(MAX_LINE)
    except FileNotFoundError:
        raise NetworkError(
            f"this node runs no swarmd (no {path}): cluster networks need the node in a swarm"
        ) from None
    except OSError as exc:
        raise NetworkError(f"cannot reach this node's swarmd at {path}: {exc}") from None
    try:
        answer = json.loads(line)
    except json.JSONDecodeError:
        raise NetworkError(f"this node's swarmd gave no answer to {op!r}") from None
    if not isinstance(answer, dict):
        raise NetworkError(f"this node's swarmd answered {op!r} with {answer!r}")
    if "error" in answer:
        raise NetworkError(str(answer["error"]))
    return answer


async def serve(path: Path, handle: Handler) -> asyncio.AbstractServer:
    """Listen at `path` (root only); each request goes to `handle`, whose exceptions are
    answered as errors."""

    async def answer(reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await reader.readline()
        except ValueError:  # asyncio's word for a line over the limit
            return {"error": f"a request is one line of at most {MAX_LINE} bytes"}
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            return await handle(request)
        except Exception as exc:  # the caller shows it; the server goes on
            return {"error": str(exc) or type(exc).__name__}

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(await answer(reader)).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_umask = os.umask(0o177)
    try:
        return await asyncio.start_unix_server(one, path=str(path), limit=MAX_LINE)
    finally:
        os.umask(old_umask)
