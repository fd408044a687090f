"""Persistent namespaces: a namespace kept alive by a bind mount on a file, like `ip netns add`.

Network namespaces are bound under /run/netns so `ip netns` lists them; other kinds (uts) are
bound wherever the caller says. /run/netns is not turned into a shared mount point (iproute2
does that): the lab must leave the host's mount table exactly as it found it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from deploy import libc

NETNS_DIR = Path("/run/netns")

_NS_FILE = {libc.CLONE_NEWNET: "net", libc.CLONE_NEWUTS: "uts"}


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def _in_thread(work: Callable[[], None]) -> None:
    """Run `work` in a fresh thread, so namespace changes die with that thread."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="namespace-setup")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


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
        libc.bind_mount(f"/proc/thread-self/ns/{_NS_FILE[nstype]}", str(path))

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
        libc.umount_detach(str(path))
    path.unlink(missing_ok=True)


def enter(path: Path, nstype: int) -> None:
    """Move the calling thread into the namespace bound at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, nstype)
    finally:
        os.close(fd)


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


def run_in_netns(name: str, work: Callable[[], None]) -> None:
    """Run `work` in a separate thread inside network namespace `name`.

    Sockets it creates stay in that namespace, so the caller can use them from any thread.
    """

    def body() -> None:
        enter(netns_path(name), libc.CLONE_NEWNET)
        work()

    _in_thread(body)


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
