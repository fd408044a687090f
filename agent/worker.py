"""The node's tasks kept in line with its assignment set: one controller per task.

A complete set (the first of every session) is reconciled with what is on the node: tasks
that left it are shut down and their containers removed, containers of tasks we hold are
adopted as they are (a restarted agent restarts nothing), and containers of tasks nobody
assigned us any more, left by an earlier agent, are stopped and removed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from agent import metrics
from agent.attachments import Attachments
from agent.controller import TaskController
from agent.executor import Executor, task_id_of
from agent.networks import OverlayNetworks
from shoal.v1 import dispatcher_pb2, objects_pb2, types_pb2

log = logging.getLogger(__name__)

Report = Callable[[str, types_pb2.TaskStatus], None]
STATE_NAMES = [name.lower() for name, _ in types_pb2.TaskState.items()]


class Worker:
    def __init__(
        self,
        executor: Executor,
        node_id: str,
        report: Report,
        data_address: str = "",
        endpoints_changed: Callable[[Sequence[str]], Awaitable[None]] | None = None,
        attachments: Attachments | None = None,
    ) -> None:
        """`data_address`: this node's address for overlay traffic (its VXLAN endpoint);
        `endpoints_changed(network_ids)`: called when those networks' endpoints changed;
        `attachments`: where network attachments of standalone containers go (they run no
        container of their own)."""
        self._executor = executor
        self._node_id = node_id
        self._data_address = data_address
        self.overlays = OverlayNetworks(executor, node_id, data_address, endpoints_changed)
        self.attachments = attachments
        self._report_status = report
        self._controllers: dict[str, TaskController] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}  # also of controllers being retired
        self._chores: set[asyncio.Task[None]] = set()

    async def assign(self, tasks: Sequence[objects_pb2.Task]) -> None:
        """The complete set: reconcile the node with it."""
        await self.overlays.learn(tasks)
        if self.attachments is not None:
            tasks = self.attachments.take(tasks, complete=True)
        wanted = {task.id: task for task in tasks}
        for task_id in [t for t in self._controllers if t not in wanted]:
            self._retire(task_id)
        found: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for info in await self._executor.task_containers():
            found[task_id_of(info)].append(info)
        for task in wanted.values():
            controller = self._controllers.get(task.id)
            if controller is not None:
                controller.update(task)
                continue
            infos = found.get(task.id, [])
            self._start(task, infos[-1] if infos else None)
            for info in infos[:-1]:  # an earlier agent's duplicates: keep only the newest
                self._chore(self._remove_stray(info))
        for task_id, infos in found.items():
            if task_id not in wanted and task_id not in self._runs:
                for info in infos:
                    self._chore(self._remove_stray(info))
        self._count()

    async def update(self, updated: Sequence[objects_pb2.Task], removed: Sequence[str]) -> None:
        """Changes to the set: new tasks start, known ones hear their new desired state."""
        await self.overlays.learn(updated)
        if self.attachments is not None:
            updated = self.attachments.take(updated)
            self.attachments.removed(removed)
        for task_id in removed:
            self._retire(task_id)
        for task in updated:
            controller = self._controllers.get(task.id)
            if controller is None:
                self._start(task, None)
            else:
                controller.update(task)
        self._count()

    async def peers(
        self,
        updated: Sequence[dispatcher_pb2.NetworkEndpoints],
        removed: Sequence[str],
        complete: bool = False,
    ) -> None:
        """Where the other endpoints of this node's overlay networks run."""
        await self.overlays.apply(updated, removed, complete)

    async def close(self) -> None:
        """Stop driving tasks; their containers keep running for the next agent to adopt."""
        pending = [*self._runs.values(), *self._chores]
        for item in pending:
            item.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _start(self, task: objects_pb2.Task, container: dict[str, Any] | None) -> None:
        controller = TaskController(
            task, self._executor, self._node_id, self._report, container, self._data_address
        )
        self._controllers[task.id] = controller
        run = asyncio.create_task(self._run(controller, self._runs.get(task.id)))
        self._runs[task.id] = run
        run.add_done_callback(lambda done: self._run_done(task.id, done))

    async def _run(self, controller: TaskController, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:  # the same task, retired and assigned again: let it finish
            await asyncio.wait({previous})
        await controller.run()

    def _run_done(self, task_id: str, run: asyncio.Task[None]) -> None:
        if self._runs.get(task_id) is run:
            del self._runs[task_id]
        if not run.cancelled() and run.exception() is not None:
            log.error("task %s: controller failed", task_id, exc_info=run.exception())

    def _retire(self, task_id: str) -> None:
        controller = self._controllers.pop(task_id, None)
        if controller is not None:
            controller.remove()

    async def _remove_stray(self, info: dict[str, Any]) -> None:
        log.info(
            "removing container %s of task %s, not assigned here", info["Id"][:12], task_id_of(info)
        )
        try:
            await self._executor.stop(info["Id"], None)
            await self._executor.remove(info["Id"])
        except Exception as exc:
            log.warning("removing container %s failed: %s", info["Id"][:12], exc)

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        chore = asyncio.create_task(work)
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    def _report(self, task_id: str, status: types_pb2.TaskStatus) -> None:
        self._report_status(task_id, status)
        self._count()

    def _count(self) -> None:
        counts = collections.Counter(
            types_pb2.TaskState.Name(c.state).lower() for c in self._controllers.values()
        )
        for name in STATE_NAMES:
            metrics.TASKS.labels(name).set(counts[name])
        metrics.ASSIGNMENTS.set(len(self._controllers))
