"""The agent's side of `service logs`: which containers a subscription picks, reading one
container's log (tail, since, streams, follow and stopping), and whole subscriptions over
gRPC against the manager's real broker (in-process, 127.0.0.1) with fake log files."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from agent.container_logs import ReadOptions, read_container, selected_containers
from agent.container_spec import SERVICE_LABEL, TASK_LABEL
from agent.log_subscriptions import LogSubscriptions
from manager.logbroker import BrokerConfig, LogBroker, add_log_broker_service
from manager.store import WriteTx
from shoal.v1 import logs_pb2, objects_pb2, types_pb2
from tests.polling import until, until_async
from tests.unit.manager.dispatcher.fakes import local_store

NODE = "n1"
STEP = 5.0


def stamp(second: int) -> str:
    return f"2024-01-02T15:04:{second:02d}.000000000Z"


@dataclass
class FakeContainer:
    info: dict[str, Any]
    ended: threading.Event


class LogFiles:
    """Containers with JSON-lines logs as the shim writes them; `watch` as the engine's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.containers: dict[str, FakeContainer] = {}
        self.watched: list[str] = []
        self.last_poll = 0.0  # monotonic time a reader last asked whether a container runs

    def add(self, cid: str, task_id: str, service_id: str = "svc", status: str = "running") -> None:
        info = {
            "Id": cid,
            "Created": f"2024-01-02T15:04:{len(self.containers):02d}Z",
            "LogPath": str(self.root / f"{cid}.log"),
            "State": {"Status": status},
            "Config": {"Labels": {TASK_LABEL: task_id, SERVICE_LABEL: service_id}},
        }
        ended = threading.Event()
        if status != "running":
            ended.set()
        self.containers[cid] = FakeContainer(info, ended)

    def write(self, cid: str, text: str, second: int, stream: str = "stdout") -> None:
        record = {"log": text + "\n", "stream": stream, "time": stamp(second)}
        with open(self.containers[cid].info["LogPath"], "a") as log:
            log.write(json.dumps(record) + "\n")

    def list(self, all: bool = False) -> list[dict[str, Any]]:
        return [c.info for c in self.containers.values()]

    def watch(self, name_or_id: str) -> Callable[[float], bool]:
        self.watched.append(name_or_id)
        ended = self.containers[name_or_id].ended

        def still_running(timeout: float) -> bool:
            self.last_poll = time.monotonic()
            return not ended.wait(timeout)

        return still_running


@pytest.fixture
def files(tmp_path: Path) -> LogFiles:
    return LogFiles(tmp_path)


def texts(batches: list[list[logs_pb2.LogMessage]]) -> list[str]:
    return [m.data.decode().strip() for batch in batches for m in batch]


def test_selection_by_service_task_or_node(files: LogFiles) -> None:
    files.add("c1", "t1", "web")
    files.add("c2", "t2", "db", status="created")
    files.add("c3", "t3", "web", status="exited")
    infos = [*files.list(), {"Id": "x", "Created": "", "Config": {"Labels": {}}}]  # no task

    def ids(selector: logs_pb2.LogSelector) -> list[tuple[str, bool]]:
        return [(c.container_id, c.started) for c in selected_containers(infos, selector, NODE)]

    assert ids(logs_pb2.LogSelector(service_ids=["web"])) == [("c1", True), ("c3", True)]
    assert ids(logs_pb2.LogSelector(task_ids=["t2"])) == [("c2", False)]
    assert ids(logs_pb2.LogSelector(node_ids=[NODE])) == [("c1", True), ("c2", False), ("c3", True)]
    assert ids(logs_pb2.LogSelector(node_ids=["other"])) == []


def collector(into: list[logs_pb2.LogMessage]) -> Callable[[list[logs_pb2.LogMessage]], bool]:
    def deliver(batch: list[logs_pb2.LogMessage]) -> bool:
        into.extend(batch)
        return True

    return deliver


def read(files: LogFiles, cid: str, options: logs_pb2.LogSubscriptionOptions) -> list[str]:
    messages: list[logs_pb2.LogMessage] = []
    found = selected_containers(files.list(), logs_pb2.LogSelector(node_ids=[NODE]), NODE)
    chosen = next(c for c in found if c.container_id == cid)
    read_container(
        files, chosen, NODE, ReadOptions.of(options), threading.Event(), collector(messages)
    )
    return texts([messages])


def test_tail_since_and_streams(files: LogFiles) -> None:
    files.add("c1", "t1", status="exited")
    for second, (text, stream) in enumerate(
        [("one", "stdout"), ("oops", "stderr"), ("two", "stdout"), ("three", "stdout")]
    ):
        files.write("c1", text, second, stream)
    options = logs_pb2.LogSubscriptionOptions
    assert read(files, "c1", options(tail=-1)) == ["one", "oops", "two", "three"]
    assert read(files, "c1", options(tail=2)) == ["two", "three"]
    assert read(files, "c1", options(tail=0)) == []
    assert read(files, "c1", options(tail=-1, streams=[logs_pb2.LOG_STREAM_STDERR])) == ["oops"]
    since = Timestamp()
    since.FromJsonString(stamp(2))
    assert read(files, "c1", options(tail=-1, since=since)) == ["two", "three"]

    messages: list[logs_pb2.LogMessage] = []
    chosen = selected_containers(files.list(), logs_pb2.LogSelector(task_ids=["t1"]), NODE)[0]
    read_container(
        files,
        chosen,
        NODE,
        ReadOptions.of(options(tail=1)),
        threading.Event(),
        collector(messages),
    )
    [last] = messages
    assert last.context == logs_pb2.LogContext(service_id="svc", node_id=NODE, task_id="t1")
    assert last.stream == logs_pb2.LOG_STREAM_STDOUT and last.data == b"three\n"
    assert last.timestamp.ToJsonString() == "2024-01-02T15:04:03Z"


def test_follow_reads_new_lines_and_stops_when_told(files: LogFiles) -> None:
    files.add("c1", "t1")
    files.write("c1", "before", 0)
    got: list[str] = []
    stop = threading.Event()

    def deliver(batch: list[logs_pb2.LogMessage]) -> bool:
        got.extend(texts([batch]))
        return True

    chosen = selected_containers(files.list(), logs_pb2.LogSelector(task_ids=["t1"]), NODE)[0]
    options = ReadOptions.of(logs_pb2.LogSubscriptionOptions(tail=-1, follow=True))
    reader = threading.Thread(
        target=read_container, args=(files, chosen, NODE, options, stop, deliver)
    )
    reader.start()
    try:
        until(lambda: got, "the first line", holds=lambda g: g == ["before"])
        files.write("c1", "after", 1)
        until(lambda: got, "the line written later", holds=lambda g: g == ["before", "after"])
    finally:
        stop.set()
        reader.join(STEP)
    assert not reader.is_alive()


@dataclass
class Cluster:
    broker: LogBroker
    files: LogFiles
    agent: LogSubscriptions

    async def add_task(self, task_id: str, service_id: str = "svc") -> None:
        task = objects_pb2.Task(id=task_id, service_id=service_id, node_id=NODE)
        task.status.state = types_pb2.RUNNING

        def write(tx: WriteTx) -> None:
            tx.create(task)

        await self.broker._store.update(write)


@pytest.fixture
async def cluster(files: LogFiles) -> AsyncIterator[Cluster]:
    """The broker served on 127.0.0.1 (every caller is node n1) and the agent listening."""
    broker = LogBroker(local_store(), BrokerConfig(silence_timeout=STEP))
    server = grpc.aio.server()
    add_log_broker_service(server, broker, lambda _context: NODE)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    run = asyncio.create_task(broker.run())
    agent = LogSubscriptions(NODE, files, scan_interval=0.05)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    serving = asyncio.create_task(agent.serve(channel))
    await until_async(
        lambda: broker._term is not None and NODE in broker._term.listeners, "listening"
    )
    try:
        yield Cluster(broker, files, agent)
    finally:
        for task in (serving, run):
            task.cancel()
        await asyncio.gather(serving, run, return_exceptions=True)
        await channel.close()
        await server.stop(None)
        agent.close()


async def test_a_subscription_reads_every_selected_container_then_closes(cluster: Cluster) -> None:
    await cluster.add_task("t1")
    cluster.files.add("c1", "t1")
    cluster.files.add("c2", "t2", status="exited")
    cluster.files.add("c3", "t3", service_id="other")
    for second in range(3):
        cluster.files.write("c1", f"c1-{second}", second)
        cluster.files.write("c2", f"c2-{second}", second)
        cluster.files.write("c3", f"c3-{second}", second)
    options = logs_pb2.LogSubscriptionOptions(tail=2)
    lines = [
        batch
        async for batch in cluster.broker.subscribe(
            logs_pb2.LogSelector(service_ids=["svc"]), options
        )
    ]
    assert sorted(texts(lines)) == ["c1-1", "c1-2", "c2-1", "c2-2"]
    assert cluster.files.watched == []  # without follow, nothing is waited for


async def test_follow_publishes_new_lines_and_new_containers_until_the_subscriber_leaves(
    cluster: Cluster,
) -> None:
    await cluster.add_task("t1")
    cluster.files.add("c1", "t1")
    cluster.files.write("c1", "old", 0)
    options = logs_pb2.LogSubscriptionOptions(tail=0, follow=True)
    lines = cluster.broker.subscribe(logs_pb2.LogSelector(service_ids=["svc"]), options)
    got: list[str] = []

    async def read() -> None:
        async for batch in lines:
            got.extend(texts([batch]))

    reading = asyncio.create_task(read())
    await until_async(lambda: cluster.files.watched == ["c1"], "c1 followed")
    cluster.files.write("c1", "new", 1)
    cluster.files.add("c2", "t2")  # a task that started later: its whole log
    cluster.files.write("c2", "first of c2", 2)
    await until_async(lambda: sorted(got) == ["first of c2", "new"], "the new lines")

    reading.cancel()  # the subscriber leaves: the agent's readers stop
    await asyncio.gather(reading, return_exceptions=True)
    term = cluster.broker._term
    assert term is not None and not term.subscriptions
    # A following reader asks whether its container still runs every 50 ms until it stops.
    await until_async(lambda: time.monotonic() - cluster.files.last_poll > 0.5, "readers stopped")
