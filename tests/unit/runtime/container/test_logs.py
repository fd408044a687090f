"""Reading logs: tail, since and follow."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from runtime.container import logs


def _write(path: Path, *records: tuple[str, str, str]) -> None:
    with open(path, "a") as f:
        for time, stream, data in records:
            f.write(json.dumps({"log": data, "stream": stream, "time": time}) + "\n")


T1, T2, T3 = (f"2026-01-01T00:00:0{i}.000000000Z" for i in (1, 2, 3))


def test_tail_and_since(tmp_path: Path) -> None:
    path = tmp_path / "log"
    _write(path, (T1, "stdout", "a\n"), (T2, "stderr", "b\n"), (T3, "stdout", "c\n"))
    assert [r.data for r in logs.read(path)] == ["a\n", "b\n", "c\n"]
    assert [r.data for r in logs.read(path, tail=2)] == ["b\n", "c\n"]
    assert [r.data for r in logs.read(path, tail=0)] == []
    assert [r.data for r in logs.read(path, since=T2)] == ["b\n", "c\n"]
    assert list(logs.read(tmp_path / "missing")) == []


def test_follow_until_the_container_ends(tmp_path: Path) -> None:
    path = tmp_path / "log"
    _write(path, (T1, "stdout", "first\n"))
    polls = iter(range(1000))
    ended = threading.Event()

    def still_running(_timeout: float) -> bool:
        n = next(polls)
        if n == 2:
            _write(path, (T2, "stdout", "second\n"))
        if n == 4:
            _write(path, (T3, "stdout", "last\n"))
            ended.set()
        return not ended.is_set()

    got = [r.data for r in logs.read(path, follow=True, still_running=still_running)]
    assert got == ["first\n", "second\n", "last\n"]
