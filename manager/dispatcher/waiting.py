"""Waiting for whichever of several things happens first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def first_done(*waits: Awaitable[Any]) -> list[asyncio.Task[Any]]:
    """Run `waits` until one finishes; cancel the others. The tasks come back in order:
    read the result of each that is done and not cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        if any(not t.done() for t in tasks):
            await asyncio.wait(tasks)  # let the cancelled ones finish unwinding
    return tasks


def finished(task: asyncio.Task[Any]) -> bool:
    """Done with a result or an exception (not cancelled)."""
    return task.done() and not task.cancelled()
