"""Terminals for `shoal run -it` and `shoal exec -it`: raw mode here, a pty there.

`run -it` talks to the container's shim over its attach socket (input and resize frames in,
output out); `exec -it` owns the pty of the process it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import tty
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

from runtime.container import exec as container_exec
from runtime.container.engine import Engine


def _window() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdin.fileno())
    except OSError:
        return 24, 80
    return size.lines, size.columns


@contextlib.contextmanager
def _raw_terminal(on_resize: Callable[[], None]) -> Iterator[None]:
    """Our terminal in raw mode (keys go to the container as typed), restored after."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    previous = signal.getsignal(signal.SIGWINCH)

    def resized(_signum: int, _frame: FrameType | None) -> None:
        on_resize()

    signal.signal(signal.SIGWINCH, resized)
    if saved is not None:
        tty.setraw(fd)
    try:
        yield
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def _resize_frame() -> bytes:
    rows, cols = _window()
    return b"r" + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")


def _relay(
    remote: int,
    read_remote: Callable[[], bytes],
    send: Callable[[bytes], object],
    reading_stdin: bool,
) -> None:
    """Copy `remote`'s output to our stdout and our stdin to `send` until `remote` ends."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        watched = [remote, stdin] if reading_stdin else [remote]
        try:
            ready = select.select(watched, [], [])[0]
        except InterruptedError:
            continue
        if remote in ready:
            data = read_remote()
            if not data:
                return
            os.write(stdout, data)
        if stdin in ready:
            data = os.read(stdin, 65536)
            if not data:
                reading_stdin = False
                continue
            send(data)


def attach(engine: Engine, container_id: str, conn: socket.socket) -> int:
    """Relay our terminal to the container's until it ends; return its exit code."""
    conn.sendall(_resize_frame())
    with conn, _raw_terminal(lambda: conn.sendall(_resize_frame())):
        _relay(
            conn.fileno(),
            read_remote=lambda: conn.recv(65536),
            send=lambda data: conn.sendall(b"d" + len(data).to_bytes(4, "big") + data),
            reading_stdin=True,
        )
    return int(engine.wait(container_id)["exit_code"])


def exec_with_tty(
    engine: Engine,
    container: str,
    command: Sequence[str],
    env: Sequence[str],
    user: str | None,
    workdir: str | None,
    interactive: bool,
) -> int:
    """`exec -t`: the new process gets a pty (of the container's own devpts) whose other end
    we relay to our terminal."""
    pid, master = engine.exec(
        container, command, (0, 1, 2), (*env, "TERM=xterm"), user, workdir, tty=True
    )
    assert master is not None  # exec(tty=True) returns the terminal or raises

    def resize() -> None:
        rows, cols = _window()
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    resize()

    def read_master() -> bytes:
        try:
            return os.read(master, 65536)
        except OSError:  # EIO: the process and its children closed the terminal
            return b""

    with _raw_terminal(resize):
        _relay(master, read_master, lambda data: os.write(master, data), interactive)
    os.close(master)
    return container_exec.wait(pid)
