"""One task's life on this node: SwarmKit's task state machine over the runtime engine.

ACCEPTED -> PREPARING (image pulled if missing, container created) -> READY -> STARTING ->
RUNNING -> COMPLETE (exit 0) | FAILED (non-zero exit); SHUTDOWN when the desired state says
so. States only move forward and never past the desired state; an error before STARTING
rejects the task, one from STARTING on fails it. A controller starts from the status the
manager has recorded and from the task's container if one exists, so a restarted agent
carries on with its tasks instead of redoing them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeAlias

from agent import container_spec
from agent.errors import AgentError, ContainerGone
from agent.executor import Executor
from common.errors import InvalidValue
from runtime.errors import RuntimeEngineError
from shoal.v1 import objects_pb2, types_pb2

log = logging.getLogger(__name__)

Report = Callable[[str, types_pb2.TaskStatus], None]
TS = types_pb2.TaskState
State: TypeAlias = types_pb2.TaskState.ValueType


class TaskController:
    def __init__(
        self,
        task: objects_pb2.Task,
        executor: Executor,
        node_id: str,
        report: Report,
        container: dict[str, Any] | None = None,
        data_address: str = "",
    ) -> None:
        """`container`: the inspect record of the task's container, when one exists;
        `data_address`: this node's address for overlay traffic."""
        self.task = task
        self.status = types_pb2.TaskStatus()
        self.status.CopyFrom(task.status)
        self.container_id = ""
        self._executor = executor
        self._node_id = node_id
        self._data_address = data_address
        self._report = report
        self._found = container
        self._changed = asyncio.Event()
        self._removed = False

    @property
    def state(self) -> State:
        return self.status.state

    @property
    def desired(self) -> State:
        return self.task.desired_state

    # -- from the worker ----------------------------------------------------------------

    def update(self, task: objects_pb2.Task) -> None:
        """A newer copy of the task from the dispatcher: its desired state may have moved.
        A manager that is behind on our status hears it again."""
        self.task = task
        if task.status.state > self.status.state:
            self.status.CopyFrom(task.status)
        elif task.status.state < self.status.state:
            self._report(task.id, self.status)
        self._changed.set()

    def remove(self) -> None:
        """The task left the assignment set: shut it down and remove its container."""
        self._removed = True
        self._changed.set()

    # -- the state machine ---------------------------------------------------------------

    async def run(self) -> None:
        """Drive the task until `remove()`, then shut it down and remove its container."""
        if self._found is not None:
            await self._guarded(self._adopt(self._found))
        while not self._removed:
            self._changed.clear()
            await self._guarded(self._step())
        await self._retire()

    async def _guarded(self, work: Any) -> None:
        """Run `work`; an error becomes the task's REJECTED or FAILED status."""
        try:
            await work
        except Exception as exc:
            if isinstance(exc, (RuntimeEngineError, InvalidValue, AgentError)):
                err = str(exc)
            else:
                log.exception("task %s: unexpected error", self.task.id)
                err = f"{type(exc).__name__}: {exc}"
            if self.state < TS.STARTING:
                self._set(TS.REJECTED, "rejected", err=err)
            elif self.state < TS.COMPLETE:
                self._set(TS.FAILED, "failed", err=err)

    async def _step(self) -> None:
        state, desired = self.state, self.desired
        if state >= TS.COMPLETE:
            await self._changed.wait()
        elif desired >= TS.SHUTDOWN:
            await self._shutdown()
        elif state >= TS.STARTING and not self.container_id:
            raise ContainerGone("the task's container is gone from this node")
        elif state >= TS.RUNNING:
            await self._watch()
        else:
            following = self._following(state)
            if following > desired:
                await self._changed.wait()
            else:
                await self._enter(following)

    def _following(self, state: State) -> State:
        if state < TS.ACCEPTED:
            return TS.ACCEPTED
        if state < TS.PREPARING:
            return TS.PREPARING
        if state < TS.READY or not self.container_id:
            return TS.READY
        if state < TS.STARTING:
            return TS.STARTING
        return TS.RUNNING

    async def _enter(self, state: State) -> None:
        if state == TS.ACCEPTED:
            self._set(TS.ACCEPTED, "accepted")
        elif state == TS.PREPARING:
            self._set(TS.PREPARING, "preparing")
        elif state == TS.READY:
            if not self.container_id:
                await self._prepare()
            self._set(TS.READY, "prepared")
        elif state == TS.STARTING:
            self._set(TS.STARTING, "starting")
        else:
            info = await self._executor.start(self.container_id)
            self._set(TS.RUNNING, "started", pid=info["State"]["Pid"])

    async def _prepare(self) -> None:
        # The spec is checked before the pull (a bad task is refused at once) and made again
        # with the image's config, whose StopSignal applies when the task sets none.
        spec = container_spec.runtime_spec(self.task, self._node_id, {}, self._data_address)
        image = await self._executor.image(spec.image)
        spec = container_spec.runtime_spec(
            self.task, self._node_id, image.config, self._data_address
        )
        self.container_id = await self._executor.create(spec, image)

    async def _watch(self) -> None:
        """Wait for the container to end, or for the desired state to move."""
        exited = asyncio.ensure_future(self._executor.wait_exit(self.container_id))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({exited, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            changed.cancel()
        if exited.done() and not exited.cancelled():
            self._exited(exited.result())

    def _exited(self, record: dict[str, Any]) -> None:
        code = int(record["exit_code"])
        if code == 0:
            self._set(TS.COMPLETE, "finished", exit_code=0)
            return
        err = f"task: non-zero exit ({code})"
        if record.get("error"):
            err += f": {record['error']}"
        message = "killed by the OOM killer" if record.get("oom_killed") else "failed"
        self._set(TS.FAILED, message, err=err, exit_code=code)

    async def _shutdown(self) -> None:
        record = None
        if self.container_id and self.state >= TS.STARTING:
            grace = container_spec.stop_grace(self.task)
            record = await self._executor.stop(self.container_id, grace)
        self._set(TS.SHUTDOWN, "shutdown", exit_code=int(record["exit_code"]) if record else 0)

    async def _adopt(self, info: dict[str, Any]) -> None:
        """Take over the container a previous agent left: a running one keeps running."""
        self.container_id = info["Id"]
        status = info["State"]["Status"]
        if self.state >= TS.COMPLETE:
            return  # the manager has the outcome; the container goes with the task
        if status == "running":
            await self._executor.serve_dns(self.container_id)  # its resolver went with the agent
            self._set(TS.RUNNING, "adopted", pid=info["State"]["Pid"])
        elif status == "exited":
            record = await self._executor.wait_exit(self.container_id)
            if self.desired >= TS.SHUTDOWN:
                self._set(TS.SHUTDOWN, "shutdown", exit_code=int(record["exit_code"]))
            else:
                self._exited(record)

    async def _retire(self) -> None:
        try:
            if self.state < TS.COMPLETE:
                await self._shutdown()
            if self.container_id:
                await self._executor.remove(self.container_id)
        except Exception as exc:  # the task is gone: there is no one to tell but the log
            log.warning("task %s: removing its container failed: %s", self.task.id, exc)

    def _set(
        self, state: State, message: str, *, err: str = "", exit_code: int = 0, pid: int = 0
    ) -> None:
        if state < self.state:
            raise AgentError(
                f"task {self.task.id}: refusing to move back from "
                f"{TS.Name(self.state)} to {TS.Name(state)}"
            )
        status = types_pb2.TaskStatus(state=state, message=message, err=err, exit_code=exit_code)
        status.timestamp.GetCurrentTime()
        if self.container_id:
            status.container_status.CopyFrom(
                types_pb2.ContainerStatus(
                    container_id=self.container_id, pid=pid, exit_code=exit_code
                )
            )
            status.port_status.ports.extend(container_spec.published_ports(self.task))
        self.status = status
        self._report(self.task.id, status)
