"""The runtime engine and image store as controllers use them: asynchronous, shared image
lookups and pulls.

Engine calls block (files, fork, a stop waiting out its grace period), so they run in a
thread pool of the executor's own, big enough that a slow pull or stop never holds up the
others. Waiting for a running container costs no thread: its init process is watched with a
pidfd on the event loop. Threads start from the event loop's thread and so share its
network namespace (a lab machine's, in tests), where the engine wires containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from agent.container_spec import TASK_LABEL
from runtime.container.engine import Image
from runtime.container.spec import ContainerSpec, OverlayAttachment
from runtime.errors import NotFound
from runtime.image.errors import ImageNotFound

T = TypeVar("T")
EXIT_RECORD_TIMEOUT = 30.0  # seconds from the init's exit until its shim has recorded it
MAX_THREADS = 64
REMOVE_ATTEMPTS = 5


class Engine(Protocol):
    """What the executor needs of runtime.container.engine.Engine."""

    def create(self, spec: ContainerSpec, image: Image) -> str: ...

    def start(self, name_or_id: str, attach: bool = False, attended: bool = False) -> Any: ...

    def wait(self, name_or_id: str, timeout: float | None = None) -> dict[str, Any]: ...

    def stop(self, name_or_id: str, timeout: float | None = None) -> dict[str, Any] | None: ...

    def remove(self, name_or_id: str, force: bool = False) -> None: ...

    def cleanup(self, name_or_id: str) -> None: ...

    def inspect(self, name_or_id: str) -> dict[str, Any]: ...

    def list(self, all: bool = False) -> list[dict[str, Any]]: ...

    def set_overlay_peers(
        self, overlay: OverlayAttachment, peers: Sequence[tuple[str, str]]
    ) -> None: ...

    def serve_dns(self, name_or_id: str) -> None: ...


class Images(Protocol):
    """What the executor needs of runtime.image.store.ImageStore."""

    def get(self, ref: str) -> Image: ...

    def pull(self, ref: str) -> Image: ...


def task_id_of(info: dict[str, Any]) -> str:
    """The task a container (an engine inspect record) runs, "" for other containers."""
    return str((info["Config"].get("Labels") or {}).get(TASK_LABEL, ""))


class Executor:
    def __init__(self, engine: Engine, images: Images, max_threads: int = MAX_THREADS) -> None:
        self.engine = engine
        self.images = images
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="agent-engine")
        self._images: dict[str, asyncio.Future[Image]] = {}
        # The runtime engine was made for one thread per process, and starts fork the
        # container's shim, which keeps a copy of every descriptor open at that moment
        # until it re-executes: a network lock held by a concurrent clean-up or removal
        # would stay held by the new shim while its own start waits for that lock. Starts
        # therefore never overlap those calls, nor each other (runtime.container.shim.launch
        # closes its `go` pipe twice, which can take a descriptor from a concurrent start).
        self._forks = threading.Lock()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking node work (netlink, nft) in the executor's threads, which are in the
        agent's network namespace."""
        return await self._call(fn, *args)

    def close(self) -> None:
        """Let go of the threads; work already running in them finishes on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- images --------------------------------------------------------------------------

    async def image(self, ref: str) -> Image:
        """The local image `ref`, pulled when missing. Concurrent callers (the tasks of a
        service arriving together) share one lookup and, if needed, one pull; a later call
        looks again, so an image removed or re-tagged meanwhile is seen."""
        found = self._images.get(ref)
        if found is None:
            found = asyncio.ensure_future(self._local_or_pulled(ref))
            self._images[ref] = found
            found.add_done_callback(functools.partial(self._image_done, ref))
        return await asyncio.shield(found)

    async def _local_or_pulled(self, ref: str) -> Image:
        try:
            return await self._call(self.images.get, ref)
        except ImageNotFound:
            return await self._call(self.images.pull, ref)

    def _image_done(self, ref: str, found: asyncio.Future[Image]) -> None:
        self._images.pop(ref, None)
        if not found.cancelled():
            found.exception()  # retrieved here too: every waiter may have gone

    # -- containers ----------------------------------------------------------------------

    async def task_containers(self) -> list[dict[str, Any]]:
        """Inspect records of every container that runs a task, oldest first."""
        infos = await self._call(self.engine.list, True)
        return sorted((i for i in infos if task_id_of(i)), key=lambda i: str(i["Created"]))

    async def inspect(self, container_id: str) -> dict[str, Any]:
        return await self._call(self.engine.inspect, container_id)

    async def create(self, spec: ContainerSpec, image: Image) -> str:
        return await self._call(self.engine.create, spec, image)

    async def start(self, container_id: str) -> dict[str, Any]:
        """Start the container (this agent cleans up after it); its inspect record."""
        await self._call(self._start_alone, container_id)
        return await self.inspect(container_id)

    def _start_alone(self, container_id: str) -> None:
        with self._forks:
            self.engine.start(container_id, attended=True)

    def _cleanup_alone(self, container_id: str) -> None:
        with self._forks:
            self.engine.cleanup(container_id)

    def _remove_alone(self, container_id: str) -> None:
        with self._forks:
            self.engine.remove(container_id, True)

    async def set_overlay_peers(
        self, overlay: OverlayAttachment, peers: Sequence[tuple[str, str]]
    ) -> None:
        """Program where the other endpoints of an overlay network run (address, node)."""
        await self._call(self.engine.set_overlay_peers, overlay, list(peers))

    async def serve_dns(self, container_id: str) -> None:
        """Answer an adopted container's DNS queries again (no-op without overlays)."""
        await self._call(self.engine.serve_dns, container_id)

    async def wait_exit(self, container_id: str) -> dict[str, Any]:
        """Wait for the container to end; its exit record, once its resources are freed."""
        info = await self.inspect(container_id)
        pid = info["State"]["Pid"]
        if pid:
            with contextlib.suppress(ProcessLookupError):
                pidfd = os.pidfd_open(pid)
                try:
                    # The pidfd is the container's init unless that ended before it was
                    # opened (and the pid was reused): then the container is no longer running.
                    if (await self.inspect(container_id))["State"]["Running"]:
                        await _readable(pidfd)
                finally:
                    os.close(pidfd)
        record = await self._call(self.engine.wait, container_id, EXIT_RECORD_TIMEOUT)
        await self._call(self._cleanup_alone, container_id)
        return record

    async def stop(self, container_id: str, grace: float | None) -> dict[str, Any] | None:
        """Stop signal, `grace` seconds (None: the container's own), then SIGKILL; the exit
        record (None if the container never started)."""
        record = await self._call(self.engine.stop, container_id, grace)
        if record is not None:
            await self._call(self._cleanup_alone, container_id)
        return record

    async def remove(self, container_id: str) -> None:
        """Remove the container (killed if still running); a missing one is fine.

        A container another agent started has its shim run the engine's clean-up command
        when it ends, which can touch the container's directory while it is being
        deleted: the removal is tried again then."""
        for attempt in range(1, REMOVE_ATTEMPTS + 1):
            try:
                await self._call(self._remove_alone, container_id)
                return
            except NotFound:
                return
            except OSError:
                if attempt == REMOVE_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
