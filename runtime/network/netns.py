"""Network namespaces by file: open one, check it is one, and run code inside it.

Python 3.11 has no os.setns, so libc's is called through ctypes. setns moves only the
calling thread, so work inside another namespace runs in a short-lived thread of its own:
sockets it opens (netlink included) belong to that namespace, and the caller stays put.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from runtime.network.errors import NetworkError

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl: which kind of namespace an nsfs file is

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc; find_library forks ldconfig
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def open_netns(path: str) -> int:
    """An O_RDONLY fd on the network namespace at `path` (the caller closes it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetworkError(f"cannot open network namespace {path}: {exc.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = None
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise NetworkError(f"{path} is not a network namespace")
    return fd


def same_netns(fd: int) -> bool:
    """True when `fd` is the calling thread's own network namespace."""
    mine = os.stat("/proc/thread-self/ns/net")
    theirs = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def call_in_netns(fd: int, work: Callable[[], T]) -> T:
    """Run `work` in a new thread inside the network namespace open at `fd`; return its
    result or raise its exception in the caller's thread."""
    results: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            _setns(fd)
            results.append(work())
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=body, name="netns-work")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
