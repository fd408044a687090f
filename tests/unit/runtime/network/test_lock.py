"""The network directory's lock: one holder at a time, bounded waiting, robust to removal."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runtime.network import NetworkError
from runtime.network.lock import exclusive


def test_a_second_holder_waits_then_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    order: list[str] = []

    def second() -> None:
        with exclusive(path):
            order.append("second")

    with exclusive(path):
        thread = threading.Thread(target=second)
        thread.start()
        with (
            pytest.raises(NetworkError, match="timed out waiting for the network lock"),
            exclusive(path, timeout_s=0.05),
        ):
            pass
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]


def test_the_lock_survives_its_file_and_directory_being_removed(tmp_path: Path) -> None:
    path = tmp_path / "net" / "lock"
    with exclusive(path):
        path.unlink()
        path.parent.rmdir()
    with exclusive(path):
        assert path.exists()
