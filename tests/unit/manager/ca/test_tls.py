from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from manager.ca.tls import split_address, write_private_file


def test_write_private_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    old = os.umask(0)
    try:
        write_private_file(path, b"secret")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_private_file_replaces_and_tightens(tmp_path: Path) -> None:
    path = tmp_path / "node.crt"
    path.write_bytes(b"old")
    path.chmod(0o644)
    (tmp_path / ".node.crt.tmp").write_bytes(b"leftover of a crash")
    (tmp_path / ".node.crt.tmp").chmod(0o666)

    write_private_file(path, b"new")

    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.crt"]


def test_write_private_file_never_writes_through_a_symlinked_temporary(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    (tmp_path / ".node.key.tmp").symlink_to(target)

    write_private_file(tmp_path / "node.key", b"secret")

    assert target.read_bytes() == b"untouched"
    assert (tmp_path / "node.key").read_bytes() == b"secret"
    assert not (tmp_path / "node.key").is_symlink()


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:2377", ("127.0.0.1", 2377)), ("[::1]:4242", ("::1", 4242))],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["nohost", ":80", "host:", "host:port", "host:70000"])
def test_split_address_errors(address: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        split_address(address)
