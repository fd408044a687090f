"""Control writes are made one at a time: a reference checked while one write is being
committed cannot be removed by a concurrent write before that one commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from manager.controlapi import ControlServicer
from manager.store import LocalProposer, Store
from shoal.v1 import control_pb2, objects_pb2, specs_pb2, store_pb2
from tests.unit.manager.controlapi.helpers import (
    Control,
    async_stub,
    control_server,
    refused,
    service_spec,
)
from tests.unit.manager.fake_clock import FakeClock

WAIT = 10.0


class GatedProposer:
    """A LocalProposer whose commits wait, while `gate` is closed, like a slow raft round."""

    def __init__(self, store: Store) -> None:
        self._local = LocalProposer(store, proposer_id="gated")
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        if not self.gate.is_set():
            self.waiting.set()
            await asyncio.wait_for(self.gate.wait(), WAIT)
        return await self._local.propose(actions)


class ObservedServicer(ControlServicer):
    """Tells when a CreateService call has reached the servicer. Nothing in the handler
    waits before it takes the write lock, so once `entered` is seen the call is either
    queued on the lock or has built its transaction."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        super().__init__(store, clock=clock)
        self.entered = asyncio.Event()

    async def CreateService(
        self, request: control_pb2.CreateServiceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.CreateServiceResponse:
        self.entered.set()
        return await super().CreateService(request, context)


@pytest.fixture
async def gated() -> AsyncIterator[tuple[Control, GatedProposer, ObservedServicer]]:
    clock = FakeClock()
    store = Store(clock=clock.timestamp)
    proposer = GatedProposer(store)
    store.proposer = proposer
    servicer = ObservedServicer(store, clock)
    async with (
        control_server(servicer) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield Control(store, async_stub(channel), clock), proposer, servicer


async def test_a_reference_cannot_vanish_between_check_and_commit(
    gated: tuple[Control, GatedProposer, ObservedServicer],
) -> None:
    control, proposer, servicer = gated
    spec = specs_pb2.SecretSpec(data=b"pw")
    spec.annotations.name = "pw"
    secret = (await control.stub.CreateSecret(control_pb2.CreateSecretRequest(spec=spec))).secret
    service = service_spec("web")
    service.task.container.secrets.add(secret_id=secret.id, file=specs_pb2.FileTarget(name="pw"))

    proposer.gate.clear()
    removal = asyncio.ensure_future(
        control.stub.RemoveSecret(control_pb2.RemoveSecretRequest(secret_id=secret.id))
    )
    await asyncio.wait_for(proposer.waiting.wait(), WAIT)
    creation = asyncio.ensure_future(
        control.stub.CreateService(control_pb2.CreateServiceRequest(spec=service))
    )
    await asyncio.wait_for(servicer.entered.wait(), WAIT)
    proposer.gate.set()

    await asyncio.wait_for(removal, WAIT)
    await refused(
        asyncio.wait_for(creation, WAIT),
        grpc.StatusCode.NOT_FOUND,
        f"no secret '{secret.id}'",
    )
    assert control.store.view(lambda tx: tx.count(objects_pb2.Service)) == 0
