from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarmctl.cli import main
from tests.unit.swarmctl.fake_control import FakeControl, serve


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Harness:
    fake: FakeControl
    socket: str
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> Result:
        with pytest.raises(SystemExit) as exited:
            main(["-s", self.socket, *argv])
        captured = self.capsys.readouterr()
        code = exited.value.code
        return Result(code if isinstance(code, int) else 1, captured.out, captured.err)


@pytest.fixture
def swarmctl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Harness]:
    with serve(tmp_path) as (fake, socket):
        yield Harness(fake, socket, capsys)
