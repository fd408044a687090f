"""Control writes that check other objects are made one at a time: a reference checked
while one write is being committed cannot be removed by a concurrent write before that one
commits. A service write that reads nothing but itself commits alongside others (its name
and version are checked at commit)."""

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
        self.held = 0  # proposals waiting at the gate now

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        if not self.gate.is_set():
            self.waiting.set()
            self.held += 1
            try:
                await asyncio.wait_for(self.gate.wait(), WAIT)
            finally:
                self.held -= 1
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


async def _held(proposer: GatedProposer, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while proposer.held < count:
            await asyncio.sleep(0.001)


async def test_services_that_read_no_other_object_commit_alongside_each_other(
    gated: tuple[Control, GatedProposer, ObservedServicer],
) -> None:
    control, proposer, _ = gated
    proposer.gate.clear()
    creations = [
        asyncio.ensure_future(
            control.stub.CreateService(
                control_pb2.CreateServiceRequest(spec=service_spec(f"web-{n}"))
            )
        )
        for n in range(3)
    ]
    await _held(proposer, 3)  # all three in flight at once: none waits for another
    proposer.gate.set()
    names = {(await c).service.spec.annotations.name for c in creations}
    assert names == {"web-0", "web-1", "web-2"}


async def test_two_concurrent_creates_of_one_name_make_one_service(
    gated: tuple[Control, GatedProposer, ObservedServicer],
) -> None:
    control, proposer, _ = gated
    proposer.gate.clear()
    creations = [
        asyncio.ensure_future(
            control.stub.CreateService(control_pb2.CreateServiceRequest(spec=service_spec("web")))
        )
        for _ in range(2)
    ]
    await _held(proposer, 2)
    proposer.gate.set()
    results = await asyncio.gather(*creations, return_exceptions=True)
    refusals = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(refusals) == 1 and refusals[0].code() is grpc.StatusCode.ALREADY_EXISTS
    assert control.store.view(lambda tx: tx.count(objects_pb2.Service)) == 1


async def test_a_service_naming_a_secret_waits_for_the_write_before_it(
    gated: tuple[Control, GatedProposer, ObservedServicer],
) -> None:
    control, proposer, _ = gated
    spec = specs_pb2.SecretSpec(data=b"pw")
    spec.annotations.name = "pw"
    secret = (await control.stub.CreateSecret(control_pb2.CreateSecretRequest(spec=spec))).secret
    proposer.gate.clear()
    with_secret = []
    for n in range(2):
        service = service_spec(f"web-{n}")
        service.task.container.secrets.add(
            secret_id=secret.id, file=specs_pb2.FileTarget(name="pw")
        )
        with_secret.append(
            asyncio.ensure_future(
                control.stub.CreateService(control_pb2.CreateServiceRequest(spec=service))
            )
        )
    await _held(proposer, 1)
    for _ in range(50):  # the second one queues on the write lock, never at the gate
        await asyncio.sleep(0.001)
        assert proposer.held == 1
    proposer.gate.set()
    for creation in with_secret:
        await creation
