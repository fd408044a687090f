"""Fixtures of the orchestrator tests: a real store on a fake clock, and the simulated rest
of the cluster."""

from __future__ import annotations

import pytest

from tests.unit.manager.fake_clock import FakeClock
from tests.unit.manager.orchestrator.harness import Sim, make_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Sim:
    return Sim(make_store(clock), clock)
