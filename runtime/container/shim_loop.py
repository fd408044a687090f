"""The container shim's loop: copy the container's output to its log, record its exit.

Once the container is up, the shim re-execs itself as a bare interpreter that imports this
file (`python -I -S -c "import shim_loop; ..." key=value...`): a forked copy of the engine
costs megabytes per container, a bare interpreter under 3 MiB PSS. That is why this module
imports only C modules (no json, typing, socket or signal wrappers: each pulls in
pure-Python modules and their memory). A container that ends quickly is handled before any
re-exec.

Log lines are JSON: {"log": text, "stream": "stdout"|"stderr", "time": RFC 3339 with ns}.
"""

import _socket
import fcntl
import os
import select
import sys
import termios
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_LINE = 16 * 1024  # longer lines are split, as Docker's json-file driver does
DRAIN_SECONDS = 2.0
_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)} | {
    ord("\\"): "\\\\",
    ord('"'): '\\"',
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def json_string(text: str) -> str:
    """`text` as a JSON string literal (what json.dumps gives, non-ASCII kept as is)."""
    return '"' + text.translate(_ESCAPES) + '"'


def timestamp(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


# Imported, not run as a script: an imported module loads from its cached bytecode, a script
# is compiled anew and the compiler's garbage stays in the small process for good.
_REEXEC = (
    f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
    "import shim_loop; shim_loop.serve(shim_loop.decode_args(sys.argv[1:]))"
)


def encode_args(args: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in args.items()]


def decode_args(argv: "Sequence[str]") -> dict[str, str]:
    return dict(item.split("=", 1) for item in argv)


class LogWriter:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def _records(self, stream: str, chunks: list[bytes]) -> None:
        now = timestamp(time.time_ns())
        suffix = f', "stream": "{stream}", "time": "{now}"}}\n'
        out = "".join(
            '{"log": ' + json_string(c.decode("utf-8", "replace")) + suffix for c in chunks
        )
        if out:
            os.write(self.fd, out.encode())

    def write(self, stream: str, data: bytes) -> None:
        *lines, rest = (self.partial[stream] + data).split(b"\n")
        records = [line + b"\n" for line in lines]
        while len(rest) > MAX_LINE:  # an endless line is logged in pieces without newlines
            records.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.partial[stream] = rest
        self._records(stream, records)

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._records(stream, [rest])
        self.partial = {"stdout": b"", "stderr": b""}


class Terminal:
    """Clients attached to a tty container over a unix socket: they get its output and send
    input frames: b"d" + length (4 bytes) + data, or b"r" + rows + cols (2 bytes each)."""

    def __init__(self, master: int, listener: int, clients: list[int]) -> None:
        self.master = master
        self.listener = listener
        self._listening = _socket.socket(fileno=listener)
        self.clients = {fd: b"" for fd in clients}

    def accept(self) -> int:
        # The C socket's accept: the socket module's wrapper would import enum and friends.
        fd: int = self._listening._accept()[0]  # type: ignore[attr-defined]
        os.set_blocking(fd, True)
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
        while len(buf) >= 5:
            kind = buf[:1]
            if kind == b"d":
                size = int.from_bytes(buf[1:5], "big")
                if len(buf) < 5 + size:
                    break
                os.write(self.master, buf[5 : 5 + size])
                buf = buf[5 + size :]
            elif kind == b"r":
                rows, cols = int.from_bytes(buf[1:3], "big"), int.from_bytes(buf[3:5], "big")
                winsize = rows.to_bytes(2, sys.byteorder) + cols.to_bytes(2, sys.byteorder)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, winsize + bytes(4))
                buf = buf[5:]
            else:  # a client that does not speak the protocol
                self.drop(fd)
                return False
        self.clients[fd] = buf
        return True

    def drop(self, fd: int) -> None:
        self.clients.pop(fd, None)
        try:  # noqa: SIM105 - contextlib is one of the modules this file must not import
            os.close(fd)
        except OSError:
            pass


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


def _reap_orphans() -> None:
    """As a child subreaper the shim inherits the container's orphans: collect them."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _attended(path: str) -> bool:
    """True while the process named in `path` ("pid starttime") still runs: it cleans up."""
    try:
        with open(path) as f:
            pid, start = f.read().split()
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19] == start
    except (OSError, ValueError, IndexError):
        return False


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


def serve(args: dict[str, str]) -> None:
    """Pump output until the container exits, then record how it ended.

    args: pid, streams ("fd:name,..."), log_path, exit_path, oom_source, oom_before,
    reexec_after (seconds, 0 = never), python, attach_fd ("" = none), clients ("fd,..."),
    exit_command (argv joined by \\x1f, "" = none)."""
    pid = int(args["pid"])
    pairs = (s.split(":") for s in args["streams"].split(",") if s)  # "" once both closed
    streams = {int(fd): name for fd, name in pairs}
    log = LogWriter(args["log_path"])
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    terminal = None
    if args.get("attach_fd") and streams:  # a terminal whose master is still open
        clients = [int(c) for c in args.get("clients", "").split(",") if c]
        terminal = Terminal(next(iter(streams)), int(args["attach_fd"]), clients)
        for fd in (terminal.listener, *terminal.clients):
            poller.register(fd, select.POLLIN)

    def pump(fd: int) -> None:
        """Copy what stream `fd` has to the log (and attached clients); drop it at EOF."""
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

    reexec_after = float(args.get("reexec_after") or 0)
    reexec_at = time.monotonic() + reexec_after if reexec_after else None
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
            pump(fd)
        if status is None and reexec_at is not None and time.monotonic() >= reexec_at:
            log.flush()
            os.close(log.fd)
            os.close(pidfd)
            keep = list(streams) + ([terminal.listener, *terminal.clients] if terminal else [])
            for fd in keep:
                os.set_inheritable(fd, True)
            args = {
                **args,
                "streams": ",".join(f"{fd}:{name}" for fd, name in streams.items()),
                "reexec_after": "0",
                "clients": ",".join(str(c) for c in terminal.clients) if terminal else "",
            }
            python = args["python"]
            os.execv(python, [python, "-I", "-S", "-c", _REEXEC, *encode_args(args)])
    finished = time.time_ns()
    deadline = time.monotonic() + DRAIN_SECONDS
    while streams and time.monotonic() < deadline:
        for fd, _event in poller.poll(100):
            if fd not in streams:  # the listener or a client: nothing more for them
                poller.unregister(fd)
                continue
            pump(fd)
    log.flush()
    _reap_orphans()
    code = os.waitstatus_to_exitcode(status)
    oom = bool(args.get("oom_source")) and _oom_kills(args["oom_source"]) > int(args["oom_before"])
    record = (
        f'{{"exit_code": {code if code >= 0 else 128 - code}, "signal": {max(0, -code)}, '
        f'"oom_killed": {"true" if oom else "false"}, "finished_at": "{timestamp(finished)}"}}'
    )
    tmp = args["exit_path"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(record)
    os.replace(tmp, args["exit_path"])
    if terminal is not None:  # attached clients see EOF only once the exit is on record
        for fd in list(terminal.clients):
            terminal.drop(fd)
    if args.get("exit_command") and not _attended(args.get("attended_path", "")):
        _spawn_detached(args["exit_command"].split("\x1f"))


if __name__ == "__main__":
    serve(decode_args(sys.argv[1:]))
