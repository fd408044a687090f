"""The thread that drives a RaftNode: pysyncobj's own tick thread logs an exception and
carries on (bakwc/PySyncObj#121), this one stops the node and reports why."""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from manager.raft.errors import RaftFailed
from manager.raft.node import RaftNode

log = logging.getLogger(__name__)


class TickThread:
    def __init__(
        self,
        node: RaftNode,
        period: float,
        slow_tick: float,
        on_stopped: Callable[[BaseException | None], None],
    ) -> None:
        self._node = node
        self._period = period
        self._slow_tick = slow_tick
        self._on_stopped = on_stopped
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._calls = queue.SimpleQueue()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="raft-tick", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run `fn` in the tick thread (where pysyncobj's state may be read and changed)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if not self._thread.is_alive():
            future.set_exception(RaftFailed("the raft node is not running"))
            return future
        self._calls.put((fn, future))
        self._node.wake()
        return future

    def stop(self) -> None:
        """Stop ticking, close the node; returns once the thread has ended."""
        self._stopping = True
        self._node.wake()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            busy = False
            while not self._stopping:
                wait = 0.0 if busy else self._period
                start = time.monotonic()
                busy = self._node.tick(wait)
                self._run_calls()
                spent = time.monotonic() - start - wait
                if spent > self._slow_tick:
                    log.warning(
                        "raft tick took %.3f s (followers time out after %.1f s)",
                        spent,
                        self._slow_tick * 2,
                    )
        except BaseException as failure:  # every failure stops the node, loudly
            error = failure
            log.critical("raft tick thread failed; this manager stops: %r", failure)
        finally:
            try:
                self._node.close()
            except Exception:
                log.exception("closing the raft node failed")
            self._fail_calls(error)
            self._on_stopped(error)

    def _run_calls(self) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as failure:
                future.set_exception(failure)

    def _fail_calls(self, error: BaseException | None) -> None:
        while True:
            try:
                _, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(RaftFailed("the raft node stopped", error))
