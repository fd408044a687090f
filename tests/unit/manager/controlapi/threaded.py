"""A real Control server on 127.0.0.1 whose event loop runs in a thread of its own, for
synchronous tests (hypothesis drives its examples synchronously)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc

from manager.controlapi import ControlServicer, add_control_service
from manager.store import Store
from shoal.v1 import control_pb2_grpc
from tests.unit.manager.controlapi.helpers import local_store
from tests.unit.manager.fake_clock import FakeClock

T = TypeVar("T")
CALL_TIMEOUT = 30.0


class ThreadedControl:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store: Store = local_store(self.clock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.Channel | None = None
        try:
            port = self.run(self._start())
            self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            self.stub = control_pb2_grpc.ControlStub(self._channel)
        except BaseException:
            self.close()
            raise

    async def _start(self) -> int:
        self._server = grpc.aio.server()
        add_control_service(self._server, ControlServicer(self.store, clock=self.clock))
        port: int = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return port

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs `coroutine` on the server's loop (e.g. a store.update) and waits for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._server is not None:
            self.run(self._server.stop(None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._loop.close()
