"""Starting a container through its shim.

The engine forks the shim (no new interpreter: this is the start path), the shim becomes a
session leader and child subreaper, unshares the pid namespace and forks the container's
init, then serves the container's output and exit status (shim_loop) on its own, so the
container outlives whoever started it. Pipes carry the handshake:

    init --ready--> engine   namespaces exist: wire the network (and attach) now
    engine --go--> init      network ready: finish and exec
    init --error--> engine   EOF alone (CLOEXEC on exec) means the process runs
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from common import libc
from runtime.container import init, shim_loop
from runtime.errors import ContainerError

if TYPE_CHECKING:
    import socket

HANDSHAKE_TIMEOUT = 30.0


class ShimSettings(NamedTuple):
    log_path: str
    exit_path: str
    oom_source: str
    oom_before: int
    reexec_after: float  # seconds; 0 = never leave the forked copy of the engine
    exit_command: tuple[str, ...]  # run (detached) after the exit is recorded
    attach_dir: str = ""  # tty containers: where the shim listens for `attach` clients
    attended_path: str = ""  # "pid starttime" of a process that will clean up itself


class Launched(NamedTuple):
    pid: int  # the container's init, as seen from the engine's pid namespace
    shim_pid: int


def attach_path(directory: str) -> str:
    """The attach socket's address, short whatever the length of `directory` (sun_path is
    limited to 108 bytes): the caller holds `directory` open as fd and names it by fd."""
    return os.path.join(directory, "attach.sock")


def _bind_short(sock: socket.socket, path: str, connect: bool) -> None:
    dirfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        short = f"/proc/self/fd/{dirfd}/{os.path.basename(path)}"
        if connect:
            sock.connect(short)
        else:
            sock.bind(short)
    finally:
        os.close(dirfd)


def attach_listener(directory: str) -> socket.socket:
    import socket  # for terminals only: its import costs a start without one milliseconds

    path = attach_path(directory)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _bind_short(sock, path, connect=False)
    os.chmod(path, 0o600)
    sock.listen(8)
    return sock


def attach_connect(directory: str) -> socket.socket:
    import socket  # for terminals only (see attach_listener)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _bind_short(sock, attach_path(directory), connect=True)
    return sock


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


def _close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):  # the listing's own descriptor, already gone
                os.close(fd)


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _run_shim(
    plan: init.InitPlan,
    fds: init.InitFds,
    streams: dict[int, str],
    pid_w: int,
    seccomp: libc.SockFprog | None,
    settings: ShimSettings,
    engine_ends: tuple[int, ...],
    attach_fd: int | None,
) -> None:
    """The shim's life, in the forked child. Never returns to the engine's code."""
    gc.disable()  # a collection would touch (and so copy) every page shared with the engine
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # kept across the shim's re-exec
    os.setsid()
    # Let go of the caller's stdio (its terminal, or the pipe a script reads until EOF);
    # what the shim itself has to say goes to shim.log beside the container's log.
    null = os.open("/dev/null", os.O_RDWR)
    shim_log = os.open(
        os.path.join(os.path.dirname(settings.log_path), "shim.log"),
        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
        0o640,
    )
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(shim_log, 2)
    _close(null, shim_log)
    # Nothing else of the engine's may live on here: a descriptor holding a lock (another
    # thread's flock, say) would keep it held for as long as the container runs.
    keep = {0, 1, 2, pid_w, *streams, *fds}
    if attach_fd is not None:
        keep.add(attach_fd)
    _close_all_but(keep)
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    libc.unshare(libc.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        _close(own_pid_ns, pid_w, *streams, *([attach_fd] if attach_fd is not None else []))
        init.run(plan, fds, seccomp)
    # Back to our own pid namespace for any later child (the exit command): forking into
    # the container's namespace fails with ENOMEM once its init has exited.
    libc.setns(own_pid_ns, libc.CLONE_NEWPID)
    os.close(own_pid_ns)
    _close(fds.stdin, fds.stdout, fds.stderr, fds.ready_w, fds.go_r, fds.error_w)
    os.write(pid_w, str(pid).encode())
    os.close(pid_w)
    args = {
        "pid": str(pid),
        "streams": ",".join(f"{fd}:{name}" for fd, name in streams.items()),
        "log_path": settings.log_path,
        "exit_path": settings.exit_path,
        "oom_source": settings.oom_source,
        "oom_before": str(settings.oom_before),
        "reexec_after": str(settings.reexec_after),
        "exit_command": "\x1f".join(settings.exit_command),
        "python": sys.executable,
        "attach_fd": "" if attach_fd is None else str(attach_fd),
        "attended_path": settings.attended_path,
    }
    shim_loop.serve(args)


def _end(pid: int) -> None:
    """SIGKILL our child `pid` and reap it (no zombie left in a long-lived engine)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def launch(
    plan: init.InitPlan,
    seccomp: libc.SockFprog | None,
    settings: ShimSettings,
    before_exec: Callable[[int], None],
    meanwhile: Callable[[], None] | None = None,
) -> Launched:
    """Start the container; return once its process runs (or raise why it could not).

    `meanwhile` runs here while the shim and the container's process set up: their first
    step, joining the container's cgroups, waits for an RCU grace period (10-30 ms on
    cgroup v1), time this process can spend getting `before_exec`'s work ready."""
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
    listener = attach_listener(settings.attach_dir) if plan.tty and settings.attach_dir else None
    engine_ends = (ready_r, go_w, error_r, pid_r)
    shim_pid = os.fork()
    if shim_pid == 0:
        # The child must never return into the caller's code, whatever fails here (even
        # reporting the failure): a second copy of the engine's process would run on.
        code = 1
        try:
            attach_fd = listener.detach() if listener is not None else None
            _run_shim(plan, child_fds, streams, pid_w, seccomp, settings, engine_ends, attach_fd)
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                import traceback  # rarely needed, and not cheap to import on every start

                traceback.print_exc()
        finally:
            os._exit(code)
    _close(ready_w, go_r, error_w, pid_w, *child_stdio, *streams)
    if listener is not None:
        listener.close()
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    go_open = True
    try:
        if meanwhile is not None:
            meanwhile()
        raw_pid = _read_until_eof(pid_r, deadline, "the shim")
        if not raw_pid:
            raise ContainerError("the container shim failed before starting the container")
        pid = int(raw_pid)
        readable = select.select([ready_r], [], [], HANDSHAKE_TIMEOUT)[0]
        ready = os.read(ready_r, 1) if readable else b""
        if ready != b"1":
            error = _read_until_eof(error_r, deadline, "the container's error report")
            raise ContainerError(error.decode(errors="replace") or "the container failed to start")
        before_exec(pid)
        os.write(go_w, b"1")
        os.close(go_w)
        go_open = False  # never close a number twice: another thread may own it by now
        error = _read_until_eof(error_r, deadline, "the container to start")
        if error:
            raise ContainerError(error.decode(errors="replace"))
        return Launched(pid=pid, shim_pid=shim_pid)
    except BaseException:
        if go_open:  # the container was never let go: end its shim here, and reap it
            _end(shim_pid)
        raise
    finally:
        _close(ready_r, error_r, pid_r, *([go_w] if go_open else []))
