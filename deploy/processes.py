"""Stopping whatever runs inside a lab machine: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from deploy.errors import MachineError


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own child (the test harness starts the registry itself)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_all(find: Callable[[], list[int]], grace: float = 3.0, timeout: float = 10.0) -> None:
    """Stop every process `find` returns until it returns none; raise if some survive."""
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    end = time.monotonic() + timeout
    while pids := find():
        if time.monotonic() > end:
            raise MachineError(f"processes {pids} survived SIGKILL")
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        for pid in pids:
            if pid <= 0:  # kill(0) or kill(-n) would signal whole process groups
                raise MachineError(f"refusing to signal pid {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            _reap(pid)
        time.sleep(0.02)
