"""Fixtures for agent unit tests: a fake engine (real `sleep` processes) behind a real
Executor, and a recorder of the statuses controllers report."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from agent.executor import Executor
from shoal.v1 import types_pb2
from tests.unit.agent.fake_engine import FakeEngine, FakeImages


class Reports:
    """Statuses as a controller or worker reported them, in order."""

    def __init__(self) -> None:
        self.all: list[tuple[str, types_pb2.TaskStatus]] = []

    def __call__(self, task_id: str, status: types_pb2.TaskStatus) -> None:
        self.all.append((task_id, status))

    def of(self, task_id: str) -> list[types_pb2.TaskStatus]:
        return [s for t, s in self.all if t == task_id]

    def states(self, task_id: str) -> list[int]:
        return [s.state for s in self.of(task_id)]

    def last_state(self, task_id: str) -> int | None:
        states = self.states(task_id)
        return states[-1] if states else None


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.kill_all()


@pytest.fixture
def images() -> FakeImages:
    return FakeImages(local=("busybox",), registry=("registry:5000/app:1",))


@pytest.fixture
async def executor(engine: FakeEngine, images: FakeImages) -> AsyncIterator[Executor]:
    ex = Executor(engine, images)
    yield ex
    ex.close()


@pytest.fixture
def reports() -> Reports:
    return Reports()
