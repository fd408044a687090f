"""Property: whatever tasks come, stop, go and however often the allocator restarts, no two
live tasks (nor a task and a VIP or the gateway) share an address on a network, and a task
waits for an address only while its network is really full."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.allocator import Allocator
from manager.store import Store
from shoal.v1 import objects_pb2, types_pb2

from .helpers import (
    allocated_network,
    create,
    delete_task,
    ip,
    local_store,
    network,
    pending,
    service,
    set_state,
    task,
)

SUBNETS = ("10.50.0.0/30", "10.60.0.0/28")  # 1 and 13 addresses for tasks and VIPs
Op = tuple[str, int]
# Creations weigh most, so that networks fill up and tasks have to wait for addresses.
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["create"] * 4 + ["create-both", "delete", "stop", "restart"]),
        st.integers(0, 40),
    ),
    max_size=30,
)


def check_addresses(store: Store, nets: list[objects_pb2.Network]) -> None:
    tasks = store.view(lambda tx: tx.list(objects_pb2.Task))
    services = store.view(lambda tx: tx.list(objects_pb2.Service))
    holders: dict[str, dict[str, str]] = defaultdict(dict)
    for t in tasks:
        if not types_pb2.PENDING <= t.status.state <= types_pb2.RUNNING:
            continue
        for attachment in t.networks:
            for addr in attachment.addresses:
                other = holders[attachment.network.id].setdefault(addr, t.id)
                assert other == t.id, f"{addr} held by tasks {other} and {t.id}"
    for s in services:
        for vip in s.endpoint.virtual_ips:
            other = holders[vip.network_id].setdefault(vip.addr, s.id)
            assert other == s.id, f"VIP {vip.addr} of {s.id} also held by {other}"
    stored_networks = {n.id: n for n in store.view(lambda tx: tx.list(objects_pb2.Network))}
    for net in nets:
        stored = stored_networks[net.id]
        gateway = stored.ipam.configs[0].gateway
        for addr in holders[net.id]:
            assert str(ip(addr)) != gateway


async def settle(store: Store) -> None:
    """Returns once the allocator has handled every change made so far: it handles changes
    in order, so it has once a task created now is PENDING."""
    marker = task()
    await create(store, marker)
    await pending(store, marker.id)


async def scenario(operations: list[Op]) -> None:
    store = local_store()
    nets = [network(f"net{i}", subnet=s) for i, s in enumerate(SUBNETS)]
    svc = service("web", networks=[nets[1].id])
    await create(store, *nets, svc)
    created: list[str] = []
    runner = asyncio.create_task(Allocator(store).run())
    try:
        for net in nets:
            await allocated_network(store, net.id)
        for op, arg in operations:
            if op == "create":
                t = task(svc) if arg % 2 else task(networks=[nets[0].id])
                await create(store, t)
                created.append(t.id)
            elif op == "create-both":
                t = task(svc, networks=[nets[0].id])
                await create(store, t)
                created.append(t.id)
            elif op in ("delete", "stop") and created:
                victim = created[arg % len(created)]
                if op == "delete":
                    created.remove(victim)
                    await delete_task(store, victim)
                else:
                    await set_state(store, victim, types_pb2.FAILED)
            elif op == "restart":
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
                runner = asyncio.create_task(Allocator(store).run())
            await settle(store)
            check_addresses(store, nets)
        check_waiting_only_when_full(store, nets)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def check_waiting_only_when_full(store: Store, nets: list[objects_pb2.Network]) -> None:
    tasks = store.view(lambda tx: tx.list(objects_pb2.Task))
    used: dict[str, int] = defaultdict(int)
    for t in tasks:
        if types_pb2.PENDING <= t.status.state <= types_pb2.RUNNING:
            for attachment in t.networks:
                used[attachment.network.id] += len(attachment.addresses)
    used[nets[1].id] += 1  # the service's VIP
    capacity = {nets[0].id: 1, nets[1].id: 13}
    for t in tasks:
        if t.status.state == types_pb2.NEW:
            assert "no free address" in t.status.err, t.status.err
            full = [n for n in nets if n.spec.annotations.name in t.status.err]
            assert full and all(used[n.id] == capacity[n.id] for n in full), t.status.err


@settings(max_examples=60, deadline=None)
@given(OPERATIONS)
def test_no_two_live_tasks_share_an_address(operations: list[Op]) -> None:
    asyncio.run(scenario(operations))
