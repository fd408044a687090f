"""The write client of benchmarks/raft.py, run inside a lab machine: the same Python gRPC
client (grpc.aio, unary calls, K in flight) against Shoal's Control API or etcd's KV API.

    kv_client.py shoal unix:///…/swarmd.sock --count N --inflight K
    kv_client.py etcd 10.77.0.10:2379 --count N --inflight K
    kv_client.py shoal|etcd TARGET,TARGET… --first-write   (failover: retry until one lands)
    kv_client.py etcd TARGET,TARGET… --leader              (the etcd leader's endpoint)

A Shoal write is a service created (no replicas: the write is all), an etcd write a Put of
a key of the same name with a 64-byte value. Prints one JSON line: seconds and count, or
the wall-clock time (time.time()) at which the first write landed, or the leader.

etcd's messages are built with protobuf's dynamic descriptors from the few fields used
(etcdserverpb.PutRequest key=1 value=2; StatusResponse header=1 leader=4; ResponseHeader
member_id=2): no etcd client library or generated code needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

Write = Callable[[str], Awaitable[Any]]
CALL_TIMEOUT_S = 5.0
# Failover: one try waits this long before the next target is tried.
ATTEMPT_TIMEOUT_S = 0.5


def _etcd_messages() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(
        name="shoal_bench_etcd.proto", package="etcdserverpb", syntax="proto3"
    )
    fields = descriptor_pb2.FieldDescriptorProto
    optional = fields.LABEL_OPTIONAL

    def message(name: str, *spec: tuple[str, int, int, str]) -> None:
        added = proto.message_type.add(name=name)
        for field_name, number, kind, type_name in spec:
            field = added.field.add(name=field_name, number=number, type=kind, label=optional)
            if type_name:
                field.type_name = type_name

    message("PutRequest", ("key", 1, fields.TYPE_BYTES, ""), ("value", 2, fields.TYPE_BYTES, ""))
    message("ResponseHeader", ("member_id", 2, fields.TYPE_UINT64, ""))
    message("PutResponse", ("header", 1, fields.TYPE_MESSAGE, ".etcdserverpb.ResponseHeader"))
    message("StatusRequest")
    message(
        "StatusResponse",
        ("header", 1, fields.TYPE_MESSAGE, ".etcdserverpb.ResponseHeader"),
        ("leader", 4, fields.TYPE_UINT64, ""),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    names = ("PutRequest", "PutResponse", "StatusRequest", "StatusResponse")
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"etcdserverpb.{name}"))
        for name in names
    }


def etcd_writer(channel: grpc.aio.Channel) -> Write:
    messages = _etcd_messages()
    put = channel.unary_unary(
        "/etcdserverpb.KV/Put",
        request_serializer=messages["PutRequest"].SerializeToString,
        response_deserializer=messages["PutResponse"].FromString,
    )
    value = os.urandom(32).hex().encode()

    async def write(name: str) -> Any:
        request = messages["PutRequest"](key=name.encode(), value=value)
        return await put(request, timeout=CALL_TIMEOUT_S)

    return write


def shoal_writer(channel: grpc.aio.Channel) -> Write:
    from shoal.v1 import control_pb2, control_pb2_grpc, specs_pb2

    stub = control_pb2_grpc.ControlStub(channel)

    async def write(name: str) -> Any:
        spec = specs_pb2.ServiceSpec()
        spec.annotations.name = name
        spec.task.container.image = "busybox"
        spec.replicated_service.replicas = 0
        return await stub.CreateService(
            control_pb2.CreateServiceRequest(spec=spec), timeout=CALL_TIMEOUT_S
        )

    return write


WRITERS = {"shoal": shoal_writer, "etcd": etcd_writer}


async def timed_writes(write: Write, prefix: str, count: int, inflight: int) -> float:
    numbers = iter(range(count))

    async def worker() -> None:
        for number in numbers:
            await write(f"{prefix}-{number}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return time.perf_counter() - began


async def first_write(writers: list[Write], name: str, deadline_s: float) -> float:
    """Try each target in turn, each try short and under a name of its own (one that timed
    out may still land), until one takes a write; the wall-clock time it landed."""
    end = time.monotonic() + deadline_s
    attempt = 0
    while time.monotonic() < end:
        for write in writers:
            attempt += 1
            try:
                await asyncio.wait_for(write(f"{name}-{attempt}"), ATTEMPT_TIMEOUT_S)
            except (grpc.aio.AioRpcError, TimeoutError):
                continue
            return time.time()
        await asyncio.sleep(0.005)
    raise SystemExit(f"no write landed within {deadline_s} s")


async def etcd_leader(targets: list[str]) -> str:
    messages = _etcd_messages()
    members: dict[int, str] = {}
    leader = 0
    for target in targets:
        async with grpc.aio.insecure_channel(target) as channel:
            status = channel.unary_unary(
                "/etcdserverpb.Maintenance/Status",
                request_serializer=messages["StatusRequest"].SerializeToString,
                response_deserializer=messages["StatusResponse"].FromString,
            )
            try:
                answer = await status(messages["StatusRequest"](), timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                continue
            members[answer.header.member_id] = target
            leader = answer.leader or leader
    if leader not in members:
        raise SystemExit(f"no etcd leader among {targets}")
    return members[leader]


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=sorted(WRITERS))
    parser.add_argument("targets")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--prefix", default=f"bench-{os.getpid()}")
    parser.add_argument("--first-write", action="store_true")
    parser.add_argument("--leader", action="store_true")
    args = parser.parse_args()
    targets = args.targets.split(",")
    if args.leader:
        print(json.dumps({"leader": await etcd_leader(targets)}))
        return 0
    channels = [grpc.aio.insecure_channel(target) for target in targets]
    try:
        writers = [WRITERS[args.kind](channel) for channel in channels]
        if args.first_write:
            landed = await first_write(writers, args.prefix, deadline_s=60)
            print(json.dumps({"landed": landed}))
        else:
            seconds = await timed_writes(writers[0], args.prefix, args.count, args.inflight)
            print(json.dumps({"seconds": seconds, "count": args.count}))
    finally:
        for channel in channels:
            await channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
