"""The allocator on a real store: networks, task addresses, VIPs, ingress ports, restarts."""

from __future__ import annotations

from prometheus_client import REGISTRY

from manager.allocator import FIRST_DYNAMIC_PORT, FIRST_VNI, INGRESS_NETWORK_NAME, VNI_OPTION
from manager.allocator.state import ingress_address
from manager.store import WriteTx
from shoal.v1 import objects_pb2, types_pb2
from tests.polling import until_async

from .helpers import (
    UDP,
    address_of,
    allocated_network,
    create,
    delete_task,
    get_network,
    get_service,
    get_task,
    ip,
    local_store,
    network,
    pending,
    port,
    running,
    service,
    set_state,
    task,
    waiting,
)


async def test_a_task_without_networks_goes_pending_at_once() -> None:
    store = local_store()
    async with running(store):
        t = task()
        await create(store, t)
        allocated = await pending(store, t.id)
    assert allocated.status.message == "pending task scheduling"
    assert not allocated.networks
    assert allocated.status.HasField("timestamp")


async def test_tasks_already_allocated_or_shut_down_are_left_alone() -> None:
    store = local_store()
    dead = task(desired=types_pb2.SHUTDOWN)
    scheduled = task()
    scheduled.status.state = types_pb2.ASSIGNED
    await create(store, dead, scheduled)
    async with running(store):
        marker = task()
        await create(store, marker)
        await pending(store, marker.id)
    assert get_task(store, dead.id).status.state == types_pb2.NEW  # type: ignore[union-attr]
    assert get_task(store, scheduled.id).status.state == types_pb2.ASSIGNED  # type: ignore[union-attr]


async def test_networks_get_unique_subnets_and_vnis_from_the_default_pool() -> None:
    store = local_store()
    nets = [network(f"net{i}") for i in range(3)]
    async with running(store):
        await create(store, *nets)
        allocated = [await allocated_network(store, n.id) for n in nets]
    subnets = [n.ipam.configs[0].subnet for n in allocated]
    assert subnets == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
    assert [n.ipam.configs[0].gateway for n in allocated] == ["10.0.0.1", "10.0.1.1", "10.0.2.1"]
    vnis = [int(n.driver_state.options[VNI_OPTION]) for n in allocated]
    assert vnis == [FIRST_VNI, FIRST_VNI + 1, FIRST_VNI + 2]
    assert all(n.driver_state.name == "overlay" for n in allocated)
    assert all(n.spec.annotations.name for n in allocated)  # the spec is kept


async def test_a_requested_subnet_and_gateway_are_kept_and_skipped_by_the_pool() -> None:
    store = local_store()
    mine = network("mine", subnet="10.0.0.0/16", gateway="10.0.0.254")
    async with running(store):
        await create(store, mine)
        got = await allocated_network(store, mine.id)
        other = network("other")
        await create(store, other)
        second = await allocated_network(store, other.id)
    assert got.ipam.configs[0].subnet == "10.0.0.0/16"
    assert got.ipam.configs[0].gateway == "10.0.0.254"
    assert second.ipam.configs[0].subnet == "10.1.0.0/24"


async def test_an_overlapping_subnet_leaves_the_network_unallocated_with_a_reason() -> None:
    store = local_store()
    first = network("first", subnet="10.5.0.0/16")
    clash = network("clash", subnet="10.5.3.0/24")
    async with running(store):
        await create(store, first)
        await allocated_network(store, first.id)
        await create(store, clash)
        t = task(networks=[clash.id])
        await create(store, t)
        blocked = await waiting(store, t.id)
    assert "network clash" in blocked.status.err
    assert "10.5.3.0/24 overlaps subnet 10.5.0.0/16" in blocked.status.err
    assert VNI_OPTION not in get_network(store, clash.id).driver_state.options  # type: ignore[union-attr]


async def test_tasks_get_one_address_per_network_unique_and_never_the_gateway() -> None:
    store = local_store()
    front, back = network("front"), network("back")
    await create(store, front, back)
    async with running(store):
        tasks = [task(networks=[front.id, back.id]) for _ in range(20)]
        await create(store, *tasks)
        done = [await pending(store, t.id) for t in tasks]
    for net in (front, back):
        stored = get_network(store, net.id)
        assert stored is not None
        addresses = [address_of(t, net.id) for t in done]
        assert len(set(addresses)) == len(addresses)
        assert all(a.endswith("/24") for a in addresses)
        assert stored.ipam.configs[0].gateway not in {str(ip(a)) for a in addresses}
    attachment = done[0].networks[0]
    assert attachment.network.id == front.id
    assert attachment.network.driver_state.options[VNI_OPTION]  # a copy of the allocated network


async def test_addresses_are_released_on_delete_and_when_a_task_stops() -> None:
    store = local_store()
    small = network("small", subnet="10.7.0.0/29")  # 10.7.0.2-6: five addresses
    await create(store, small)
    async with running(store):
        full = [task(networks=[small.id]) for _ in range(5)]
        await create(store, *full)
        holders = [await pending(store, t.id) for t in full]
        extra = task(networks=[small.id])
        await create(store, extra)
        blocked = await waiting(store, extra.id)
        assert "no free address left in subnet 10.7.0.0/29 of network small" in blocked.status.err

        await delete_task(store, full[1].id)
        freed = address_of(holders[1], small.id)
        assert address_of(await pending(store, extra.id), small.id) == freed

        again = task(networks=[small.id])
        await create(store, again)
        await waiting(store, again.id)
        await set_state(store, full[2].id, types_pb2.FAILED)  # a stopped task never runs again
        assert address_of(await pending(store, again.id), small.id) == address_of(
            holders[2], small.id
        )


async def test_restart_rebuilds_from_the_store_without_duplicates() -> None:
    store = local_store()
    net = network("net")
    await create(store, net)
    async with running(store):
        before = [task(networks=[net.id]) for _ in range(10)]
        await create(store, *before)
        first = [await pending(store, t.id) for t in before]
    # The leader changed: a new allocator starts from what the store holds.
    async with running(store):
        other = network("other")
        after = [task(networks=[net.id]) for _ in range(10)]
        await create(store, other, *after)
        second = [await pending(store, t.id) for t in after]
        other_net = await allocated_network(store, other.id)
    addresses = [address_of(t, net.id) for t in first + second]
    assert len(set(addresses)) == 20
    allocated = get_network(store, net.id)
    assert allocated is not None
    assert other_net.ipam.configs[0].subnet != allocated.ipam.configs[0].subnet
    assert other_net.driver_state.options[VNI_OPTION] != allocated.driver_state.options[VNI_OPTION]


async def test_vips_per_network_and_tasks_carry_the_endpoint() -> None:
    store = local_store()
    net = network("net")
    svc = service("web", networks=[net.id])
    rr = service("rr", networks=[net.id], dnsrr=True)
    await create(store, net, svc, rr)
    async with running(store):
        t = task(svc)
        r = task(rr)
        await create(store, t, r)
        allocated = await pending(store, t.id)
        await pending(store, r.id)
    stored = get_service(store, svc.id)
    assert stored is not None
    (vip,) = stored.endpoint.virtual_ips
    assert vip.network_id == net.id
    assert vip.addr != address_of(allocated, net.id)
    assert allocated.endpoint == stored.endpoint
    stored_rr = get_service(store, rr.id)
    assert stored_rr is not None and not stored_rr.endpoint.virtual_ips


async def test_ingress_ports_dynamic_explicit_and_conflicts() -> None:
    store = local_store()
    web = service("web", ports=[port(80, 8080), port(443), port(53, protocol=UDP)])
    await create(store, web)
    async with running(store):
        t = task(web)
        await create(store, t)
        allocated = await pending(store, t.id)
        stored = get_service(store, web.id)
        assert stored is not None
        assert [p.published_port for p in stored.endpoint.ports] == [
            8080,
            FIRST_DYNAMIC_PORT,
            FIRST_DYNAMIC_PORT,
        ]
        # Published ports bring the ingress network, created on first need, and a VIP on it.
        ingress = store.view(lambda tx: tx.get_by_name(objects_pb2.Network, INGRESS_NETWORK_NAME))
        assert ingress is not None and ingress.spec.ingress
        assert [v.network_id for v in stored.endpoint.virtual_ips] == [ingress.id]
        assert allocated.networks[0].network.id == ingress.id

        api = service("api", ports=[port(81, 8080)])
        blocked_task = task(api)
        await create(store, api, blocked_task)
        blocked = await waiting(store, blocked_task.id)
        assert "service api" in blocked.status.err
        assert "port 8080/tcp is already published by service web" in blocked.status.err

        await store.update(lambda tx: tx.delete(objects_pb2.Service, web.id))
        await pending(store, blocked_task.id)


async def test_a_service_update_keeps_its_dynamic_port_and_frees_removed_ones() -> None:
    store = local_store()
    web = service("web", ports=[port(80), port(81, 9000)])
    await create(store, web)
    async with running(store):
        t = task(web)
        await create(store, t)
        await pending(store, t.id)
        stored = get_service(store, web.id)
        assert stored is not None
        dynamic = stored.endpoint.ports[0].published_port

        def update(tx: WriteTx) -> None:
            current = tx.get(objects_pb2.Service, web.id)
            assert current is not None
            del current.spec.endpoint.ports[1]
            current.spec.endpoint.ports.add().CopyFrom(port(82))
            tx.update(current)

        await store.update(update)

        updated = await until_async(
            lambda: get_service(store, web.id),
            "the service's new endpoint",
            holds=lambda s: (
                s is not None
                and len(s.endpoint.ports) == 2
                and s.endpoint.ports[1].target_port == 82
            ),
        )
        assert updated is not None
        assert updated.endpoint.ports[0].published_port == dynamic
        other = service("other", ports=[port(90, 9000)])  # 9000 is free again
        ot = task(other)
        await create(store, other, ot)
        await pending(store, ot.id)


async def test_allocations_are_batched() -> None:
    store = local_store()
    net = network("net", subnet="10.8.0.0/22")
    await create(store, net)
    async with running(store):
        await allocated_network(store, net.id)
        tasks = [task(networks=[net.id]) for _ in range(450)]
        start = store.index
        await create(store, *tasks)
        for t in tasks:
            await pending(store, t.id)
        transactions = store.index - start - 1  # minus the creation itself
    assert transactions == 3  # 450 tasks in transactions of at most 200


async def test_bad_input_waits_with_a_clear_reason() -> None:
    store = local_store()
    v6 = network("v6", subnet="fd00::/64")
    local = network("local", driver="bridge")
    await create(store, v6, local)
    async with running(store):
        missing = task(networks=["nope"])
        twice = task(networks=[local.id, local.id])
        on_v6 = task(networks=[v6.id])
        on_local = task(networks=[local.id])
        await create(store, missing, twice, on_v6, on_local)
        assert "network nope does not exist" in (await waiting(store, missing.id)).status.err
        assert "twice" in (await waiting(store, twice.id)).status.err
        assert "IPv6" in (await waiting(store, on_v6.id)).status.err
        node_local = await pending(store, on_local.id)
    assert node_local.networks[0].network.id == local.id
    assert not node_local.networks[0].addresses  # node-local drivers allocate on the node


async def test_a_requested_address_is_honoured_or_refused() -> None:
    store = local_store()
    net = network("net", subnet="10.9.0.0/24")
    await create(store, net)
    async with running(store):
        wanted = task(networks=[net.id])
        wanted.spec.networks[0].addresses.append("10.9.0.77/24")
        taken = task(networks=[net.id])
        taken.spec.networks[0].addresses.append("10.9.0.77")
        await create(store, wanted)
        assert address_of(await pending(store, wanted.id), net.id) == "10.9.0.77/24"
        await create(store, taken)
        assert "10.9.0.77 of network net" in (await waiting(store, taken.id)).status.err


async def test_custom_cluster_pool_and_a_broken_one() -> None:
    store = local_store()
    cluster = objects_pb2.Cluster(id="c", default_address_pool=["10.200.0.0/16"], subnet_size=26)
    cluster.spec.annotations.name = "default"
    await store.update(lambda tx: tx.create(cluster))
    async with running(store):
        net = network("net")
        await create(store, net)
        got = await allocated_network(store, net.id)
        assert got.ipam.configs[0].subnet == "10.200.0.0/26"

        def break_pool(tx: WriteTx) -> None:
            current = tx.get(objects_pb2.Cluster, "c")
            assert current is not None
            current.default_address_pool[:] = ["not-a-cidr"]
            tx.update(current)

        await store.update(break_pool)
        broken = network("broken")
        t = task(networks=[broken.id])
        await create(store, broken, t)
        err = (await waiting(store, t.id)).status.err
    assert "cluster default_address_pool entry 'not-a-cidr' is not a valid CIDR" in err


def allocated_count(kind: str) -> float:
    labels = {"kind": kind, "result": "allocated"}
    return REGISTRY.get_sample_value("shoal_allocator_allocations_total", labels) or 0.0


async def test_metrics_count_allocations() -> None:
    store = local_store()
    before = allocated_count("task")
    async with running(store):
        tasks = [task() for _ in range(3)]
        await create(store, *tasks)
        for t in tasks:
            await pending(store, t.id)
    assert allocated_count("task") == before + 3


async def test_a_deleted_network_frees_its_subnet() -> None:
    store = local_store()
    async with running(store):
        first = network("first")
        await create(store, first)
        subnet = (await allocated_network(store, first.id)).ipam.configs[0].subnet
        await store.update(lambda tx: tx.delete(objects_pb2.Network, first.id))
        second = network("second")
        await create(store, second)
        again = await allocated_network(store, second.id)
    assert again.ipam.configs[0].subnet == subnet
    assert again.driver_state.options[VNI_OPTION] != str(FIRST_VNI)  # VNIs are not reused at once


async def test_switching_a_service_to_dnsrr_frees_its_vip() -> None:
    store = local_store()
    tiny = network("tiny", subnet="10.6.0.0/30")  # one address: 10.6.0.2
    svc = service("web", networks=[tiny.id])
    await create(store, tiny, svc)
    async with running(store):
        t = task(svc)
        await create(store, t)
        blocked = await waiting(store, t.id)  # the VIP took the only address
        assert "no free address" in blocked.status.err

        def to_dnsrr(tx: WriteTx) -> None:
            current = tx.get(objects_pb2.Service, svc.id)
            assert current is not None
            current.spec.endpoint.mode = types_pb2.EndpointSpec.DNSRR
            tx.update(current)

        await store.update(to_dnsrr)
        assert address_of(await pending(store, t.id), tiny.id) == "10.6.0.2/30"
    stored = get_service(store, svc.id)
    assert stored is not None and not stored.endpoint.virtual_ips


async def test_nothing_leaks_over_a_thousand_create_and_remove_cycles() -> None:
    """A /29 holds five addresses: a single one leaked per cycle would exhaust it within
    a few cycles. Each cycle makes a service (a VIP and a dynamic ingress port) and two of
    its tasks, lets them be allocated, then removes them all."""
    store = local_store()
    small = network("small", subnet="10.7.0.0/29")
    await create(store, small)
    async with running(store):
        for cycle in range(1000):
            svc = service(f"s{cycle}", networks=[small.id], ports=[port(80)])
            tasks = [task(svc), task(svc)]
            await create(store, svc, *tasks)
            for t in tasks:
                await pending(store, t.id)
            allocated = get_service(store, svc.id)
            assert allocated is not None
            assert small.id in {v.network_id for v in allocated.endpoint.virtual_ips}
            assert allocated.endpoint.ports[0].published_port  # from the dynamic range

            def remove(
                tx: WriteTx,
                svc: objects_pb2.Service = svc,
                tasks: list[objects_pb2.Task] = tasks,
            ) -> None:
                for t in tasks:
                    tx.delete(objects_pb2.Task, t.id)
                tx.delete(objects_pb2.Service, svc.id)

            await store.update(remove)
    final = get_service(store, svc.id)
    assert final is None


async def test_every_node_gets_an_address_on_the_ingress_network() -> None:
    """The nodes' ends of the routing mesh: one address each on the ingress network, once
    there is one; a removed node's address is free again."""
    store = local_store()

    def node_address(node_id: str) -> tuple[str, str] | None:
        found = store.view(lambda tx: tx.get(objects_pb2.Node, node_id))
        return ingress_address(found) if found is not None else None

    await store.update(lambda tx: tx.create(objects_pb2.Node(id="n1")))
    async with running(store):
        await create(store, service("web", ports=[port(80, 8080)]))  # makes the ingress network
        first = await until_async(lambda: node_address("n1"), "n1's ingress address")
        await store.update(lambda tx: tx.create(objects_pb2.Node(id="n2")))
        second = await until_async(lambda: node_address("n2"), "n2's ingress address")
        assert first is not None and second is not None
        assert first[0] == second[0] and first[1] != second[1]
        ingress = get_network(store, first[0])
        assert ingress is not None and ingress.spec.ingress
        await store.update(lambda tx: tx.delete(objects_pb2.Node, "n1"))
        await store.update(lambda tx: tx.create(objects_pb2.Node(id="n3")))
        third = await until_async(lambda: node_address("n3"), "n3's ingress address")
        assert third is not None and third[1] != second[1]
