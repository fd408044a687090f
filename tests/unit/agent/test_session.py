"""The session against fake dispatchers on 127.0.0.1: heartbeats, assignments, status
batches, and reconnecting (dropped streams, errors, dead managers, rotated manager lists)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from prometheus_client import REGISTRY

from agent.backoff import Backoff
from agent.managers import Managers
from agent.reporter import StatusReporter
from agent.session import Session
from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc, objects_pb2, types_pb2
from tests.polling import until_async
from tests.unit.agent.builders import TS, task
from tests.unit.agent.fake_dispatcher import Failure, FakeDispatcher, serve


class Sink:
    """Records what the session hands the worker."""

    def __init__(self) -> None:
        self.complete: list[list[str]] = []
        self.network_endpoints: list[tuple[list[str], list[str], bool]] = []
        self.increments: list[tuple[list[str], list[str]]] = []

    async def assign(self, tasks: Sequence[objects_pb2.Task]) -> None:
        self.complete.append([t.id for t in tasks])

    async def update(self, updated: Sequence[objects_pb2.Task], removed: Sequence[str]) -> None:
        self.increments.append(([t.id for t in updated], list(removed)))

    async def peers(
        self,
        updated: Sequence[dispatcher_pb2.NetworkEndpoints],
        removed: Sequence[str],
        complete: bool = False,
    ) -> None:
        self.network_endpoints.append(([p.network_id for p in updated], list(removed), complete))


class Cluster:
    """Fake managers, and one agent session against them."""

    def __init__(self) -> None:
        self.servers: dict[str, grpc.aio.Server] = {}
        self.dispatchers: dict[str, FakeDispatcher] = {}
        self.sink = Sink()
        self.reporter = StatusReporter(flush_interval=0.02)
        self.session: Session | None = None
        self._run: asyncio.Task[None] | None = None

    async def manager(self, name: str, heartbeat_period: float = 0.5) -> FakeDispatcher:
        dispatcher = FakeDispatcher(name, heartbeat_period)
        self.servers[name] = await serve(dispatcher)
        self.dispatchers[name] = dispatcher
        return dispatcher

    async def kill(self, name: str) -> None:
        await self.servers.pop(name).stop(0)

    def connect(self, *names: str, first_message_timeout: float = 10.0) -> Session:
        addresses = [self.dispatchers[n].address for n in names]
        self.session = Session(
            Managers(addresses),
            grpc.aio.insecure_channel,
            lambda: types_pb2.NodeDescription(hostname="node-a"),
            self.sink,
            self.reporter,
            Backoff(base=0.01, cap=0.05),
            first_message_timeout,
        )
        self._run = asyncio.create_task(self.session.run())
        return self.session

    def on(self, name: str) -> bool:
        """True when the agent holds an open session with manager `name`."""
        return self.dispatchers[name].open_sessions == 1

    async def close(self) -> None:
        if self._run is not None:
            self._run.cancel()
            await asyncio.gather(self._run, return_exceptions=True)
        for server in self.servers.values():
            await server.stop(0)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    made = Cluster()
    yield made
    await made.close()


def reconnects() -> float:
    return REGISTRY.get_sample_value("shoal_agent_session_reconnects_total") or 0.0


async def test_registers_and_heartbeats_at_the_dispatchers_period(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1", heartbeat_period=0.2)
    session = cluster.connect("m1")
    await until_async(lambda: len(m1.recorded.heartbeats) >= 3, "three heartbeats")
    (request,) = m1.recorded.sessions
    assert request.description.hostname == "node-a" and request.session_id == ""
    assert session.session_id == m1.recorded.session_ids[0]
    assert session.heartbeat_period == pytest.approx(0.2)
    beats = m1.recorded.heartbeats
    assert all(later - earlier >= 0.19 for earlier, later in itertools.pairwise(beats))


async def test_complete_set_then_increments(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1")
    m1.set_task(task("a"))
    cluster.connect("m1")
    await until_async(lambda: cluster.sink.complete == [["a"]], "the complete set")
    m1.set_task(task("b"))
    m1.remove_task("a")
    await until_async(lambda: len(cluster.sink.increments) == 2, "two increments")
    assert cluster.sink.increments == [(["b"], []), ([], ["a"])]


async def test_an_increment_that_does_not_apply_reopens_the_stream(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1")
    m1.set_task(task("a"))
    cluster.connect("m1")
    await until_async(lambda: cluster.sink.complete == [["a"]], "the complete set")
    m1.send_assignments(
        dispatcher_pb2.AssignmentsMessage(
            type=dispatcher_pb2.AssignmentsMessage.INCREMENTAL, applies_to="999", results_in="1000"
        )
    )
    await until_async(lambda: len(cluster.sink.complete) == 2, "a fresh complete set")
    assert m1.recorded.assignment_streams == 2
    assert cluster.sink.increments == []  # the stray increment was not applied
    assert len(m1.recorded.session_ids) == 1  # the session itself went on


async def test_a_dropped_session_reconnects_and_gets_a_fresh_complete_set(
    cluster: Cluster,
) -> None:
    m1 = await cluster.manager("m1")
    m1.set_task(task("a"))
    session = cluster.connect("m1")
    await until_async(lambda: cluster.sink.complete == [["a"]], "the complete set")
    before = reconnects()
    first_id = session.session_id
    m1.end_sessions()
    await until_async(lambda: len(cluster.sink.complete) == 2, "a second complete set")
    assert reconnects() == before + 1
    assert session.session_id != first_id
    assert m1.recorded.sessions[1].session_id == first_id  # offered for resumption


@pytest.mark.parametrize("code", [grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE])
async def test_a_manager_that_refuses_sends_the_agent_to_another(
    cluster: Cluster, code: grpc.StatusCode
) -> None:
    m1 = await cluster.manager("m1")
    m2 = await cluster.manager("m2")
    m1.fail_sessions = [Failure(code, "not the leader")] * 1000
    cluster.connect("m1", "m2")
    await until_async(lambda: cluster.on("m2"), "a session with m2")
    assert m2.recorded.sessions


async def test_a_dead_manager_is_left_for_one_from_the_last_list(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1")
    m2 = await cluster.manager("m2")
    m3 = await cluster.manager("m3")
    m2.set_task(task("a"))
    cluster.connect("m1")  # configured with m1 only
    await until_async(lambda: cluster.on("m1"), "a session with m1")
    m1.set_managers([(m1.address, 10), (m2.address, 10)])  # m3 is not in the list
    session = cluster.session
    assert session is not None
    await until_async(lambda: len(session.managers.addresses) == 2, "the new list")
    await cluster.kill("m1")
    await until_async(lambda: cluster.sink.complete[-1:] == [["a"]], "m2's complete set")
    assert cluster.on("m2")
    assert m3.recorded.sessions == []


async def test_it_never_gives_up_on_an_absent_manager(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1")
    address = m1.address
    await cluster.kill("m1")  # nothing listens there now
    before = reconnects()
    cluster.connect("m1")
    await until_async(lambda: reconnects() >= before + 5, "five attempts")
    server = grpc.aio.server()
    dispatcher_pb2_grpc.add_DispatcherServicer_to_server(m1, server)
    server.add_insecure_port(address)
    await server.start()
    cluster.servers["m1"] = server
    await until_async(lambda: cluster.on("m1"), "a session once m1 is back")


async def test_an_unconfirmed_session_times_out(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1")
    await cluster.manager("m2")
    m1.stall_sessions = True
    cluster.connect("m1", "m2", first_message_timeout=0.3)
    await until_async(lambda: cluster.on("m2"), "a session with m2")


async def test_a_forgotten_session_starts_anew(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1", heartbeat_period=0.05)
    session = cluster.connect("m1")
    await until_async(lambda: len(m1.recorded.heartbeats) >= 1, "a heartbeat")
    first_id = session.session_id
    m1.fail_heartbeats = [Failure(grpc.StatusCode.NOT_FOUND, "unknown session")]
    await until_async(
        lambda: len(m1.recorded.session_ids) == 2 and session.session_id != first_id,
        "a new session (the dispatcher records it before the agent has its answer)",
    )
    assert session.session_id == m1.recorded.session_ids[-1]


async def test_statuses_go_in_batches_of_at_most_100(cluster: Cluster) -> None:
    m1 = await cluster.manager("m1")
    cluster.connect("m1")
    await until_async(lambda: cluster.on("m1"), "a session")
    for n in range(150):
        cluster.reporter.report(f"t{n}", types_pb2.TaskStatus(state=TS.RUNNING))
    await until_async(lambda: sum(map(len, m1.recorded.batches)) == 150, "150 updates")
    assert sorted(map(len, m1.recorded.batches), reverse=True) == [100, 50]


async def test_a_batch_the_dispatcher_refused_is_sent_again_after_reconnecting(
    cluster: Cluster,
) -> None:
    m1 = await cluster.manager("m1")
    cluster.connect("m1")
    await until_async(lambda: cluster.on("m1"), "a session")
    m1.fail_status = [Failure(grpc.StatusCode.UNAVAILABLE, "store unavailable")]
    cluster.reporter.report("a", types_pb2.TaskStatus(state=TS.RUNNING, message="started"))
    await until_async(lambda: m1.recorded.last("a") is not None, "the status delivered")
    assert len(m1.recorded.session_ids) == 2
    assert m1.recorded.states("a") == [TS.RUNNING]


async def test_statuses_reported_while_disconnected_wait_for_a_session(
    cluster: Cluster,
) -> None:
    m1 = await cluster.manager("m1")
    m1.stall_sessions = True
    cluster.connect("m1", first_message_timeout=0.2)
    cluster.reporter.report("a", types_pb2.TaskStatus(state=TS.COMPLETE))
    await until_async(lambda: len(m1.recorded.sessions) >= 2, "a retried session")
    m1.stall_sessions = False
    await until_async(lambda: m1.recorded.states("a") == [TS.COMPLETE], "the status delivered")


def _update(task_id: str) -> dispatcher_pb2.AssignmentChange:
    return dispatcher_pb2.AssignmentChange(
        assignment=dispatcher_pb2.Assignment(task=task(task_id)),
        action=dispatcher_pb2.AssignmentChange.UPDATE,
    )


async def test_a_set_sent_in_chunks_is_applied_once_whole(cluster: Cluster) -> None:
    """A set or a batch too large for one message comes in chained chunks (`more`): the
    agent applies them together, never a first chunk as if it were the whole set (which
    would stop every task of the later chunks)."""
    msg = dispatcher_pb2.AssignmentsMessage
    m1 = await cluster.manager("m1")
    m1.set_task(task("a"))
    cluster.connect("m1")
    await until_async(lambda: cluster.sink.complete == [["a"]], "the complete set")
    for message in (
        msg(type=msg.COMPLETE, results_in="c1", changes=[_update("b")], more=True),
        msg(type=msg.COMPLETE, applies_to="c1", results_in="c2", changes=[_update("c")]),
        msg(type=msg.INCREMENTAL, applies_to="c2", results_in="i1", changes=[_update("d")],
            more=True),
        msg(type=msg.INCREMENTAL, applies_to="i1", results_in="i2", changes=[_update("e")]),
    ):  # fmt: skip
        m1.send_assignments(message)
    await until_async(lambda: cluster.sink.increments, "the chunked increment applied")
    assert cluster.sink.complete == [["a"], ["b", "c"]]
    assert cluster.sink.increments == [(["d", "e"], [])]
