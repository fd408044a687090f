"""The Agent put together, with a real (idle) engine root in a temporary directory and a
fake dispatcher: it registers, reconciles an empty node, and stops cleanly; bad settings
are refused with a clear error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from agent import GRPC_FORK_SUPPORT
from agent.agent import Agent, AgentConfig
from agent.errors import ConfigError
from tests.polling import until_async
from tests.unit.agent.fake_dispatcher import FakeDispatcher, serve


@pytest.fixture(autouse=True)
def fork_support_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GRPC_FORK_SUPPORT, "false")


def config(tmp_path: Path, **changes: object) -> AgentConfig:
    settings: dict[str, object] = {
        "node_id": "node-1",
        "managers": ("127.0.0.1:1",),
        "channel_factory": grpc.aio.insecure_channel,
        "engine_root": tmp_path / "engine",
        "hostname": "node-a",
        "labels": {"zone": "east"},
        **changes,
    }
    return AgentConfig(**settings)  # type: ignore[arg-type]


async def test_runs_a_session_and_stops_cleanly(tmp_path: Path) -> None:
    dispatcher = FakeDispatcher(heartbeat_period=0.1)
    server = await serve(dispatcher)
    agent = Agent(config(tmp_path, managers=(dispatcher.address,)))
    try:
        running = asyncio.create_task(agent.run())
        await until_async(lambda: dispatcher.recorded.assignment_streams == 1, "assignments")
        await until_async(lambda: len(dispatcher.recorded.heartbeats) >= 2, "heartbeats")
        (request,) = dispatcher.recorded.sessions
        assert request.description.hostname == "node-a"
        assert dict(request.description.engine.labels) == {"zone": "east"}
        await agent.stop()
        assert running.done()
        await until_async(lambda: dispatcher.open_sessions == 0, "the session closed")
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"node_id": ""}, "the agent needs the node's id"),
        ({"managers": ()}, "at least one manager address"),
        ({"managers": ("manager-without-port",)}, "invalid manager address"),
        ({"labels": {"": "x"}}, "invalid engine label key"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Agent(config(tmp_path, **changes))


def test_grpc_fork_support_must_be_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GRPC_FORK_SUPPORT, "true")
    with pytest.raises(ConfigError, match="gRPC's fork support is on"):
        Agent(config(tmp_path))
