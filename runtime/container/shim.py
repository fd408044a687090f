"""Starting a container through its shim.

The engine forks the shim (no new interpreter: this is the start path), the shim becomes a
session leader and child subreaper, unshares the pid namespace and forks the container's
init, then serves the container's output and exit status (shim_loop) on its own, so the
container outlives whoever started it. Pipes carry the handshake:

    init --ready--> engine   namespaces exist: wire the network namespace now
    engine --go--> init      network ready: finish and exec
    init --error--> engine   EOF alone (CLOEXEC on exec) means the process runs
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.container import init, shim_loop
from runtime.container import syscalls as sc
from runtime.errors import ContainerError

HANDSHAKE_TIMEOUT = 30.0


@dataclass(frozen=True)
class ShimSettings:
    log_path: str
    exit_path: str
    oom_source: str
    oom_before: int
    reexec_after: float  # seconds; 0 = never leave the forked copy of the engine
    exit_command: tuple[str, ...]  # run (detached) after the exit is recorded


@dataclass(frozen=True)
class Launched:
    pid: int  # the container's init, as seen from the engine's pid namespace
    shim_pid: int


def _read_until_eof(fd: int, deadline: float, what: str) -> bytes:
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ContainerError(f"container start timed out waiting for {what}")
        data = os.read(fd, 4096)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _run_shim(
    plan: init.InitPlan,
    fds: init.InitFds,
    streams: dict[int, str],
    pid_w: int,
    seccomp: sc.SockFprog | None,
    settings: ShimSettings,
    engine_ends: tuple[int, ...],
) -> None:
    """The shim's life, in the forked child. Never returns to the engine's code."""
    gc.disable()  # a collection would touch (and so copy) every page shared with the engine
    os.setsid()
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    _close(*engine_ends)
    sc.unshare(sc.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        _close(pid_w, *streams)
        init.run(plan, fds, seccomp)
    _close(fds.stdin, fds.stdout, fds.stderr, fds.ready_w, fds.go_r, fds.error_w)
    os.write(pid_w, str(pid).encode())
    os.close(pid_w)
    args: dict[str, Any] = {
        "pid": pid,
        "streams": {str(fd): name for fd, name in streams.items()},
        "log_path": settings.log_path,
        "exit_path": settings.exit_path,
        "oom_source": settings.oom_source,
        "oom_before": settings.oom_before,
        "reexec_after": settings.reexec_after,
        "exit_command": list(settings.exit_command),
        "python": sys.executable,
    }
    shim_loop.serve(args)


def launch(
    plan: init.InitPlan,
    seccomp: sc.SockFprog | None,
    settings: ShimSettings,
    wire_network: Callable[[int], None],
) -> Launched:
    """Start the container; return once its process runs (or raise why it could not)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    pid_r, pid_w = os.pipe()
    stdin = os.open("/dev/null", os.O_RDONLY)
    if plan.tty:
        master, slave = os.openpty()
        streams = {master: "stdout"}
        child_fds = init.InitFds(slave, slave, slave, ready_w, go_r, error_w)
        child_stdio: tuple[int, ...] = (stdin, slave)
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        streams = {out_r: "stdout", err_r: "stderr"}
        child_fds = init.InitFds(stdin, out_w, err_w, ready_w, go_r, error_w)
        child_stdio = (stdin, out_w, err_w)
    engine_ends = (ready_r, go_w, error_r, pid_r)
    shim_pid = os.fork()
    if shim_pid == 0:
        try:
            _run_shim(plan, child_fds, streams, pid_w, seccomp, settings, engine_ends)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _close(ready_w, go_r, error_w, pid_w, *child_stdio, *streams)
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    try:
        raw_pid = _read_until_eof(pid_r, deadline, "the shim")
        if not raw_pid:
            raise ContainerError("the container shim failed before starting the container")
        pid = int(raw_pid)
        readable = select.select([ready_r], [], [], HANDSHAKE_TIMEOUT)[0]
        ready = os.read(ready_r, 1) if readable else b""
        if ready != b"1":
            error = _read_until_eof(error_r, deadline, "the container's error report")
            raise ContainerError(error.decode(errors="replace") or "the container failed to start")
        wire_network(pid)
        os.write(go_w, b"1")
        _close(go_w)
        error = _read_until_eof(error_r, deadline, "the container to start")
        if error:
            raise ContainerError(error.decode(errors="replace"))
        return Launched(pid=pid, shim_pid=shim_pid)
    finally:
        _close(ready_r, go_w, error_r, pid_r)
