"""The agent's side of standalone containers on attachable overlay networks: attachment tasks
taken out of the assignments and reported RUNNING, AttachNetwork answered with the overlay
once the task and the network's endpoints came, DetachNetwork on release, on a failed
attach and for attachments whose container is gone.

The managers are a fake ResourceAllocator behind a real grpc.aio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest

from agent import attachments as attachments_module
from agent.attachments import AttachmentError, Attachments
from agent.discovery import Discovery
from agent.executor import Executor
from agent.worker import Worker
from shoal.v1 import objects_pb2, resource_pb2, resource_pb2_grpc, types_pb2
from tests.polling import until_async
from tests.unit.agent.builders import TS, overlay_network, task
from tests.unit.agent.conftest import Reports
from tests.unit.agent.fake_engine import FakeEngine

DATA_ADDRESS = "192.0.2.10"
NOW = 1_700_000_000.0
NETWORK = "net-1"
# What `attach` answers for an attachment on NETWORK at 10.0.1.5 (builders.overlay_network).
OVERLAY = {
    "network_id": NETWORK,
    "vni": 4097,
    "subnet": "10.0.1.0/24",
    "gateway": "10.0.1.1",
    "address": "10.0.1.5",
    "vtep": DATA_ADDRESS,
    "name": f"name-{NETWORK}",
}


def attachment(
    attachment_id: str,
    container_id: str = "c1",
    *,
    network_id: str = NETWORK,
    state: types_pb2.TaskState.ValueType = TS.ASSIGNED,
    age_s: float = 1.0,
    allocated: bool = True,
) -> objects_pb2.Task:
    """An attachment task as the dispatcher sends it: with its address unless told
    otherwise."""
    result = objects_pb2.Task(id=attachment_id, node_id="node-1", desired_state=TS.RUNNING)
    result.annotations.name = f"name-{container_id}"
    result.spec.attachment.container_id = container_id
    result.spec.networks.add(target=network_id)
    result.status.state = state
    result.meta.created_at.FromSeconds(int(NOW - age_s))
    addresses = ["10.0.1.5/24"] if allocated else []
    result.networks.add(network=overlay_network(network_id), addresses=addresses)
    return result


# -- the managers -----------------------------------------------------------------------------


class FakeAllocator(resource_pb2_grpc.ResourceAllocatorServicer):
    """Records the calls; answers attachments "att-1", "att-2"... unless told to refuse."""

    def __init__(self) -> None:
        self.address = ""
        self.attached: list[resource_pb2.AttachNetworkRequest] = []
        self.detached: list[str] = []
        self.refuse_attach: tuple[grpc.StatusCode, str] | None = None
        # Called with the new attachment's id before AttachNetwork answers.
        self.before_answer: Callable[[str], object] | None = None
        self._ids = itertools.count(1)

    async def AttachNetwork(
        self, request: resource_pb2.AttachNetworkRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.AttachNetworkResponse:
        self.attached.append(request)
        if self.refuse_attach is not None:
            await context.abort(*self.refuse_attach)
        attachment_id = f"att-{next(self._ids)}"
        if self.before_answer is not None:
            self.before_answer(attachment_id)
        return resource_pb2.AttachNetworkResponse(attachment_id=attachment_id)

    async def DetachNetwork(
        self, request: resource_pb2.DetachNetworkRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.DetachNetworkResponse:
        self.detached.append(request.attachment_id)
        return resource_pb2.DetachNetworkResponse()


class Answered(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """The methods whose answers came back to the client, in order."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        call = await continuation(details, request)
        try:
            await call
        finally:
            method = details.method
            name = method.decode() if isinstance(method, bytes) else str(method)
            self.methods.append(name.rsplit("/", 1)[-1])
        return call


@pytest.fixture
async def allocator() -> AsyncIterator[FakeAllocator]:
    fake = FakeAllocator()
    server = grpc.aio.server()
    resource_pb2_grpc.add_ResourceAllocatorServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    yield fake
    await server.stop(None)


# -- the rest of the agent ------------------------------------------------------------------


class FakeDiscovery:
    """Records what Attachments asks of the embedded DNS (from its worker threads)."""

    def __init__(self) -> None:
        self.served: list[tuple[str, str, list[str]]] = []
        self.stopped: list[str] = []

    def serve(self, container_id: str, netns_path: str, network_ids: Sequence[str]) -> None:
        self.served.append((container_id, netns_path, list(network_ids)))

    def stop(self, container_id: str) -> None:
        self.stopped.append(container_id)


class Endpoints:
    """`endpoints_known(network_id)`: which networks' endpoints came, and who asked."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.asked: list[str] = []
        self.was_asked = asyncio.Event()

    def __call__(self, network_id: str) -> bool:
        self.asked.append(network_id)
        self.was_asked.set()
        return network_id in self.known


@dataclass
class Node:
    allocator: FakeAllocator
    attachments: Attachments
    discovery: FakeDiscovery
    reports: Reports
    endpoints: Endpoints
    answered: Answered
    containers: set[str]  # the containers the engine has
    channel: grpc.aio.Channel
    session: list[grpc.aio.Channel | None]  # [the open session's channel, or None]

    def detached(self) -> list[str]:
        return self.allocator.detached


@pytest.fixture
async def node(allocator: FakeAllocator, reports: Reports) -> AsyncIterator[Node]:
    answered = Answered()
    channel = grpc.aio.insecure_channel(allocator.address, interceptors=[answered])
    session: list[grpc.aio.Channel | None] = [channel]
    containers = {"c1", "c2"}
    discovery = FakeDiscovery()
    endpoints = Endpoints()

    async def container_exists(container_id: str) -> bool:
        return container_id in containers

    made = Attachments(
        lambda: session[0],
        cast(Discovery, discovery),
        reports,
        DATA_ADDRESS,
        container_exists,
        lambda: NOW,
        endpoints,
    )
    yield Node(
        allocator, made, discovery, reports, endpoints, answered, containers, channel, session
    )
    await made.close()
    await channel.close()


def start_attach(
    node: Node, container_id: str = "c1", network: str = "backend"
) -> asyncio.Task[dict[str, Any]]:
    return asyncio.create_task(
        node.attachments.attach(container_id, f"name-{container_id}", network)
    )


async def turns(count: int = 100) -> None:
    """Let the loop run whatever is ready, `count` times over: all that can happen without
    I/O or time passing has happened (this waits on no time)."""
    for _ in range(count):
        await asyncio.sleep(0)


# -- take -----------------------------------------------------------------------------------


@pytest.mark.parametrize("complete", [False, True])
async def test_take_keeps_attachments_and_reports_them_running(node: Node, complete: bool) -> None:
    service_tasks = [task("t1", slot=1), task("t2", slot=2)]
    new = attachment("a1", state=TS.ASSIGNED)
    confirmed = attachment("a2", container_id="c2", state=TS.RUNNING)
    others = node.attachments.take(
        [service_tasks[0], new, confirmed, service_tasks[1]], complete=complete
    )
    assert others == service_tasks
    assert [(t, s.state, s.message) for t, s in node.reports.all] == [
        ("a1", TS.RUNNING, "attached")
    ]
    assert node.reports.of("a1")[0].timestamp.seconds > 0


async def test_take_with_no_attachment_reports_nothing(node: Node) -> None:
    tasks = [task("t1")]
    assert node.attachments.take(tasks, complete=True) == tasks
    assert node.reports.all == []


# -- attach ---------------------------------------------------------------------------------


async def test_attach_answers_once_the_task_and_the_networks_endpoints_came(node: Node) -> None:
    attaching = start_attach(node)
    await until_async(lambda: "AttachNetwork" in node.answered.methods, "the managers' answer")
    [request] = node.allocator.attached
    assert (request.container_id, request.container_name, request.config.target) == (
        "c1",
        "name-c1",
        "backend",
    )
    await turns()
    assert not attaching.done()  # the task has not come
    assert node.endpoints.asked == []

    node.attachments.take([attachment("someone-else", container_id="c2")])
    await turns()
    assert not attaching.done()
    assert node.endpoints.asked == []

    node.endpoints.was_asked.clear()
    node.attachments.take([attachment("att-1")])
    await node.endpoints.was_asked.wait()  # the task came: now the network's endpoints
    assert node.endpoints.asked == [NETWORK]
    await turns()
    assert not attaching.done()

    node.attachments.endpoints_changed(["another-network"])
    await turns()
    assert node.endpoints.asked == [NETWORK]  # not woken by another network's endpoints
    node.attachments.endpoints_changed([NETWORK])  # changed, but still not known
    await turns()
    assert node.endpoints.asked == [NETWORK, NETWORK] and not attaching.done()
    node.endpoints.known.add(NETWORK)
    node.attachments.endpoints_changed([NETWORK])
    overlay = await asyncio.wait_for(attaching, 10)
    assert overlay == OVERLAY
    assert json.loads(json.dumps(overlay)) == OVERLAY  # what the socket sends
    assert node.reports.states("att-1") == [TS.RUNNING]
    assert node.detached() == []


async def test_a_task_that_arrives_before_the_answer_is_not_missed(node: Node) -> None:
    node.endpoints.known.add(NETWORK)
    node.allocator.before_answer = lambda attachment_id: node.attachments.take(
        [attachment(attachment_id)]
    )
    assert await asyncio.wait_for(node.attachments.attach("c1", "name-c1", "backend"), 10) == (
        OVERLAY
    )
    assert node.detached() == []


async def test_endpoints_known_already_answer_at_once(node: Node) -> None:
    node.endpoints.known.add(NETWORK)
    attaching = start_attach(node)
    await until_async(lambda: "AttachNetwork" in node.answered.methods, "the managers' answer")
    node.attachments.take([attachment("att-1")])
    assert await asyncio.wait_for(attaching, 10) == OVERLAY


async def test_a_task_that_never_comes_is_detached(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attachments_module, "ARRIVAL_TIMEOUT_S", 0.2)
    with pytest.raises(
        AttachmentError, match=r"^network backend: the managers did not allocate it in time$"
    ):
        await node.attachments.attach("c1", "name-c1", "backend")
    assert node.detached() == ["att-1"]


async def test_endpoints_that_never_come_detach_it_too(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attachments_module, "ARRIVAL_TIMEOUT_S", 0.3)
    attaching = start_attach(node)
    await until_async(lambda: "AttachNetwork" in node.answered.methods, "the managers' answer")
    node.attachments.take([attachment("att-1")])
    await node.endpoints.was_asked.wait()
    with pytest.raises(AttachmentError, match="did not allocate it in time"):
        await attaching
    assert node.detached() == ["att-1"]


async def test_a_task_without_its_address_is_detached_at_once(node: Node) -> None:
    node.allocator.before_answer = lambda attachment_id: node.attachments.take(
        [attachment(attachment_id, allocated=False)]
    )
    with pytest.raises(
        AttachmentError, match=r"^network backend: network name-net-1 is not allocated"
    ):
        await asyncio.wait_for(node.attachments.attach("c1", "name-c1", "backend"), 10)
    assert node.detached() == ["att-1"]


async def test_a_task_without_its_network_is_detached_at_once(node: Node) -> None:
    def without_network(attachment_id: str) -> None:
        task = attachment(attachment_id)
        task.ClearField("networks")
        node.attachments.take([task])

    node.allocator.before_answer = without_network
    with pytest.raises(AttachmentError, match=r"^network backend: "):
        await asyncio.wait_for(node.attachments.attach("c1", "name-c1", "backend"), 10)
    assert node.detached() == ["att-1"]


async def test_a_refusal_of_the_managers_is_shown(node: Node) -> None:
    node.allocator.refuse_attach = (
        grpc.StatusCode.FAILED_PRECONDITION,
        "network 'private' is not attachable",
    )
    with pytest.raises(AttachmentError, match=r"^network 'private' is not attachable$"):
        await node.attachments.attach("c1", "name-c1", "private")
    assert node.detached() == []


async def test_without_a_session_attach_is_refused(node: Node) -> None:
    node.session[0] = None
    with pytest.raises(AttachmentError, match="no session with the managers"):
        await node.attachments.attach("c1", "name-c1", "backend")
    assert node.allocator.attached == []


# -- release --------------------------------------------------------------------------------


async def test_release_stops_serving_and_detaches_that_containers_attachments(
    node: Node,
) -> None:
    node.attachments.take(
        [
            attachment("a1", "c1"),
            attachment("a2", "c2"),
            attachment("a3", "c1", network_id="net-2"),
        ],
        complete=True,
    )
    await node.attachments.release("c1")
    assert node.discovery.stopped == ["c1"]
    assert sorted(node.detached()) == ["a1", "a3"]

    await node.attachments.release("c1")  # again: nothing more to give back
    assert sorted(node.detached()) == ["a1", "a3"]
    await node.attachments.release("c2")
    assert sorted(node.detached()) == ["a1", "a2", "a3"]
    assert node.discovery.stopped == ["c1", "c1", "c2"]


async def test_an_attachment_the_managers_removed_is_not_detached(node: Node) -> None:
    node.attachments.take([attachment("a1", "c1"), attachment("a2", "c1", network_id="net-2")])
    node.attachments.removed(["a1"])
    await node.attachments.release("c1")
    assert node.detached() == ["a2"]


async def test_a_complete_set_replaces_what_was_known(node: Node) -> None:
    node.attachments.take([attachment("a1", "c1")])
    node.attachments.take([attachment("a2", "c1", network_id="net-2")], complete=True)
    await node.attachments.release("c1")
    assert node.detached() == ["a2"]


async def test_release_without_a_session_still_stops_serving(node: Node) -> None:
    node.attachments.take([attachment("a1", "c1")])
    node.session[0] = None
    with pytest.raises(AttachmentError, match="no session"):
        await node.attachments.release("c1")
    assert node.discovery.stopped == ["c1"]
    assert node.detached() == []
    node.session[0] = node.channel
    await node.attachments.release("c1")  # the engine's clean-up again, or a later set
    assert node.detached() == ["a1"]


# -- orphans --------------------------------------------------------------------------------


async def test_an_old_attachment_of_a_gone_container_is_detached_with_a_complete_set(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attachments_module, "ORPHAN_AGE_S", 60.0)
    node.containers.discard("c2")
    young = attachment("young", "c2", age_s=59.0)  # its container may be starting
    kept = attachment("kept", "c1", age_s=600.0)  # its container is there
    orphan = attachment("orphan", "c2", age_s=61.0, state=TS.RUNNING)
    node.attachments.take([young, kept, orphan], complete=True)
    await until_async(lambda: node.detached(), "the orphan detached")
    assert node.detached() == ["orphan"]

    # Known no more: a release of its container detaches the others only.
    node.containers.add("c2")
    await node.attachments.release("c2")
    assert node.detached() == ["orphan", "young"]


async def test_an_increment_looks_for_no_orphans(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attachments_module, "ORPHAN_AGE_S", 60.0)
    node.containers.clear()
    node.attachments.take([attachment("in-increment", "c1", age_s=600.0)])
    node.attachments.take([attachment("in-set", "c2", age_s=600.0)], complete=True)
    await until_async(lambda: node.detached(), "the orphan of the set detached")
    assert node.detached() == ["in-set"]


async def test_an_orphan_not_detached_is_tried_again_with_the_next_set(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.containers.clear()
    old = attachment("old", "c1", age_s=attachments_module.ORPHAN_AGE_S + 1)
    node.session[0] = None
    with caplog.at_level(logging.WARNING, logger="agent.attachments"):
        node.attachments.take([old], complete=True)
        await until_async(
            lambda: [r for r in caplog.records if "not detached" in r.getMessage()],
            "the failed detach logged",
        )
    assert node.detached() == []
    node.session[0] = node.channel
    node.attachments.take([old], complete=True)
    await until_async(lambda: node.detached(), "the orphan detached")
    assert node.detached() == ["old"]


# -- the socket's operations ----------------------------------------------------------------


async def test_handle_dispatches_the_sockets_operations(node: Node) -> None:
    node.endpoints.known.add(NETWORK)
    node.allocator.before_answer = lambda attachment_id: node.attachments.take(
        [attachment(attachment_id)]
    )
    answer = await node.attachments.handle(
        {"op": "attach", "container_id": "c1", "container_name": "web", "network": "backend"}
    )
    assert answer == {"overlay": OVERLAY}
    assert node.allocator.attached[0].container_name == "web"

    netns = "/proc/4242/ns/net"
    assert (
        await node.attachments.handle(
            {"op": "serve", "container_id": "c1", "netns_path": netns, "network_ids": [NETWORK]}
        )
        == {}
    )
    assert node.discovery.served == [("c1", netns, [NETWORK])]

    assert await node.attachments.handle({"op": "release", "container_id": "c1"}) == {}
    assert node.discovery.stopped == ["c1"]
    assert node.detached() == ["att-1"]

    with pytest.raises(AttachmentError, match="unknown operation 'explode'"):
        await node.attachments.handle({"op": "explode"})


# -- in the worker --------------------------------------------------------------------------


async def test_the_worker_runs_no_container_for_an_attachment(
    node: Node, executor: Executor, engine: FakeEngine, reports: Reports
) -> None:
    worker = Worker(executor, "node-1", reports, DATA_ADDRESS, None, node.attachments)
    try:
        await worker.assign([task("t1"), attachment("a1")])
        await until_async(lambda: reports.last_state("t1") == TS.RUNNING, "t1 running")
        await worker.update([attachment("a2", "c2")], [])
        assert reports.states("a1") == [TS.RUNNING]
        assert reports.states("a2") == [TS.RUNNING]
        assert [c["Config"]["Labels"]["com.shoal.task.id"] for c in engine.list()] == ["t1"]

        await worker.update([], ["a1"])
        await node.attachments.release("c1")
        assert node.detached() == []  # removed by the managers: nothing to give back
    finally:
        await worker.close()
