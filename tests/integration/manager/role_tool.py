"""Role changes and certificate renewal against real managers, for the role tests.

    python role_tool.py SOCKET demote|promote NODE_ID     Control UpdateNode desired_role
    python role_tool.py SOCKET remove NODE_ID             Control RemoveNode
    python role_tool.py SOCKET node NODE_ID               the node as JSON
    python role_tool.py STATE_DIR renew HOST:PORT...      one renewal with the node's
                                                          certificate (not saved); its role

SOCKET is a manager's Control unix socket. Output is one line of JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from node.identity import Identity
from node.renewal import RenewalError, renew_through
from shoal.v1 import control_pb2, control_pb2_grpc, types_pb2


async def control(socket: str, command: str, node_id: str) -> Any:
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        stub = control_pb2_grpc.ControlStub(channel)
        if command == "remove":
            await stub.RemoveNode(control_pb2.RemoveNodeRequest(node_id=node_id), timeout=30)
            return {"ok": True}
        node = (await stub.GetNode(control_pb2.GetNodeRequest(node_id=node_id))).node
        if command == "node":
            return {
                "role": types_pb2.NodeRole.Name(node.role),
                "desired_role": types_pb2.NodeRole.Name(node.spec.desired_role),
                "raft_addr": node.manager_status.raft_addr,
                "message": node.status.message,
            }
        node.spec.desired_role = types_pb2.WORKER if command == "demote" else types_pb2.MANAGER
        request = control_pb2.UpdateNodeRequest(
            node_id=node.id, node_version=node.meta.version, spec=node.spec
        )
        await stub.UpdateNode(request, timeout=30)
        return {"ok": True}


async def renew(state_dir: str, managers: list[str]) -> Any:
    current, _ = Identity(Path(state_dir)).load()
    try:
        renewed = await renew_through(managers, current)
    except RenewalError as exc:
        return {"error": "RenewalError", "details": str(exc)}
    identity = renewed.identity
    return {"node_id": identity.node_id, "role": identity.role.ou}


def main(target: str, command: str, args: list[str]) -> Any:
    if command == "renew":
        return asyncio.run(renew(target, args))
    return asyncio.run(control(target, command, args[0]))


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
    except grpc.aio.AioRpcError as exc:
        print(json.dumps({"error": exc.code().name, "details": exc.details()}))
        sys.exit(3)
