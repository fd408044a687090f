from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from manager.controlapi import ControlServicer
from tests.unit.manager.controlapi.helpers import (
    Control,
    async_stub,
    control_server,
    local_store,
)
from tests.unit.manager.fake_clock import FakeClock


@pytest.fixture
async def control() -> AsyncIterator[Control]:
    clock = FakeClock()
    store = local_store(clock)
    async with (
        control_server(ControlServicer(store, clock=clock)) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield Control(store, async_stub(channel), clock)
