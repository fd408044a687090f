"""Standalone containers of this node on the cluster's attachable overlay networks
(`shoal run --network NAME`): swarmd's end of runtime.network.cluster_socket.

`attach`: the agent asks the managers (ResourceAllocator.AttachNetwork), which make a
network attachment task preassigned to this node; it arrives with the node's assignments,
with its address, and the worker hands it here instead of to a task controller. It is
reported RUNNING (it has no process), its network's peers are programmed as for any task,
and the command gets the address. `serve` gives the running container the embedded DNS and
virtual IPs (agent.discovery), `release` takes them away and detaches
(ResourceAllocator.DetachNetwork). Attachments of containers that are gone, whose release
never came (swarmd was down when they ended), are detached when a complete assignment set
shows them, once old enough not to belong to a container still starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any

import grpc

from agent.container_spec import overlay_attachment
from agent.discovery import Discovery
from agent.errors import TaskSpecError
from shoal.v1 import objects_pb2, resource_pb2, resource_pb2_grpc, specs_pb2, types_pb2

log = logging.getLogger(__name__)

Report = Callable[[str, types_pb2.TaskStatus], None]
RPC_TIMEOUT_S = 10.0
ARRIVAL_TIMEOUT_S = 30.0  # from AttachNetwork to the allocated task in the assignments
ORPHAN_AGE_S = 120.0  # an attachment without its container is detached after this


class AttachmentError(Exception):
    """What the `shoal` command shows when it cannot join the network."""


def is_attachment(task: objects_pb2.Task) -> bool:
    return task.spec.WhichOneof("runtime") == "attachment"


class Attachments:
    def __init__(
        self,
        channel: Callable[[], grpc.aio.Channel | None],
        discovery: Discovery,
        report: Report,
        data_address: str,
        container_exists: Callable[[str], Awaitable[bool]],
        now: Callable[[], float],
        endpoints_known: Callable[[str], bool],
    ) -> None:
        """`channel()`: the open session's channel to a manager (None between sessions);
        `endpoints_known(network_id)`: whether the network's endpoints came (the container
        can resolve names on it then)."""
        self._channel = channel
        self._discovery = discovery
        self._report = report
        self._data_address = data_address
        self._container_exists = container_exists
        self._now = now
        self._tasks: dict[str, objects_pb2.Task] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        self._endpoints_known = endpoints_known
        self._endpoints: dict[str, asyncio.Event] = {}
        self._chores: set[asyncio.Task[None]] = set()

    # -- from the worker -----------------------------------------------------------------

    def take(
        self, tasks: Sequence[objects_pb2.Task], complete: bool = False
    ) -> list[objects_pb2.Task]:
        """Keep the attachments among `tasks` (with `complete`, the node's whole set);
        return the other tasks."""
        others = [t for t in tasks if not is_attachment(t)]
        mine = {t.id: t for t in tasks if is_attachment(t)}
        if complete:
            self._tasks = {}
            for task in mine.values():
                self._chore(self._detach_if_orphaned(task))
        for task in mine.values():
            self._tasks[task.id] = task
            if task.status.state < types_pb2.RUNNING:
                status = types_pb2.TaskStatus(state=types_pb2.RUNNING, message="attached")
                status.timestamp.GetCurrentTime()
                self._report(task.id, status)
            waiting = self._arrived.get(task.id)
            if waiting is not None:
                waiting.set()
        return others

    def endpoints_changed(self, network_ids: Sequence[str]) -> None:
        for network_id in network_ids:
            waiting = self._endpoints.get(network_id)
            if waiting is not None:
                waiting.set()

    def removed(self, task_ids: Sequence[str]) -> None:
        for task_id in task_ids:
            self._tasks.pop(task_id, None)

    async def close(self) -> None:
        for chore in list(self._chores):
            chore.cancel()
        await asyncio.gather(*self._chores, return_exceptions=True)

    # -- the socket's operations ---------------------------------------------------------

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "attach":
            overlay = await self.attach(
                str(request["container_id"]),
                str(request["container_name"]),
                str(request["network"]),
            )
            return {"overlay": overlay}
        if op == "serve":
            await asyncio.to_thread(
                self._discovery.serve,
                str(request["container_id"]),
                str(request["netns_path"]),
                [str(n) for n in request["network_ids"]],
            )
            return {}
        if op == "release":
            await self.release(str(request["container_id"]))
            return {}
        raise AttachmentError(f"unknown operation {op!r}")

    async def attach(self, container_id: str, name: str, network: str) -> dict[str, Any]:
        """The container's place on `network` (an OverlayAttachment as JSON)."""
        request = resource_pb2.AttachNetworkRequest(
            config=specs_pb2.NetworkAttachmentConfig(target=network),
            container_id=container_id,
            container_name=name,
        )
        response = await self._call("AttachNetwork", request)
        attachment_id = response.attachment_id
        arrived = self._arrived.setdefault(attachment_id, asyncio.Event())
        if attachment_id in self._tasks:  # it came with the assignments before the answer
            arrived.set()
        try:
            async with asyncio.timeout(ARRIVAL_TIMEOUT_S):
                await arrived.wait()
                task = self._tasks[attachment_id]
                if not task.networks:
                    raise TaskSpecError("the managers gave the attachment no network")
                overlay = overlay_attachment(task.networks[0], self._data_address)
                # The network's endpoints follow the task: wait for them, or the container
                # would start unable to resolve the names on it.
                known = self._endpoints.setdefault(overlay.network_id, asyncio.Event())
                while not self._endpoints_known(overlay.network_id):
                    known.clear()
                    await known.wait()
            return asdict(overlay)
        except (TimeoutError, KeyError, TaskSpecError) as exc:
            with contextlib.suppress(AttachmentError):
                await self._detach(attachment_id)
            why = str(exc) or "the managers did not allocate it in time"
            raise AttachmentError(f"network {network}: {why}") from None
        finally:
            self._arrived.pop(attachment_id, None)

    async def release(self, container_id: str) -> None:
        await asyncio.to_thread(self._discovery.stop, container_id)
        for task in list(self._tasks.values()):
            if task.spec.attachment.container_id == container_id:
                await self._detach(task.id)

    # -- the managers ----------------------------------------------------------------------

    async def _detach(self, attachment_id: str) -> None:
        await self._call(
            "DetachNetwork", resource_pb2.DetachNetworkRequest(attachment_id=attachment_id)
        )
        self._tasks.pop(attachment_id, None)

    async def _call(self, method: str, request: Any) -> Any:
        channel = self._channel()
        if channel is None:
            raise AttachmentError("swarmd has no session with the managers now: try again")
        stub = resource_pb2_grpc.ResourceAllocatorStub(channel)
        try:
            return await getattr(stub, method)(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise AttachmentError(exc.details() or exc.code().name) from None

    async def _detach_if_orphaned(self, task: objects_pb2.Task) -> None:
        age = self._now() - task.meta.created_at.ToSeconds()
        container_id = task.spec.attachment.container_id
        if age < ORPHAN_AGE_S or await self._container_exists(container_id):
            return
        log.info("network attachment %s: container %s is gone; detaching", task.id, container_id)
        try:
            await self._detach(task.id)
        except AttachmentError as exc:
            log.warning("network attachment %s not detached: %s", task.id, exc)

    def _chore(self, work: Awaitable[None]) -> None:
        chore = asyncio.ensure_future(work)
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)
