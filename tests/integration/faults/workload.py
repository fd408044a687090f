"""Clients of the cluster under faults: each reads and writes registers through the Control
API of a manager picked at random, and records every operation for the linearizability
checker (tests/linearizability.py).

A register is a service (no replicas) whose label `v` holds the last value written. A write
reads the service and updates it with a value never written before; the update names the
version read, so it applies only on top of what was read. Outcomes: acknowledged; refused
before or at commit without effect (a stale version, a bad request: definitely not
applied); or unknown (unavailable, timed out: it may apply, now or later, or never).
Reads are Control's, always linearizable (a raft read point first).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from shoal.v1 import control_pb2, control_pb2_grpc, specs_pb2
from tests.linearizability import Operation

LABEL = "v"
CALL_TIMEOUT_S = 5.0
# Refusals that mean nothing was applied.
DEFINITE = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
}


@dataclass
class Workload:
    sockets: list[Path]  # each manager's Control socket (reachable from the host)
    keys: int
    clients: int
    rng: random.Random
    history: list[Operation] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)  # key -> service id
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._channels = [grpc.aio.insecure_channel(f"unix://{path}") for path in self.sockets]
        self._stubs = [control_pb2_grpc.ControlStub(c) for c in self._channels]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def create_registers(self, deadline_s: float = 60) -> None:
        """One service per key, created through whichever manager takes it."""
        end = time.monotonic() + deadline_s
        for number in range(self.keys):
            key = f"reg-{number}"
            while key not in self.services:
                spec = specs_pb2.ServiceSpec()
                spec.annotations.name = key
                spec.task.container.image = "busybox"
                spec.replicated_service.replicas = 0
                try:
                    created = await self.rng.choice(self._stubs).CreateService(
                        control_pb2.CreateServiceRequest(spec=spec), timeout=CALL_TIMEOUT_S
                    )
                    self.services[key] = created.service.id
                except grpc.aio.AioRpcError as exc:
                    if exc.code() is grpc.StatusCode.ALREADY_EXISTS:
                        self.services[key] = await self._id_of(key)
                    elif time.monotonic() > end:
                        raise
                    else:
                        await asyncio.sleep(0.1)

    async def _id_of(self, name: str) -> str:
        listed = await self._stubs[0].ListServices(
            control_pb2.ListServicesRequest(), timeout=CALL_TIMEOUT_S
        )
        found: str = next(s.id for s in listed.services if s.spec.annotations.name == name)
        return found

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._client(f"c{n}", stop) for n in range(self.clients)))

    async def _client(self, client: str, stop: asyncio.Event) -> None:
        written = 0
        while not stop.is_set():
            key = self.rng.choice(sorted(self.services))
            stub = self.rng.choice(self._stubs)
            if self.rng.random() < 0.5:
                await self._read(client, stub, key)
            else:
                written += 1
                await self._write(client, stub, key, f"{client}-{written}")

    async def _get(
        self, client: str, stub: control_pb2_grpc.ControlStub, key: str
    ) -> control_pb2.GetServiceResponse | None:
        call = time.monotonic()
        try:
            found: control_pb2.GetServiceResponse = await stub.GetService(
                control_pb2.GetServiceRequest(service_id=self.services[key]),
                timeout=CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError:
            return None  # a failed read tells nothing
        value = found.service.spec.annotations.labels.get(LABEL)
        self.history.append(Operation(client, key, "read", value, call, time.monotonic(), True))
        return found

    async def _read(self, client: str, stub: control_pb2_grpc.ControlStub, key: str) -> None:
        if await self._get(client, stub, key) is None:
            await asyncio.sleep(0.05)  # no manager answers now: do not spin

    async def _write(
        self, client: str, stub: control_pb2_grpc.ControlStub, key: str, value: str
    ) -> None:
        found = await self._get(client, stub, key)
        if found is None:
            await asyncio.sleep(0.05)
            return
        spec = found.service.spec
        spec.annotations.labels[LABEL] = value
        request = control_pb2.UpdateServiceRequest(
            service_id=found.service.id, service_version=found.service.meta.version, spec=spec
        )
        call = time.monotonic()
        try:
            await stub.UpdateService(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            definite = exc.code() in DEFINITE
            self.history.append(
                Operation(
                    client, key, "write", value, call, None, False, definitely_failed=definite
                )
            )
            return
        self.history.append(Operation(client, key, "write", value, call, time.monotonic(), True))

    async def final_values(self) -> list[dict[str, str | None]]:
        """Each manager's reading of every register (once the faults are healed). A channel
        that saw its manager down may still be backing off: each read waits for it to be
        ready rather than fail at once."""
        seen = []
        for stub in self._stubs:
            values: dict[str, str | None] = {}
            for key, service_id in sorted(self.services.items()):
                found = await stub.GetService(
                    control_pb2.GetServiceRequest(service_id=service_id),
                    timeout=30,
                    wait_for_ready=True,
                )
                values[key] = found.service.spec.annotations.labels.get(LABEL)
            seen.append(values)
        return seen
