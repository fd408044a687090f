"""The agent of a Shoal node: a session with the managers, and the node's tasks run on the
node-local runtime engine, in-process.

swarmd (node/) builds the AgentConfig: it owns the node's identity and passes the channel
factory that carries its mTLS credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent import GRPC_FORK_SUPPORT
from agent.discovery import Discovery
from agent.errors import ConfigError
from agent.executor import Executor
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
from runtime.image.store import ImageStore
from shoal.v1 import objects_pb2, types_pb2


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
        self.worker = Worker(
            self.executor,
            config.node_id,
            self.reporter.report,
            config.data_address,
            self._endpoints_changed,
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

    async def _endpoints_changed(self, network_ids: Sequence[str]) -> None:
        await self.discovery.refresh(network_ids)
        await self.mesh.refresh(network_ids)

    def _on_node(self, node: objects_pb2.Node) -> None:
        if self.config.on_node is not None:
            self.config.on_node(node)
        chore = asyncio.ensure_future(self.mesh.node(node))
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    def _describe(self) -> types_pb2.NodeDescription:
        return describe(self.config.hostname, self.config.labels, self.config.cgroup_parent)

    async def run(self) -> None:
        """Serve the node until cancelled (or `stop()`); containers outlive the agent."""
        self._running = asyncio.current_task()
        self.discovery.bind(asyncio.get_running_loop())
        try:
            await self.session.run()
        finally:
            for chore in list(self._chores):
                chore.cancel()
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
