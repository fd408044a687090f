"""The container shim's loop: copy the container's output to its log, record its exit.

Stdlib only, so the shim can re-exec itself as a bare interpreter (`python -I -S` this file)
once the container is up: a forked copy of the engine costs megabytes per container, a bare
interpreter far less. A container that ends quickly is handled before any re-exec.

Log lines are JSON: {"log": text, "stream": "stdout"|"stderr", "time": RFC 3339 with ns}.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import termios
import time
from typing import Any

MAX_LINE = 16 * 1024  # longer lines are split, as Docker's json-file driver does
DRAIN_SECONDS = 2.0


def timestamp(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class LogWriter:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        *lines, rest = (self.partial[stream] + data).split(b"\n")
        records = [line + b"\n" for line in lines]
        while len(rest) > MAX_LINE:  # an endless line is logged in pieces without newlines
            records.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.partial[stream] = rest
        now = timestamp(time.time_ns())
        out = [
            json.dumps({"log": r.decode("utf-8", "replace"), "stream": stream, "time": now}) + "\n"
            for r in records
        ]
        if out:
            os.write(self.fd, "".join(out).encode())

    def flush(self) -> None:
        now = timestamp(time.time_ns())
        for stream, rest in self.partial.items():
            if rest:
                record = {"log": rest.decode("utf-8", "replace"), "stream": stream, "time": now}
                os.write(self.fd, (json.dumps(record) + "\n").encode())
        self.partial = {"stdout": b"", "stderr": b""}


def _oom_kills(source: str) -> int:
    try:
        with open(source) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except OSError:
        pass
    return 0


def _write_exit(path: str, record: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def _reap_orphans() -> None:
    """As a child subreaper the shim inherits the container's orphans: collect them."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Terminal:
    """Clients attached to a tty container over a unix socket: they get its output and send
    input frames: b"d" + length (4 bytes) + data, or b"r" + rows + cols (2 bytes each)."""

    def __init__(self, master: int, listener: int, clients: list[int]) -> None:
        self.master = master
        self.listener = listener
        self._listening = socket.socket(fileno=listener)
        self.clients = {fd: b"" for fd in clients}

    def accept(self) -> int:
        conn, _ = self._listening.accept()
        fd = conn.detach()
        self.clients[fd] = b""
        return fd

    def broadcast(self, data: bytes) -> None:
        for fd in list(self.clients):
            try:
                os.write(fd, data)
            except OSError:
                self.drop(fd)

    def receive(self, fd: int) -> bool:
        """Handle input from client `fd`; False once it has gone."""
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            self.drop(fd)
            return False
        buf = self.clients[fd] + data
        while buf:
            if buf[:1] == b"d" and len(buf) >= 5:
                size = int.from_bytes(buf[1:5], "big")
                if len(buf) < 5 + size:
                    break
                os.write(self.master, buf[5 : 5 + size])
                buf = buf[5 + size :]
            elif buf[:1] == b"r" and len(buf) >= 5:
                rows, cols = int.from_bytes(buf[1:3], "big"), int.from_bytes(buf[3:5], "big")
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                buf = buf[5:]
            elif buf[:1] in (b"d", b"r"):
                break
            else:  # a client that does not speak the protocol
                self.drop(fd)
                return False
        self.clients[fd] = buf
        return True

    def drop(self, fd: int) -> None:
        self.clients.pop(fd, None)
        with contextlib.suppress(OSError):
            os.close(fd)


def serve(args: dict[str, Any]) -> None:
    """Pump output until the container exits, then record how it ended."""
    pid: int = args["pid"]
    streams: dict[int, str] = {int(fd): name for fd, name in args["streams"].items()}
    log = LogWriter(args["log_path"])
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    terminal = None
    if args.get("attach_fd") is not None:
        master = next(iter(streams))
        terminal = Terminal(master, args["attach_fd"], args.get("clients", []))
        poller.register(terminal.listener, select.POLLIN)
        for fd in terminal.clients:
            poller.register(fd, select.POLLIN)
    reexec_at = time.monotonic() + args["reexec_after"] if args.get("reexec_after") else None
    status: int | None = None
    while status is None:
        timeout = None if reexec_at is None else max(0, int((reexec_at - time.monotonic()) * 1000))
        events = poller.poll(timeout)
        if terminal is not None:  # accept first: a client attached before the start sees all
            events.sort(key=lambda event: event[0] != terminal.listener)
        for fd, _event in events:
            if fd == pidfd:
                _, status = os.waitpid(pid, 0)
                poller.unregister(pidfd)
                os.close(pidfd)
                break
            if terminal is not None and fd == terminal.listener:
                poller.register(terminal.accept(), select.POLLIN)
                continue
            if terminal is not None and fd in terminal.clients:
                if not terminal.receive(fd):
                    poller.unregister(fd)
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # a pty reports EIO once the other side is gone
                data = b""
            if data:
                log.write(streams[fd], data)
                if terminal is not None:
                    terminal.broadcast(data)
            else:
                poller.unregister(fd)
                os.close(fd)
                del streams[fd]
        if status is None and reexec_at is not None and time.monotonic() >= reexec_at:
            log.flush()
            os.close(log.fd)
            os.close(pidfd)
            for fd in streams:
                os.set_inheritable(fd, True)
            args = {**args, "streams": {str(fd): n for fd, n in streams.items()}, "reexec_after": 0}
            if terminal is not None:
                for fd in (terminal.listener, *terminal.clients):
                    os.set_inheritable(fd, True)
                args["clients"] = list(terminal.clients)
            python = args["python"]
            os.execv(python, [python, "-I", "-S", os.path.abspath(__file__), json.dumps(args)])
    finished = time.time_ns()
    deadline = time.monotonic() + DRAIN_SECONDS
    while streams and time.monotonic() < deadline:
        for fd, _event in poller.poll(100):
            if fd not in streams:
                with contextlib.suppress(KeyError):
                    poller.unregister(fd)
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if fd not in streams:
                continue  # a client or the listener: nothing more to do for them
            if data:
                log.write(streams[fd], data)
                if terminal is not None:
                    terminal.broadcast(data)
            else:
                poller.unregister(fd)
                os.close(fd)
                del streams[fd]
    log.flush()
    _reap_orphans()
    code = os.waitstatus_to_exitcode(status)
    oom = _oom_kills(args["oom_source"]) > args["oom_before"] if args.get("oom_source") else False
    record = {
        "exit_code": code if code >= 0 else 128 - code,
        "signal": -code if code < 0 else 0,
        "oom_killed": oom,
        "finished_at": timestamp(finished),
    }
    _write_exit(args["exit_path"], record)
    if terminal is not None:  # attached clients see EOF only once the exit is on record
        for fd in list(terminal.clients):
            terminal.drop(fd)
    if args.get("exit_command"):
        _spawn_detached(args["exit_command"])


def _spawn_detached(argv: list[str]) -> None:
    """Run the engine's clean-up command without making anyone wait for it."""
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        os._exit(0)
    os.waitpid(middle, 0)


def main() -> None:
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    serve(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
