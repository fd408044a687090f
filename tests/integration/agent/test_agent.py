"""The agent in a lab machine, against a fake dispatcher, with the real runtime and registry:
tasks run, complete, fail, are rejected, shut down within their grace period and removed,
and a restarted agent (after kill -9) adopts its running containers without restarting
them and cleans up what was removed while it was down."""

from __future__ import annotations

import asyncio
import http.client
import os
import time
from collections.abc import Callable

from common.namespaces import entered_netns
from runtime.container.store import proc_start_time
from shoal.v1 import types_pb2
from tests.integration.agent.conftest import NODE_ID, AgentLab
from tests.polling import until, until_async
from tests.unit.agent.builders import TS, task, with_desired

DEADLINE_S = 60.0  # a first pull of busybox and a Python start-up, on a busy machine


async def until_seen(agent_lab: AgentLab, predicate: Callable[[], bool], what: str) -> None:
    """`until_async`, saying on failure what the agent reported and logged."""

    def reported() -> str:
        seen = [
            (t, TS.Name(s.state), s.err)
            for b in agent_lab.dispatcher.recorded.batches
            for t, s in b
        ]
        return f"statuses: {seen}\n--- agent log ---\n{agent_lab.log()}"

    await until_async(predicate, what, timeout_s=DEADLINE_S, context=reported)


def assert_quiet_log(agent_lab: AgentLab) -> None:
    """No warning, error or traceback in any agent's log."""
    noisy = [
        line
        for line in agent_lab.log().splitlines()
        if any(word in line for word in (" WARNING ", " ERROR ", "Traceback"))
    ]
    assert noisy == []


def state(agent_lab: AgentLab, task_id: str) -> int | None:
    last = agent_lab.dispatcher.recorded.last(task_id)
    return last.state if last is not None else None


def containers_by_task(agent_lab: AgentLab) -> dict[str, dict[str, object]]:
    return {
        info["Config"]["Labels"]["com.shoal.task.id"]: info
        for info in agent_lab.engine.list(all=True)
    }


async def test_tasks_run_complete_fail_and_are_rejected(agent_lab: AgentLab) -> None:
    d = agent_lab.dispatcher
    image = agent_lab.image
    d.set_task(task("sleeper", image, command=("sleep", "300"), slot=1))
    d.set_task(task("ok", image, command=("sh", "-c", "exit 0"), slot=2))
    d.set_task(task("bad", image, args=("sh", "-c", "exit 3"), slot=3))
    d.set_task(task("missing", f"{agent_lab.lab.registry}/nothere:1", slot=4))
    agent_lab.start_agent()

    await until_seen(
        agent_lab, lambda: state(agent_lab, "sleeper") == TS.RUNNING, "sleeper RUNNING"
    )
    await until_seen(agent_lab, lambda: state(agent_lab, "ok") == TS.COMPLETE, "ok COMPLETE")
    await until_seen(agent_lab, lambda: state(agent_lab, "bad") == TS.FAILED, "bad FAILED")
    await until_seen(agent_lab, lambda: state(agent_lab, "missing") == TS.REJECTED, "REJECTED")

    (session,) = d.recorded.sessions
    assert session.description.hostname == agent_lab.machine.name
    assert dict(session.description.engine.labels) == {"zone": "lab"}
    assert session.description.resources.memory_bytes > 0

    running = d.recorded.last("sleeper")
    assert running is not None
    info = agent_lab.engine.inspect(running.container_status.container_id)
    assert info["State"]["Running"]
    assert running.container_status.pid == info["State"]["Pid"] > 0
    assert info["Name"] == "web.1.sleeper"
    assert info["Config"]["Labels"]["com.shoal.node.id"] == NODE_ID
    assert agent_lab.machine.contains(info["State"]["Pid"])  # in the machine's cgroup

    states = d.recorded.states("ok")
    assert states == sorted(states) and states[-1] == TS.COMPLETE
    failed = d.recorded.last("bad")
    assert failed is not None
    assert failed.err == "task: non-zero exit (3)" and failed.exit_code == 3
    rejected = d.recorded.last("missing")
    assert rejected is not None
    assert rejected.err == f"manifest nothere:1: not found in registry {agent_lab.lab.registry}"
    assert "missing" not in containers_by_task(agent_lab)
    assert_quiet_log(agent_lab)


async def test_shutdown_within_grace_then_removal(agent_lab: AgentLab) -> None:
    d = agent_lab.dispatcher
    # The shell is the container's init: it ignores SIGTERM, so only the grace period ends it.
    stubborn = task("stubborn", agent_lab.image, command=("sleep", "300"), grace=2)
    polite = task(
        "polite",
        agent_lab.image,
        command=("sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"),
        slot=2,
    )
    d.set_task(stubborn)
    d.set_task(polite)
    agent_lab.start_agent()
    await until_seen(agent_lab, lambda: state(agent_lab, "stubborn") == TS.RUNNING, "RUNNING")
    await until_seen(agent_lab, lambda: state(agent_lab, "polite") == TS.RUNNING, "RUNNING")

    asked = time.monotonic()
    d.set_task(with_desired(stubborn, TS.SHUTDOWN, TS.RUNNING))
    d.set_task(with_desired(polite, TS.SHUTDOWN, TS.RUNNING))
    await until_seen(
        agent_lab, lambda: state(agent_lab, "polite") == TS.SHUTDOWN, "polite SHUTDOWN"
    )
    polite_took = time.monotonic() - asked
    await until_seen(agent_lab, lambda: state(agent_lab, "stubborn") == TS.SHUTDOWN, "SHUTDOWN")
    stubborn_took = time.monotonic() - asked
    assert polite_took < 2  # it left on SIGTERM
    assert 2 <= stubborn_took < 2 + 5  # SIGKILL after the 2 s grace period
    last = d.recorded.last("stubborn")
    assert last is not None and last.exit_code == 137
    assert set(containers_by_task(agent_lab)) == {"stubborn", "polite"}  # kept until removed

    d.remove_task("stubborn")
    await until_seen(agent_lab, lambda: "stubborn" not in containers_by_task(agent_lab), "removal")
    assert set(containers_by_task(agent_lab)) == {"polite"}
    assert_quiet_log(agent_lab)


async def test_kill_9_and_restart_adopts_without_restarting(agent_lab: AgentLab) -> None:
    d = agent_lab.dispatcher
    d.set_task(task("keep", agent_lab.image, command=("sleep", "300"), slot=1))
    d.set_task(task("drop", agent_lab.image, command=("sleep", "300"), slot=2))
    first = agent_lab.start_agent()
    await until_seen(agent_lab, lambda: state(agent_lab, "keep") == TS.RUNNING, "keep RUNNING")
    await until_seen(agent_lab, lambda: state(agent_lab, "drop") == TS.RUNNING, "drop RUNNING")
    before = containers_by_task(agent_lab)
    keep_pid = int(before["keep"]["State"]["Pid"])  # type: ignore[index]
    keep_started = proc_start_time(keep_pid)

    first.kill()  # SIGKILL: no clean-up of any kind
    first.wait(10)
    d.remove_task("drop")  # while the agent is down
    assert agent_lab.engine.inspect(str(before["keep"]["Id"]))["State"]["Running"]
    keep = with_desired(d.tasks["keep"], TS.RUNNING, TS.RUNNING)
    d.set_task(keep)  # the manager has seen it running
    sessions = len(d.recorded.session_ids)

    agent_lab.start_agent()
    await until_seen(agent_lab, lambda: len(d.recorded.session_ids) > sessions, "a new session")
    await until_seen(agent_lab, lambda: "drop" not in containers_by_task(agent_lab), "drop removed")
    await until_seen(
        agent_lab,
        lambda: any(s.message == "adopted" for s in d.recorded.statuses("keep")),
        "keep adopted",
    )
    adopted = [s for s in d.recorded.statuses("keep") if s.message == "adopted"]
    assert adopted[0].state == TS.RUNNING
    assert adopted[0].container_status.container_id == before["keep"]["Id"]
    assert adopted[0].container_status.pid == keep_pid
    assert proc_start_time(keep_pid) == keep_started  # the very same process
    assert list(containers_by_task(agent_lab)) == ["keep"]
    assert os.path.exists(f"/proc/{keep_pid}")

    d.set_task(with_desired(keep, TS.SHUTDOWN, TS.RUNNING))  # the new agent drives it
    await until_seen(agent_lab, lambda: state(agent_lab, "keep") == TS.SHUTDOWN, "keep SHUTDOWN")
    assert_quiet_log(agent_lab)


async def test_host_mode_port_is_published_on_the_machine(agent_lab: AgentLab) -> None:
    d = agent_lab.dispatcher
    web = task("web", agent_lab.image, command=("httpd", "-f", "-p", "80", "-h", "/etc"))
    web.endpoint.ports.append(
        types_pb2.PortConfig(
            target_port=80, published_port=8080, publish_mode=types_pb2.PortConfig.HOST
        )
    )
    d.set_task(web)
    agent_lab.start_agent()
    await until_seen(agent_lab, lambda: state(agent_lab, "web") == TS.RUNNING, "web RUNNING")
    running = d.recorded.last("web")
    assert running is not None
    assert [(p.target_port, p.published_port) for p in running.port_status.ports] == [(80, 8080)]

    def fetch() -> bytes:
        conn = http.client.HTTPConnection(agent_lab.machine.record.ip, 8080, timeout=5)
        with entered_netns(agent_lab.machine.name):  # the machine's own address, from inside
            conn.connect()
        try:
            conn.request("GET", "/hostname")
            return conn.getresponse().read()
        finally:
            conn.close()

    # The server may take a moment to listen after its process started (the wait runs in a
    # thread: the fake dispatcher serves on this loop meanwhile).
    body = await asyncio.to_thread(
        until, fetch, "the web server to answer", timeout_s=DEADLINE_S, retry_on=(OSError,)
    )
    assert body.decode().strip() == running.container_status.container_id[:12]  # its hostname
    assert_quiet_log(agent_lab)
