"""A fake agent for manager tests: a real Dispatcher client over mutual TLS that runs no
containers. It joins with a worker token, keeps a session and heartbeats, and reports every
task it is assigned as RUNNING (or SHUTDOWN once asked to stop). It prints one line per event
so a test can follow it:  session <node id> <manager> / running <task id> / shutdown <task id>.

Run inside a lab machine:  python fake_agent.py STATE_DIR JOIN_ADDRESS TOKEN MANAGER_API
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from manager.ca.certificates import generate_node_key
from manager.ca.client import NodeCredentials, join_cluster
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS
from node.identity import Identity, NodeState
from shoal.v1 import dispatcher_pb2, dispatcher_pb2_grpc, objects_pb2, types_pb2


async def credentials(state_dir: Path, join_address: str, token: str) -> NodeCredentials:
    identity = Identity(state_dir)
    if identity.exists:
        return identity.load()[0]
    creds = await join_cluster(join_address, token, generate_node_key())
    node = creds.identity
    identity.save(creds, NodeState(node.node_id, node.role.ou, node.cluster_id, "fake"))
    return creds


def say(*words: str) -> None:
    print(*words, flush=True)


async def serve(creds: NodeCredentials, manager: str, hostname: str) -> None:
    async with grpc.aio.secure_channel(
        manager, creds.channel_credentials(), MANAGER_CHANNEL_OPTIONS
    ) as channel:
        stub = dispatcher_pb2_grpc.DispatcherStub(channel)
        request = dispatcher_pb2.SessionRequest()
        request.description.hostname = hostname
        request.description.platform.os = "linux"
        request.description.platform.architecture = "amd64"
        request.description.resources.nano_cpus = 4 * 10**9
        request.description.resources.memory_bytes = 8 << 30
        session = stub.Session(request)
        first = await session.read()
        assert isinstance(first, dispatcher_pb2.SessionMessage)
        session_id = first.session_id
        say("session", creds.identity.node_id, manager)

        async def heartbeat() -> None:
            while True:
                reply = await stub.Heartbeat(dispatcher_pb2.HeartbeatRequest(session_id=session_id))
                period = reply.period.seconds + reply.period.nanos / 1e9
                await asyncio.sleep(max(0.05, period / 2))

        async def report(task: objects_pb2.Task, state: int) -> None:
            status = types_pb2.TaskStatus(state=state, message="fake agent")  # type: ignore[arg-type]
            status.timestamp.GetCurrentTime()
            await stub.UpdateTaskStatus(
                dispatcher_pb2.UpdateTaskStatusRequest(
                    session_id=session_id,
                    updates=[
                        dispatcher_pb2.UpdateTaskStatusRequest.TaskStatusUpdate(
                            task_id=task.id, status=status
                        )
                    ],
                )
            )

        async def follow_assignments() -> None:
            reported: dict[str, int] = {}
            stream = stub.Assignments(dispatcher_pb2.AssignmentsRequest(session_id=session_id))
            async for message in stream:
                for change in message.changes:
                    if not change.assignment.HasField("task"):
                        continue
                    task = change.assignment.task
                    if change.action == dispatcher_pb2.AssignmentChange.REMOVE:
                        reported.pop(task.id, None)
                        continue
                    if (
                        task.desired_state <= types_pb2.RUNNING
                        and reported.get(task.id, 0) < types_pb2.RUNNING
                    ):
                        if task.desired_state == types_pb2.RUNNING:
                            await report(task, types_pb2.RUNNING)
                            reported[task.id] = types_pb2.RUNNING
                            say("running", task.id)
                    elif (  # asked to stop: whether it ran or never started, it is down now
                        task.desired_state > types_pb2.RUNNING
                        and reported.get(task.id) != types_pb2.SHUTDOWN
                        and task.status.state < types_pb2.COMPLETE
                    ):
                        await report(task, types_pb2.SHUTDOWN)
                        reported[task.id] = types_pb2.SHUTDOWN
                        say("shutdown", task.id)

        async with asyncio.TaskGroup() as group:
            group.create_task(heartbeat())
            group.create_task(follow_assignments())


async def main(state_dir: Path, join_address: str, token: str, managers: list[str]) -> None:
    creds = await credentials(state_dir, join_address, token)
    attempt = 0
    while True:  # another manager when one goes away (leader killed, stepped down)
        manager = managers[attempt % len(managers)]
        attempt += 1
        try:
            await serve(creds, manager, f"fake-{creds.identity.node_id[:6]}")
        except (grpc.aio.AioRpcError, ExceptionGroup) as exc:
            say("lost", manager, type(exc).__name__)
            await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")))
