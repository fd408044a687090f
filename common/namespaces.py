"""Namespaces by file: make one that outlives its processes (bound on a file, as `ip netns add`
does), check and enter one, and run code inside one.

setns moves only the calling thread, so work inside another namespace runs in a short-lived
thread of its own: sockets it opens (netlink included) belong to that namespace, and the
caller stays put. Network namespaces are bound under /run/netns so `ip netns` lists them;
other kinds (uts) wherever the caller says. /run/netns is not turned into a shared mount
point (iproute2 does that): the host's mount table stays exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from common import libc

NETNS_DIR = Path("/run/netns")
NS_GET_NSTYPE = 0xB703  # ioctl: which kind of namespace an nsfs file is

T = TypeVar("T")

_NS_FILE = {libc.CLONE_NEWNET: "net", libc.CLONE_NEWUTS: "uts"}


def netns_path(name: str) -> Path:
    """Where the network namespace `name` is bound (/run/netns/NAME)."""
    return NETNS_DIR / name


def _in_thread(work: Callable[[], T]) -> T:
    """Run `work` in a fresh thread, so namespace changes die with that thread; return its
    result or raise its exception in the caller's thread."""
    results: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=body, name="namespace-work")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def create_bound(path: Path, nstype: int, setup: Callable[[], None] | None = None) -> None:
    """Create a new namespace of `nstype` and keep it alive by binding it to `path`.

    `setup` runs inside the new namespace before it is bound (e.g. sethostname).
    Raises FileExistsError when `path` exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))

    def work() -> None:
        libc.unshare(nstype)
        if setup is not None:
            setup()
        libc.mount(f"/proc/thread-self/ns/{_NS_FILE[nstype]}", str(path), None, libc.MS_BIND)

    try:
        _in_thread(work)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def is_bound(path: Path) -> bool:
    """True when `path` holds a namespace (a bind-mounted nsfs file)."""
    try:
        return path.stat().st_dev != path.parent.stat().st_dev
    except FileNotFoundError:
        return False


def remove_bound(path: Path) -> None:
    """Unbind and delete a namespace file; absent files are fine (teardown is idempotent)."""
    if is_bound(path):
        libc.umount(str(path))
    path.unlink(missing_ok=True)


def pids_in(path: Path, kind: str = "net") -> list[int]:
    """Processes whose `kind` namespace is the one bound at `path`."""
    try:
        target = path.stat()
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/{kind}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry.name))
    return found


def open_netns(path: str | Path) -> int:
    """An O_RDONLY fd on the network namespace at `path` (the caller closes it); OSError
    when it cannot be opened or is no network namespace."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = None
    if kind != libc.CLONE_NEWNET:
        os.close(fd)
        raise OSError(errno.EINVAL, "not a network namespace", str(path))
    return fd


def same_netns(fd: int) -> bool:
    """True when `fd` is the calling thread's own network namespace."""
    mine = os.stat("/proc/thread-self/ns/net")
    theirs = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def enter(path: str | Path, nstype: int) -> None:
    """Move the calling thread into the namespace bound at `path` (raw syscalls only: safe
    in a forked child before exec)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, nstype)
    finally:
        os.close(fd)


def call_in_netns(netns: int | Path, work: Callable[[], T]) -> T:
    """Run `work` in a new thread inside the network namespace open at `netns` (an fd) or
    bound at it (a path); return its result or raise its exception in the caller's thread.

    Sockets it creates stay in that namespace, so the caller can use them from any thread.
    """

    def body() -> T:
        if isinstance(netns, int):
            libc.setns(netns, libc.CLONE_NEWNET)
        else:
            enter(netns, libc.CLONE_NEWNET)
        return work()

    return _in_thread(body)


def run_in_netns(name: str, work: Callable[[], T]) -> T:
    """Run `work` in a new thread inside network namespace `name` (see call_in_netns)."""
    return call_in_netns(netns_path(name), work)


@contextlib.contextmanager
def entered_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside network namespace `name`, then return."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(netns_path(name), libc.CLONE_NEWNET)
        try:
            yield
        finally:
            libc.setns(home, libc.CLONE_NEWNET)
    finally:
        os.close(home)
