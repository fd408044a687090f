"""The log subscriptions the broker sends this node, followed while the session lasts.

`serve(channel)` runs beside the session's other loops on the same channel (the leader's):
it listens to ListenSubscriptions, starts a SubscriptionPublisher for each subscription and
cancels it when the broker closes it. When the stream drops, every publisher of it stops
(the broker sees their subscriptions as cut short) and the stream is opened again after a
back-off; a failing log stream never ends the session itself.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from agent.backoff import Backoff
from agent.container_logs import LogEngine
from agent.log_publisher import DEFAULT_SCAN_INTERVAL, SubscriptionPublisher
from shoal.v1 import logs_pb2, logs_pb2_grpc

log = logging.getLogger(__name__)

MAX_READERS = 256  # threads reading container logs at once (a follow holds one per container)


class LogSubscriptions:
    def __init__(
        self,
        node_id: str,
        engine: LogEngine,
        backoff: Backoff | None = None,
        scan_interval: float = DEFAULT_SCAN_INTERVAL,
    ) -> None:
        self._node_id = node_id
        self._engine = engine
        self._backoff = backoff or Backoff(base=0.5, cap=5.0)
        self._scan_interval = scan_interval
        self._threads = ThreadPoolExecutor(MAX_READERS, thread_name_prefix="agent-logs")

    def close(self) -> None:
        """Let go of the reader threads (each stops on its own once its publisher has)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def serve(self, channel: grpc.aio.Channel) -> None:
        """Follow subscriptions over `channel` until cancelled; never fails."""
        stub = logs_pb2_grpc.LogBrokerStub(channel)
        while True:
            try:
                await self._listen(stub)
                log.info("the log subscription stream ended; listening again")
            except grpc.aio.AioRpcError as exc:
                # A manager without a log broker (UNIMPLEMENTED) is no fault of this node's.
                level = (
                    logging.INFO if exc.code() is grpc.StatusCode.UNIMPLEMENTED else logging.WARNING
                )
                log.log(
                    level,
                    "log subscriptions: %s: %s",
                    exc.code().name,
                    exc.details() or "no details",
                )
            except Exception:
                log.exception("log subscriptions failed")
            await asyncio.sleep(self._backoff.next())

    async def _listen(self, stub: Any) -> None:
        call = stub.ListenSubscriptions(logs_pb2.ListenSubscriptionsRequest())
        publishers: dict[str, asyncio.Task[None]] = {}
        try:
            await call.initial_metadata()  # the broker took the stream
            self._backoff.reset()
            while (message := await call.read()) is not grpc.aio.EOF:
                if message.close:
                    publisher = publishers.pop(message.id, None)
                    if publisher is not None:
                        publisher.cancel()
                elif message.id not in publishers:
                    publishers[message.id] = self._start(stub, message, publishers)
        finally:
            call.cancel()
            for publisher in publishers.values():
                publisher.cancel()
            await asyncio.gather(*publishers.values(), return_exceptions=True)

    def _start(
        self,
        stub: Any,
        subscription: logs_pb2.SubscriptionMessage,
        publishers: dict[str, asyncio.Task[None]],
    ) -> asyncio.Task[None]:
        publisher = SubscriptionPublisher(
            subscription, self._node_id, self._engine, self._threads, self._scan_interval
        )
        task = asyncio.create_task(self._publish(stub, publisher))

        def forget(done: asyncio.Task[None]) -> None:
            if publishers.get(subscription.id) is done:
                del publishers[subscription.id]

        task.add_done_callback(forget)
        return task

    @staticmethod
    async def _publish(stub: Any, publisher: SubscriptionPublisher) -> None:
        subscription_id = publisher.subscription.id
        try:
            await publisher.run(stub)
        except grpc.aio.AioRpcError as exc:
            log.info(
                "log subscription %s: the broker ended it: %s: %s",
                subscription_id,
                exc.code().name,
                exc.details(),
            )
        except Exception:
            log.exception("log subscription %s: publishing failed", subscription_id)
