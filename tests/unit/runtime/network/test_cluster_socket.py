"""The engine's way to the node's swarmd: one JSON line asked, one answered, on a unix socket
only root may use; refusals and every way of not being answered come back as NetworkError."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.config import EngineConfig
from runtime.network import cluster_socket
from runtime.network.errors import NetworkError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Recorder:
    """A handler that echoes what it was asked, or raises what it is told to."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.raises: Exception | None = None

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        if self.raises is not None:
            raise self.raises
        return {"asked": request}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "root" / cluster_socket.SOCKET_NAME  # the directory is made by serve


@pytest.fixture
async def handler(path: Path) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    server = await cluster_socket.serve(path, recorder)
    yield recorder
    server.close()
    await server.wait_closed()


async def call(path: Path, op: str, **fields: Any) -> dict[str, Any]:
    """`cluster_socket.call` (blocking, as the engine's threads make it) off the loop."""
    return await asyncio.to_thread(cluster_socket.call, path, op, 10.0, **fields)


async def raw(path: Path, data: bytes) -> bytes:
    """What the server answers to `data` sent as is."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def one_answer_server(path: Path, answer: bytes) -> asyncio.AbstractServer:
    """A server that answers `answer` to anything (not swarmd: for the caller's checks)."""

    async def answer_it(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(answer_it, path=str(path))


def test_the_socket_is_in_the_engines_root(tmp_path: Path) -> None:
    config = EngineConfig(root=tmp_path)
    assert cluster_socket.socket_path(config) == tmp_path / "swarmd.sock"


async def test_a_request_reaches_the_handler_and_its_answer_comes_back(
    path: Path, handler: Recorder
) -> None:
    answer = await call(path, "attach", container_id="c1", network="backend", ids=["a", "b"])
    request = {"op": "attach", "container_id": "c1", "network": "backend", "ids": ["a", "b"]}
    assert answer == {"asked": request}
    assert handler.requests == [request]


async def test_each_call_is_a_connection_of_its_own(path: Path, handler: Recorder) -> None:
    answers = await asyncio.gather(*(call(path, "serve", n=n) for n in range(5)))
    assert sorted(a["asked"]["n"] for a in answers) == list(range(5))


async def test_the_handlers_exception_is_raised_as_network_error_with_its_message(
    path: Path, handler: Recorder
) -> None:
    handler.raises = RuntimeError("network backend: not attachable")
    with pytest.raises(NetworkError, match=r"^network backend: not attachable$"):
        await call(path, "attach")
    handler.raises = KeyError()  # no message: its kind is the message
    with pytest.raises(NetworkError, match=r"^KeyError$"):
        await call(path, "attach")
    handler.raises = None
    assert await call(path, "release") == {"asked": {"op": "release"}}  # it goes on


@pytest.mark.parametrize("request_line", [b"[1, 2]\n", b'"attach"\n', b"null\n", b"42\n"])
async def test_a_request_that_is_not_an_object_is_answered_as_an_error(
    path: Path, handler: Recorder, request_line: bytes
) -> None:
    answer = json.loads(await raw(path, request_line))
    assert answer == {"error": "a request is a JSON object"}
    assert handler.requests == []


async def test_a_request_that_is_not_json_is_answered_as_an_error(
    path: Path, handler: Recorder
) -> None:
    answer = json.loads(await raw(path, b"{op: attach\n"))
    assert set(answer) == {"error"} and answer["error"]
    assert handler.requests == []


async def test_no_socket_means_no_swarmd(path: Path) -> None:
    with pytest.raises(NetworkError, match="runs no swarmd") as caught:
        await call(path, "attach")
    assert str(path) in str(caught.value)


async def test_a_socket_nobody_listens_on_cannot_be_reached(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening: a swarmd that died
    with pytest.raises(NetworkError, match="cannot reach this node's swarmd"):
        await call(path, "attach")


async def test_the_socket_is_for_root_only(path: Path, handler: Recorder) -> None:
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_serving_leaves_the_umask_as_it_was(path: Path) -> None:
    before = os.umask(0o022)
    try:
        server = await cluster_socket.serve(path, Recorder())
        server.close()
        await server.wait_closed()
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


async def test_a_socket_left_behind_is_replaced(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("left by a swarmd that died")
    recorder = Recorder()
    server = await cluster_socket.serve(path, recorder)
    try:
        assert await call(path, "release", container_id="c1") == {
            "asked": {"op": "release", "container_id": "c1"}
        }
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", r"gave no answer to 'attach'"),
        (b"not json\n", r"gave no answer to 'attach'"),
        (b"[1]\n", r"answered 'attach' with \[1\]"),
        (b'{"error": "no such network"}\n', r"^no such network$"),
    ],
)
async def test_an_answer_that_is_not_one_is_a_network_error(
    path: Path, answer: bytes, message: str
) -> None:
    path.parent.mkdir(parents=True)
    server = await one_answer_server(path, answer)
    try:
        with pytest.raises(NetworkError, match=message):
            await call(path, "attach")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_swarmd_that_does_not_answer_in_time_is_a_network_error(path: Path) -> None:
    release = asyncio.Event()

    async def stuck(request: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}

    server = await cluster_socket.serve(path, stuck)
    try:
        with pytest.raises(NetworkError, match="cannot reach this node's swarmd"):
            await asyncio.to_thread(cluster_socket.call, path, "attach", 0.2)
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_an_oversized_request_is_refused_and_the_server_goes_on(
    path: Path, handler: Recorder
) -> None:
    with pytest.raises(NetworkError):
        await call(path, "attach", padding="x" * (cluster_socket.MAX_LINE + 1))
    assert handler.requests == []
    assert await call(path, "release") == {"asked": {"op": "release"}}
