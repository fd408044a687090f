"""The agent as a process of its own, for tests that kill it (-9) and start it again.

    python agent_program.py --node-id ID --manager HOST:PORT --root DIR
        [--insecure-registry HOST:PORT] [--cgroup-parent PATH] [--label KEY=VALUE]

It speaks plain gRPC (no TLS: the tests' fake dispatcher runs inside the same lab
machine) and runs until SIGTERM or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from agent.agent import Agent, AgentConfig  # first: it keeps gRPC's fork support off


def parse() -> AgentConfig:
    import grpc  # after the agent (see agent/__init__.py)

    parser = argparse.ArgumentParser()
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--manager", action="append", required=True)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--insecure-registry", action="append", default=[])
    parser.add_argument("--cgroup-parent")
    parser.add_argument("--label", action="append", default=[])
    args = parser.parse_args()
    return AgentConfig(
        node_id=args.node_id,
        managers=tuple(args.manager),
        channel_factory=grpc.aio.insecure_channel,
        engine_root=args.root,
        labels=dict(item.split("=", 1) for item in args.label),
        insecure_registries=tuple(args.insecure_registry),
        cgroup_parent=args.cgroup_parent,
    )


async def serve(config: AgentConfig) -> None:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    running = asyncio.create_task(agent.run())
    await asyncio.wait(
        {running, asyncio.create_task(stopping.wait())}, return_when="FIRST_COMPLETED"
    )
    await agent.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(parse()))
