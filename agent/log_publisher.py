"""One log subscription on this node: read the selected containers' logs (each in a thread)
and publish the lines to the broker over one PublishLogs stream.

Without follow, the containers selected at the start are read to the end, then `close`
tells the broker this node is done. With follow, readers keep going, containers of tasks
that start later are picked up (every `scan_interval` seconds, their whole log), and it
all goes on until the task running `run()` is cancelled (the broker closed the
subscription, or the stream carrying it dropped).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from concurrent.futures import Executor
from typing import Any

from agent.container_logs import (
    LogEngine,
    ReadOptions,
    TaskContainer,
    read_container,
    selected_containers,
)
from shoal.v1 import logs_pb2

log = logging.getLogger(__name__)

QUEUE_BATCHES = 16  # batches between the reader threads and the stream
HANDOFF_POLL = 0.1  # seconds a blocked reader waits before looking at `stop` again
DEFAULT_SCAN_INTERVAL = 1.0
_DONE = None


class SubscriptionPublisher:
    def __init__(
        self,
        subscription: logs_pb2.SubscriptionMessage,
        node_id: str,
        engine: LogEngine,
        threads: Executor,
        scan_interval: float = DEFAULT_SCAN_INTERVAL,
    ) -> None:
        self.subscription = subscription
        self._node_id = node_id
        self._engine = engine
        self._threads = threads
        self._scan_interval = scan_interval
        self._options = ReadOptions.of(subscription.options)
        self._queue: asyncio.Queue[list[logs_pb2.LogMessage] | None] = asyncio.Queue(QUEUE_BATCHES)
        self._stop = threading.Event()

    async def run(self, stub: Any) -> None:
        """Publish through `stub` (a LogBrokerStub) until done or cancelled."""
        call = stub.PublishLogs()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._send(call))
                group.create_task(self._read())
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None
        finally:
            self._stop.set()
            call.cancel()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        seen: set[str] = set()
        readers: list[asyncio.Future[None]] = []
        options = self._options
        while True:
            for container in await self._containers():
                if container.started and container.container_id not in seen:
                    seen.add(container.container_id)
                    readers.append(self._start_reader(loop, container, options))
            if not options.follow:
                break
            options = self._options.whole()  # containers found later: their whole log
            await asyncio.sleep(self._scan_interval)
        for outcome in await asyncio.gather(*readers, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning(
                    "log subscription %s: reading failed: %s", self.subscription.id, outcome
                )
        await self._queue.put(_DONE)

    async def _containers(self) -> list[TaskContainer]:
        infos = await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(self._engine.list, True)
        )
        return selected_containers(infos, self.subscription.selector, self._node_id)

    def _start_reader(
        self, loop: asyncio.AbstractEventLoop, container: TaskContainer, options: ReadOptions
    ) -> asyncio.Future[None]:
        return loop.run_in_executor(
            self._threads,
            read_container,
            self._engine,
            container,
            self._node_id,
            options,
            self._stop,
            functools.partial(self._hand_over, loop),
        )

    def _hand_over(self, loop: asyncio.AbstractEventLoop, batch: list[logs_pb2.LogMessage]) -> bool:
        """From a reader thread: queue `batch`, waiting while the queue is full; False
        once the subscription is stopping."""
        try:
            queued = asyncio.run_coroutine_threadsafe(self._queue.put(batch), loop)
        except RuntimeError:  # the loop is closed: the agent is stopping
            return False
        while not self._stop.is_set():
            try:
                queued.result(HANDOFF_POLL)
                return True
            except TimeoutError:
                continue
        queued.cancel()
        return False

    async def _send(self, call: Any) -> None:
        subscription_id = self.subscription.id
        try:
            while (batch := await self._queue.get()) is not _DONE:
                await call.write(
                    logs_pb2.PublishLogsMessage(subscription_id=subscription_id, messages=batch)
                )
            await call.write(
                logs_pb2.PublishLogsMessage(subscription_id=subscription_id, close=True)
            )
            await call.done_writing()
        except asyncio.InvalidStateError:
            pass  # the broker ended the call: its status says why
        await call  # raises the broker's error, if any
