"""The content store keeps only verified blobs: a wrong digest, a short or long blob leaves
nothing behind; concurrent writers of one blob fetch it once."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from runtime.image.content_store import ContentStore
from runtime.image.errors import ContentError, ManifestError


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def leftovers(store: ContentStore) -> list[str]:
    return sorted(p.name for p in store.ingest_dir.glob("*.partial"))


def test_add_read_and_idempotence(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.add(b"hello")
    assert digest == sha(b"hello")
    assert store.read(digest) == b"hello"
    assert store.path(digest) == tmp_path / "blobs" / "sha256" / digest.removeprefix("sha256:")
    present = store.ingest(digest, 5, lambda _o: pytest.fail("fetched a blob that is present"))
    assert present is False
    assert store.digests() == {digest}


@pytest.mark.parametrize(
    ("chunks", "size", "message"),
    [
        ([b"hello", b" world"], 11, "digest mismatch"),  # right size, wrong bytes
        ([b"hel"], 5, "truncated, got 3 of 5 bytes"),
        ([b"hello", b"!!"], 5, "more data than the announced 5 bytes"),
    ],
)
def test_bad_content_leaves_nothing(
    tmp_path: Path, chunks: list[bytes], size: int, message: str
) -> None:
    store = ContentStore(tmp_path)
    digest = sha(b"hello")
    with pytest.raises(ContentError, match=message):
        store.ingest(digest, size, lambda _o: (0, chunks))
    assert not store.has(digest)
    assert store.digests() == set()
    assert leftovers(store) == []


def test_invalid_digest_names_no_file(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(ManifestError, match="invalid digest"):
        store.ingest("sha256:../../etc/passwd", 1, lambda _o: (0, [b"x"]))
    assert not (tmp_path / "blobs").exists()


def test_server_restarting_from_zero_is_handled(tmp_path: Path) -> None:
    """A partial download resumed against a server that ignores Range starts over."""
    store = ContentStore(tmp_path)
    data = b"0123456789"
    digest = sha(data)
    store.ingest_dir.mkdir(parents=True)
    (store.ingest_dir / f"{digest.removeprefix('sha256:')}.partial").write_bytes(b"0123")
    offsets: list[int] = []

    def fetch(offset: int) -> tuple[int, Iterable[bytes]]:
        offsets.append(offset)
        return 0, [data]  # whole blob, from the start

    assert store.ingest(digest, len(data), fetch)
    assert offsets == [4]
    assert store.read(digest) == data


def test_concurrent_writers_fetch_once(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = bytes(range(256)) * 1000
    digest = sha(data)
    fetches: list[int] = []
    entered = threading.Barrier(4, timeout=10)
    errors: list[BaseException] = []

    def fetch(offset: int) -> tuple[int, Iterable[bytes]]:
        fetches.append(offset)
        return 0, (data[i : i + 4096] for i in range(0, len(data), 4096))

    def writer() -> None:
        try:
            entered.wait()
            store.ingest(digest, len(data), fetch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert fetches == [0]
    assert store.read(digest) == data
