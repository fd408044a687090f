"""Builders and a running allocator for allocator tests, on a real store."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Iterable, Sequence

from manager.allocator import Allocator
from manager.store import LocalProposer, Store, WriteTx, new_id
from shoal.v1 import objects_pb2, types_pb2
from tests.polling import until_async

TCP = types_pb2.PortConfig.TCP
UDP = types_pb2.PortConfig.UDP


def local_store() -> Store:
    store = Store()
    store.proposer = LocalProposer(store, proposer_id="test")
    return store


@contextlib.asynccontextmanager
async def running(store: Store, chunk: int | None = None) -> AsyncIterator[Allocator]:
    allocator = Allocator(store) if chunk is None else Allocator(store, chunk=chunk)
    task = asyncio.create_task(allocator.run())
    try:
        yield allocator
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def network(
    name: str, subnet: str = "", gateway: str = "", driver: str = "overlay"
) -> objects_pb2.Network:
    result = objects_pb2.Network(id=new_id())
    result.spec.annotations.name = name
    result.spec.driver_config.name = driver
    if subnet:
        result.spec.ipam.configs.add(subnet=subnet, gateway=gateway)
    return result


def port(
    target: int,
    published: int = 0,
    protocol: types_pb2.PortConfig.Protocol.ValueType = TCP,
    mode: types_pb2.PortConfig.PublishMode.ValueType = types_pb2.PortConfig.INGRESS,
) -> types_pb2.PortConfig:
    return types_pb2.PortConfig(
        target_port=target, published_port=published, protocol=protocol, publish_mode=mode
    )


def service(
    name: str,
    networks: Sequence[str] = (),
    ports: Iterable[types_pb2.PortConfig] = (),
    dnsrr: bool = False,
) -> objects_pb2.Service:
    result = objects_pb2.Service(id=new_id())
    result.spec.annotations.name = name
    result.spec.task.container.image = "busybox"
    for network_id in networks:
        result.spec.task.networks.add(target=network_id)
    result.spec.endpoint.ports.extend(ports)
    if dnsrr:
        result.spec.endpoint.mode = types_pb2.EndpointSpec.DNSRR
    return result


def task(
    svc: objects_pb2.Service | None = None,
    networks: Sequence[str] = (),
    desired: types_pb2.TaskState.ValueType = types_pb2.RUNNING,
) -> objects_pb2.Task:
    result = objects_pb2.Task(id=new_id(), desired_state=desired)
    if svc is not None:
        result.service_id = svc.id
        result.spec.CopyFrom(svc.spec.task)
    for network_id in networks:
        result.spec.networks.add(target=network_id)
    result.status.state = types_pb2.NEW
    return result


async def create(
    store: Store, *objects: objects_pb2.Network | objects_pb2.Service | objects_pb2.Task
) -> None:
    def write(tx: WriteTx) -> None:
        for obj in objects:
            tx.create(obj)

    await store.update(write)


def get_task(store: Store, task_id: str) -> objects_pb2.Task | None:
    return store.view(lambda tx: tx.get(objects_pb2.Task, task_id))


def get_network(store: Store, network_id: str) -> objects_pb2.Network | None:
    return store.view(lambda tx: tx.get(objects_pb2.Network, network_id))


def get_service(store: Store, service_id: str) -> objects_pb2.Service | None:
    return store.view(lambda tx: tx.get(objects_pb2.Service, service_id))


async def pending(store: Store, task_id: str) -> objects_pb2.Task:
    """The task once the allocator moved it to PENDING."""

    found = await until_async(
        lambda: get_task(store, task_id),
        f"task {task_id} to be PENDING",
        holds=lambda t: t is not None and t.status.state == types_pb2.PENDING,
    )
    assert found is not None
    return found


async def waiting(store: Store, task_id: str) -> objects_pb2.Task:
    """The task once the allocator wrote why it cannot allocate it (still NEW)."""

    found = await until_async(
        lambda: get_task(store, task_id),
        f"task {task_id} to carry an allocation error",
        holds=lambda t: t is not None and t.status.err,
    )
    assert found is not None and found.status.state == types_pb2.NEW
    return found


async def allocated_network(store: Store, network_id: str) -> objects_pb2.Network:
    found = await until_async(
        lambda: get_network(store, network_id),
        f"network {network_id} to be allocated",
        holds=lambda n: n is not None and "vni" in n.driver_state.options,
    )
    assert found is not None
    return found


def address_of(t: objects_pb2.Task, network_id: str) -> str:
    for attachment in t.networks:
        if attachment.network.id == network_id:
            (addr,) = attachment.addresses
            return addr
    raise AssertionError(f"task {t.id} has no attachment to network {network_id}")


def ip(cidr: str) -> ipaddress.IPv4Address:
    address = ipaddress.ip_interface(cidr).ip
    assert isinstance(address, ipaddress.IPv4Address)
    return address


async def delete_task(store: Store, task_id: str) -> None:
    await store.update(lambda tx: tx.delete(objects_pb2.Task, task_id))


async def set_state(store: Store, task_id: str, state: types_pb2.TaskState.ValueType) -> None:
    def write(tx: WriteTx) -> None:
        t = tx.get(objects_pb2.Task, task_id)
        assert t is not None
        t.status.state = state
        tx.update(t)

    await store.update(write)
