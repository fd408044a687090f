"""The shim's log format: what it writes is what Docker's json-file driver writes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runtime.container import shim_loop


@given(st.text())
def test_json_string_is_json(text: str) -> None:
    assert json.loads(shim_loop.json_string(text)) == text


def _records(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_are_split_and_partial_lines_kept(tmp_path: Path) -> None:
    log = shim_loop.LogWriter(str(tmp_path / "log"))
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"oops\n")
    log.write("stdout", b"o\nthree")
    log.flush()
    records = _records(tmp_path / "log")
    assert [(r["stream"], r["log"]) for r in records] == [
        ("stdout", "one\n"),
        ("stderr", "oops\n"),
        ("stdout", "two\n"),
        ("stdout", "three"),
    ]
    assert all(r["time"].endswith("Z") and len(r["time"]) == 30 for r in records)


def test_endless_lines_are_cut(tmp_path: Path) -> None:
    log = shim_loop.LogWriter(str(tmp_path / "log"))
    log.write("stdout", b"x" * (shim_loop.MAX_LINE * 2 + 10))
    log.flush()
    sizes = [len(r["log"]) for r in _records(tmp_path / "log")]
    assert sizes == [shim_loop.MAX_LINE, shim_loop.MAX_LINE, 10]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log = shim_loop.LogWriter(str(tmp_path / "log"))
    log.write("stdout", b"\xff\xfeok\n")
    assert _records(tmp_path / "log")[0]["log"] == "\ufffd\ufffdok\n"


def test_args_round_trip() -> None:
    args = {"pid": "12", "exit_command": "/bin/x\x1f--root\x1f/a=b", "streams": "3:stdout"}
    assert shim_loop.decode_args(shim_loop.encode_args(args)) == args


def test_args_with_every_stream_closed(tmp_path: Path) -> None:
    """A shim re-execs after both pipes closed but before the container exited: it must still
    wait for the container and record its exit."""
    args = {
        "streams": "",
        "log_path": str(tmp_path / "log"),
        "exit_path": str(tmp_path / "exit.json"),
        "oom_source": "",
        "oom_before": "0",
        "reexec_after": "0",
        "python": sys.executable,
        "attach_fd": "",
        "exit_command": "",
    }
    shim = os.fork()
    if shim == 0:  # the shim must be the container's parent to wait for it
        try:
            container = os.fork()
            if container == 0:
                os.execv("/bin/sh", ["sh", "-c", "exit 4"])
            shim_loop.serve({**args, "pid": str(container)})
        finally:
            os._exit(0)
    os.waitpid(shim, 0)
    assert json.loads((tmp_path / "exit.json").read_text())["exit_code"] == 4
