"""A Shoal process forks children (container shims, nft, swarmd) while its gRPC calls are
in flight; with grpcio's fork support on, about a quarter of them abort before exec
(grpc/grpc#43055). Importing `common` first turns it off: none may abort."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FORKS = 200

PROGRAM = textwrap.dedent(
    f"""
    import common  # first, as every Shoal program: before grpc
    import asyncio, subprocess
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{{port}}")
        stub = health_pb2_grpc.HealthStub(channel)
        done = asyncio.Event()

        async def calls() -> None:
            while not done.is_set():
                await stub.Check(health_pb2.HealthCheckRequest())

        callers = [asyncio.create_task(calls()) for _ in range(8)]
        failed = 0
        for _ in range({FORKS}):
            child = await asyncio.to_thread(
                subprocess.run, ["/bin/true"], preexec_fn=lambda: None, capture_output=True
            )
            failed += child.returncode != 0
        done.set()
        await asyncio.gather(*callers)
        await channel.close()
        await server.stop(None)
        print(failed)

    asyncio.run(main())
    """
)


def test_children_forked_during_grpc_calls_reach_exec() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "0", run.stderr[-2000:]
    assert "Check failed" not in run.stderr
