"""A small Control API client for manager tests (swarmctl arrives with issue 5).

    python control_tool.py SOCKET_OR_TLS COMMAND ARGS...

SOCKET_OR_TLS is the manager's unix socket path, or `tls:<state dir>@<host:port>` to call a
manager's cluster port with the node certificate kept in <state dir>. Output is JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from manager.ca.tls import MANAGER_CHANNEL_OPTIONS
from node.identity import Identity
from shoal.v1 import control_pb2, control_pb2_grpc, specs_pb2, types_pb2


def channel(target: str) -> grpc.aio.Channel:
    if target.startswith("tls:"):
        state_dir, _, address = target[4:].partition("@")
        credentials, _ = Identity(Path(state_dir)).load()
        return grpc.aio.secure_channel(
            address, credentials.channel_credentials(), MANAGER_CHANNEL_OPTIONS
        )
    return grpc.aio.insecure_channel(f"unix://{target}")


def service_spec(
    name: str, replicas: int, image: str, args: list[str] | None = None
) -> specs_pb2.ServiceSpec:
    spec = specs_pb2.ServiceSpec()
    spec.annotations.name = name
    spec.task.container.image = image
    spec.task.container.args.extend(args or [])
    spec.replicated_service.replicas = replicas
    spec.task.restart.delay.seconds = 0
    return spec


async def run(target: str, command: str, args: list[str]) -> Any:
    async with channel(target) as chan:
        control = control_pb2_grpc.ControlStub(chan)
        if command == "nodes":
            nodes = (await control.ListNodes(control_pb2.ListNodesRequest())).nodes
            return [
                {
                    "id": n.id,
                    "hostname": n.description.hostname,
                    "role": types_pb2.NodeRole.Name(n.role),
                    "state": types_pb2.NodeStatus.State.Name(n.status.state),
                    "availability": specs_pb2.NodeSpec.Availability.Name(n.spec.availability),
                    "raft_addr": n.manager_status.raft_addr,
                    "leader": n.manager_status.leader,
                }
                for n in nodes
            ]
        if command in ("drain", "activate"):
            node = (await control.GetNode(control_pb2.GetNodeRequest(node_id=args[0]))).node
            node.spec.availability = (
                specs_pb2.NodeSpec.DRAIN if command == "drain" else specs_pb2.NodeSpec.ACTIVE
            )
            await control.UpdateNode(
                control_pb2.UpdateNodeRequest(
                    node_id=node.id, node_version=node.meta.version, spec=node.spec
                )
            )
            return {"ok": True}
        if command == "heartbeat":
            cluster = (await control.ListClusters(control_pb2.ListClustersRequest())).clusters[0]
            cluster.spec.dispatcher.heartbeat_period.FromMilliseconds(int(float(args[0]) * 1000))
            await control.UpdateCluster(
                control_pb2.UpdateClusterRequest(
                    cluster_id=cluster.id, cluster_version=cluster.meta.version, spec=cluster.spec
                )
            )
            return {"ok": True}
        if command == "create":
            spec = service_spec(args[0], int(args[1]), args[2], args[3:])
            created = await control.CreateService(control_pb2.CreateServiceRequest(spec=spec))
            return {"id": created.service.id}
        if command in ("scale", "update-image", "rollback"):
            service = (
                await control.GetService(control_pb2.GetServiceRequest(service_id=args[0]))
            ).service
            spec = service.spec
            if command == "scale":
                spec.replicated_service.replicas = int(args[1])
            elif command == "update-image":
                spec.task.container.image = args[1]
                spec.update.parallelism = int(args[2]) if len(args) > 2 else 1
                spec.update.failure_action = types_pb2.UpdateConfig.ROLLBACK
                spec.update.monitor.FromMilliseconds(500)
            update = control_pb2.UpdateServiceRequest(
                service_id=service.id,
                service_version=service.meta.version,
                spec=spec,
                rollback=control_pb2.UpdateServiceRequest.PREVIOUS
                if command == "rollback"
                else control_pb2.UpdateServiceRequest.NONE,
            )
            await control.UpdateService(update)
            return {"ok": True}
        if command == "services":
            services = (await control.ListServices(control_pb2.ListServicesRequest())).services
            return sorted(s.spec.annotations.name for s in services)
        if command == "service":
            service = (
                await control.GetService(control_pb2.GetServiceRequest(service_id=args[0]))
            ).service
            return MessageToDict(service)
        if command == "tasks":
            listing = control_pb2.ListTasksRequest()
            if args:
                listing.filters.service_ids.append(args[0])
            tasks = (await control.ListTasks(listing)).tasks
            return [
                {
                    "id": t.id,
                    "slot": t.slot,
                    "node_id": t.node_id,
                    "desired": types_pb2.TaskState.Name(t.desired_state),
                    "state": types_pb2.TaskState.Name(t.status.state),
                    "image": t.spec.container.image,
                    "err": t.status.err,
                }
                for t in tasks
            ]
        if command == "burst":  # create services one after another; print each acknowledged
            acked = []
            for i in range(int(args[1])):
                name = f"{args[0]}-{i}"
                try:
                    await control.CreateService(
                        control_pb2.CreateServiceRequest(spec=service_spec(name, 0, "busybox")),
                        timeout=5,
                    )
                except grpc.aio.AioRpcError as exc:
                    print(json.dumps({"failed": name, "code": exc.code().name}), flush=True)
                    continue
                acked.append(name)
                print(json.dumps({"acked": name}), flush=True)
            return {"acknowledged": len(acked)}
        raise SystemExit(f"unknown command {command}")


async def run_retrying(target: str, command: str, args: list[str]) -> Any:
    """Read-modify-write commands race the dispatcher's own node and task writes: a stale
    version is refused ("update out of sequence"), so read again and retry, as a user would."""
    for attempt in range(10):
        try:
            return await run(target, command, args)
        except grpc.aio.AioRpcError as exc:
            stale = exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "out of sequence" in (
                exc.details() or ""
            )
            if not stale or attempt == 9:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    try:
        print(json.dumps(asyncio.run(run_retrying(sys.argv[1], sys.argv[2], sys.argv[3:]))))
    except grpc.aio.AioRpcError as exc:
        print(json.dumps({"error": exc.code().name, "details": exc.details()}))
        sys.exit(3)
