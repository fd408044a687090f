"""An agent process inside a lab machine, against a fake dispatcher served inside the same
machine's network namespace (127.0.0.1 there), with the real runtime and lab registry."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.namespaces import entered_netns, run_in_netns
from deploy.netns_driver import Machine
from runtime.config import EngineConfig
from runtime.container.engine import Engine
from runtime.engine_factory import make_engine
from runtime.errors import NotFound
from tests.integration.conftest import SWARM_MACHINE, LabHandle
from tests.polling import until
from tests.unit.agent.fake_dispatcher import FakeDispatcher, serve

PROGRAM = Path(__file__).with_name("agent_program.py")
NODE_ID = "node-under-test"


@dataclass
class AgentLab:
    """One lab machine, a fake dispatcher in it, and agent processes started on demand."""

    lab: LabHandle
    machine: Machine
    dispatcher: FakeDispatcher
    engine_config: EngineConfig
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def image(self) -> str:
        return f"{self.lab.registry}/busybox:latest"

    @property
    def engine(self) -> Engine:
        """The machine's engine, for looking at its containers from the test."""
        return make_engine(self.engine_config)

    def start_agent(self) -> subprocess.Popen[Any]:
        log = open(self.engine_config.root.parent / f"agent{len(self.processes)}.log", "ab")  # noqa: SIM115
        argv = [
            sys.executable,
            str(PROGRAM),
            f"--node-id={NODE_ID}",
            f"--manager={self.dispatcher.address}",
            f"--root={self.engine_config.root}",
            f"--insecure-registry={self.lab.registry}",
            f"--cgroup-parent={self.engine_config.cgroup_parent}",
            "--label=zone=lab",
        ]
        # Through swarm-machine (it enters the machine and execs the agent): no Python code
        # runs in a forked copy of this process, whose gRPC threads would not survive it.
        with log:
            process = subprocess.Popen(
                [SWARM_MACHINE, "ssh", self.machine.name, "--", *argv], stdout=log, stderr=log
            )
        self.processes.append(process)
        return process

    def kill_agents(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(10)

    def log(self) -> str:
        logs = sorted(self.engine_config.root.parent.glob("agent*.log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)

    def remove_containers(self) -> None:
        """Remove every container of the machine's engine (their network lives in it)."""

        def remove(engine: Engine, container_id: str) -> bool:
            with contextlib.suppress(NotFound):  # gone already
                engine.remove(container_id, force=True)
            return True

        def work() -> None:
            engine = self.engine
            for info in engine.list(all=True):
                until(  # see Executor.remove: the shim's clean-up races
                    partial(remove, engine, info["Id"]),
                    f"container {info['Id'][:12]} removed",
                    timeout_s=5,
                    interval_s=0.1,
                    max_tries=5,
                    retry_on=(OSError,),
                )

        run_in_netns(self.machine.name, work)


@pytest.fixture
async def agent_lab(make_lab: Callable[[int], LabHandle]) -> AsyncIterator[AgentLab]:
    lab = await asyncio.to_thread(make_lab, 1)  # pyroute2 wants a thread without a running loop
    (machine,) = lab.machines
    dispatcher = FakeDispatcher("manager", heartbeat_period=1.0)
    server: grpc.aio.Server = await serve(dispatcher, binding=lambda: entered_netns(machine.name))
    config = EngineConfig(
        root=machine.state_dir / "agent" / "engine",
        insecure_registries=(lab.registry,),
        cgroup_parent=f"{machine.cgroup_parent}/shoal",
    )
    config.root.mkdir(parents=True)
    made = AgentLab(lab, machine, dispatcher, config)
    try:
        yield made
    finally:
        made.kill_agents()
        await server.stop(0)
        made.remove_containers()
