"""`shoal exec`: run another process inside a running container's namespaces and cgroup.

The caller forks; the child makes itself non-dumpable and closes every descriptor it does
not need, joins the container's cgroup and namespaces (the mount namespace
last: it also moves root and cwd into the container), forks again so the new process lands
in the container's pid namespace, and that grandchild drops privileges like the container's
own process and execs. The middle process relays the exit status.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from common import libc
from runtime.container import init
from runtime.errors import ContainerError

NAMESPACES = (  # order matters: mnt last (it changes how paths resolve)
    ("ipc", libc.CLONE_NEWIPC),
    ("uts", libc.CLONE_NEWUTS),
    ("net", libc.CLONE_NEWNET),
    ("pid", libc.CLONE_NEWPID),
    ("cgroup", libc.CLONE_NEWCGROUP),
    ("mnt", libc.CLONE_NEWNS),
)


@dataclass(frozen=True)
class ExecPlan:
    pid: int  # the container's init, in the caller's pid namespace
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    cgroup_procs: tuple[str, ...]
    last_cap: int


def _child(
    plan: ExecPlan,
    stdio: tuple[int, int, int],
    error_w: int,
    seccomp: libc.SockFprog | None,
    terminal: socket.socket | None,
) -> NoReturn:
    stage = "hide the host"
    try:
        # Before anything of the container can see this process (it is the host's Python
        # until it execs): not dumpable, so a container process cannot open its
        # /proc/PID/exe (the host interpreter: CVE-2019-5736's pattern), its fds or memory
        # (that needs CAP_SYS_PTRACE, which containers do not have); the exec'd command is
        # dumpable again. And no descriptor of the host goes in with it (CVE-2024-21626).
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        keep = {*stdio, error_w}
        if terminal is not None:
            keep.add(terminal.fileno())
        _close_all_but(keep)
        stage = "join cgroup"
        for procs in plan.cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        stage = "enter namespaces"
        fds = [
            (os.open(f"/proc/{plan.pid}/ns/{name}", os.O_RDONLY), kind) for name, kind in NAMESPACES
        ]
        for fd, kind in fds:
            libc.setns(fd, kind)
            os.close(fd)
        if terminal is not None:
            stage = "terminal"
            # A pty of the container's own devpts (we are in its mount namespace now), so
            # `tty` names it inside; its master goes back to the caller.
            master, slave = os.openpty()
            socket.send_fds(terminal, [b"m"], [master])
            os.close(master)
            terminal.close()
            stdio = (slave, slave, slave)
        for target, source in zip((0, 1, 2), stdio, strict=True):
            if source != target:
                os.dup2(source, target)
        pid = os.fork()
        if pid:
            os.close(error_w)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)
        if terminal is not None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        stage = "working directory"
        os.chdir(plan.cwd)
        stage = "security"
        init.drop_privileges(plan.user, plan.last_cap, seccomp)
        stage = "exec"
        os.closerange(3, error_w)
        os.closerange(error_w + 1, 65536)
        os.execvpe(plan.argv[0], list(plan.argv), dict(e.split("=", 1) for e in plan.env))
    except BaseException as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"exec {plan.argv[0]}: {text}" if stage == "exec" else f"{stage}: {text}"
        with contextlib.suppress(OSError):
            os.write(error_w, message.encode()[:4000])
        os._exit(127 if stage == "exec" and isinstance(exc, FileNotFoundError) else 126)
    os._exit(126)


def _close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):  # the listing's own descriptor, gone now
                os.close(fd)


def start(
    plan: ExecPlan, stdio: Sequence[int], seccomp: libc.SockFprog | None, tty: bool = False
) -> tuple[int, int | None]:
    """Start the process; return the pid to wait for (its exit status is the command's) and,
    with `tty`, the master side of the terminal it was given (`stdio` is then unused)."""
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = socket.socketpair() if tty else (None, None)
    pid = os.fork()
    if pid == 0:
        try:  # _child execs or exits; the child never returns into the caller's code
            os.close(error_r)
            if ours is not None:
                ours.close()
            _child(plan, (stdio[0], stdio[1], stdio[2]), error_w, seccomp, theirs)
        finally:
            os._exit(126)
    os.close(error_w)
    master: int | None = None
    if theirs is not None and ours is not None:
        theirs.close()
        with ours:
            if select.select([ours], [], [], 30)[0]:
                _msg, fds, _flags, _addr = socket.recv_fds(ours, 1, 1)
                master = fds[0] if fds else None
    try:
        chunks = []
        while select.select([error_r], [], [], 30)[0]:
            data = os.read(error_r, 4096)
            if not data:
                break
            chunks.append(data)
        else:
            raise ContainerError("exec timed out while entering the container")
    finally:
        os.close(error_r)
    if chunks:
        os.waitpid(pid, 0)
        if master is not None:
            os.close(master)
        raise ContainerError(b"".join(chunks).decode(errors="replace"))
    if tty and master is None:
        os.waitpid(pid, 0)
        raise ContainerError("exec: the container gave no terminal back")
    return pid, master


def wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code
