"""The agent of a Shoal node: a session with the managers, and the node's tasks run on the
node-local runtime engine, in-process.

swarmd (node/) builds the AgentConfig: it owns the node's identity and passes the channel
factory that carries its mTLS credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import GRPC_FORK_SUPPORT
from agent.attachments import Attachments
from agent.discovery import Discovery
from agent.errors import ConfigError
from agent.executor import Executor, task_id_of
from agent.ingress import IngressMesh
from agent.log_subscriptions import LogSubscriptions
from agent.managers import Managers
from agent.node_description import describe
from agent.reporter import StatusReporter
from agent.session import ChannelFactory, Session
from agent.worker import Worker
from runtime import metrics as runtime_metrics
from runtime.config import DEFAULT_ROOT, EngineConfig
from runtime.engine_factory import make_engine
from runtime.errors import RuntimeEngineError
from runtime.image.store import ImageStore
from runtime.network import cluster_socket
from shoal.v1 import objects_pb2, types_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    node_id: str
    # Dispatcher addresses ("host:port") to try first; each session brings the current list.
    managers: tuple[str, ...]
    # Opens a channel to a manager address (with the node's mTLS credentials).
    channel_factory: ChannelFactory
    engine_root: Path = DEFAULT_ROOT
    hostname: str = ""  # "" = the system's
    # The node's engine labels (engine.labels.X in placement constraints).
    labels: Mapping[str, str] = field(default_factory=dict)
    # Registries spoken to over plain HTTP ("host:port").
    insecure_registries: tuple[str, ...] = ()
    # Where containers' cgroups go; None = "<the agent's own cgroup>/shoal".
    cgroup_parent: str | None = None
    # Called with this node's object from each session message (swarmd follows role changes).
    on_node: Callable[[objects_pb2.Node], None] | None = None
    # This node's address for overlay traffic (its VXLAN tunnel endpoint): the advertise
    # address; "" = tasks on overlay networks are refused.
    data_address: str = ""


def _check_grpc_fork_support() -> None:
    if os.environ.get(GRPC_FORK_SUPPORT, "").lower() not in ("false", "0"):
        raise ConfigError(
            f"gRPC's fork support is on: containers cannot start from this process; set "
            f"{GRPC_FORK_SUPPORT}=false before grpc is imported (or import agent first)"
        )


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        _check_grpc_fork_support()
        if not config.node_id:
            raise ConfigError("the agent needs the node's id")
        self.config = config
        runtime_metrics.enable()
        engine_config = EngineConfig(
            root=config.engine_root,
            insecure_registries=config.insecure_registries,
            cgroup_parent=config.cgroup_parent,
        )
        self.discovery = Discovery(lambda: self.worker.overlays)
        engine = make_engine(engine_config, resolver=self.discovery)
        self.executor = Executor(engine, ImageStore(engine_config))
        self.logs = LogSubscriptions(config.node_id, engine)
        self.reporter = StatusReporter()
        self._engine_config = engine_config
        self.attachments = Attachments(
            lambda: self.session.channel,
            self.discovery,
            self.reporter.report,
            config.data_address,
            self._container_exists,
            time.time,
            lambda network_id: self.worker.overlays.endpoints(network_id) is not None,
        )
        self.worker = Worker(
            self.executor,
            config.node_id,
            self.reporter.report,
            config.data_address,
            self._endpoints_changed,
            self.attachments,
        )
        self.mesh = IngressMesh(
            self.executor, engine_config, self.worker.overlays, config.data_address
        )
        self._chores: set[asyncio.Task[None]] = set()
        self._describe()  # bad labels fail here rather than at every session
        self.session = Session(
            Managers(config.managers),
            config.channel_factory,
            self._describe,
            self.worker,
            self.reporter,
            on_node=self._on_node,
            logs=self.logs,
        )
        self._running: asyncio.Task[None] | None = None

    async def _container_exists(self, container_id: str) -> bool:
        try:
            await self.executor.inspect(container_id)
        except RuntimeEngineError:
            return False
        return True

    async def _serve_standalone(self) -> None:
        """The `shoal` commands' containers on cluster networks, served again (their
        resolver's sockets went with the swarmd that had them)."""
        for info in await self.executor.run(self.executor.engine.list):
            if not task_id_of(info):
                try:
                    await self.executor.serve_dns(info["Id"])
                except Exception as exc:  # it may have just ended
                    log.warning("container %s not served: %s", info["Id"][:12], exc)

    async def _endpoints_changed(self, network_ids: Sequence[str]) -> None:
        self.attachments.endpoints_changed(network_ids)
        await self.discovery.refresh(network_ids)
        await self.mesh.refresh(network_ids)

    def _on_node(self, node: objects_pb2.Node) -> None:
        if self.config.on_node is not None:
            self.config.on_node(node)
        self._chore(self.mesh.node(node))

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        chore = asyncio.ensure_future(work)
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    def _describe(self) -> types_pb2.NodeDescription:
        return describe(self.config.hostname, self.config.labels, self.config.cgroup_parent)

    async def run(self) -> None:
        """Serve the node until cancelled (or `stop()`); containers outlive the agent."""
        self._running = asyncio.current_task()
        self.discovery.bind(asyncio.get_running_loop())
        socket_path = cluster_socket.socket_path(self._engine_config)
        local = await cluster_socket.serve(socket_path, self.attachments.handle)
        self._chore(self._serve_standalone())
        try:
            await self.session.run()
        finally:
            local.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            for chore in list(self._chores):
                chore.cancel()
            await self.attachments.close()
            await self.discovery.close()
            await self.worker.close()
            self.executor.close()
            self.logs.close()

    async def stop(self) -> None:
        """End `run()` and wait for it; tasks' containers keep running."""
        running, self._running = self._running, None
        if running is not None and not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
