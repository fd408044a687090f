"""One exclusive lock per network directory, so two engines sharing it (two `shoal run`
processes) never race on the bridge, the address pool or the port rules."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.network.errors import NetworkError

LOCK_TIMEOUT_S = 30.0
_POLL_S = 0.005


@contextlib.contextmanager
def exclusive(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an flock on `path` (created on demand) for the body.

    Re-checks after locking that `path` still names the locked file, so a teardown that
    deletes the lock file (and its directory) while others wait cannot let two holders in.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if time.monotonic() > deadline:
            raise NetworkError(f"timed out waiting for the network lock {path}")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # its directory was just removed by a teardown
            continue
        try:
            _lock(fd, path, deadline)
            if _same_file(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _lock(fd: int, path: Path, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        if time.monotonic() > deadline:
            raise NetworkError(f"timed out waiting for the network lock {path}")
        time.sleep(_POLL_S)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)
