"""Nodes through a real Control server: get, list filters, update, removal guards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from manager.controlapi import ControlServicer
from manager.controlapi.hooks import RaftView
from shoal.v1 import control_pb2, objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.controlapi.helpers import (
    Control,
    async_stub,
    control_server,
    local_store,
    node,
    refused,
)
from tests.unit.manager.fake_clock import FakeClock

MANAGER, WORKER = types_pb2.MANAGER, types_pb2.WORKER
READY, DOWN = types_pb2.NodeStatus.READY, types_pb2.NodeStatus.DOWN
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def update(
    control: Control, target: objects_pb2.Node, spec: specs_pb2.NodeSpec
) -> objects_pb2.Node:
    stored = control.get(objects_pb2.Node, target.id)
    response = await control.stub.UpdateNode(
        control_pb2.UpdateNodeRequest(
            node_id=target.id, node_version=stored.meta.version, spec=spec
        )
    )
    result: objects_pb2.Node = response.node
    return result


def spec_of(target: objects_pb2.Node) -> specs_pb2.NodeSpec:
    spec = specs_pb2.NodeSpec()
    spec.CopyFrom(target.spec)
    return spec


async def test_get_and_list_with_filters(control: Control) -> None:
    named = node(name="alpha", role=MANAGER)
    named.spec.annotations.labels["zone"] = "a"
    unnamed = node(hostname="beta-host")
    pending = node(name="gamma")
    pending.spec.membership = specs_pb2.NodeSpec.PENDING
    await control.put(named, unnamed, pending)

    got = await control.stub.GetNode(control_pb2.GetNodeRequest(node_id=named.id))
    assert got.node.spec == named.spec

    async def names(**filters: object) -> set[str]:
        request = control_pb2.ListNodesRequest(
            filters=control_pb2.ListNodesRequest.Filters(**filters)  # type: ignore[arg-type]
        )
        listed = await control.stub.ListNodes(request)
        return {n.spec.annotations.name or n.description.hostname for n in listed.nodes}

    assert await names() == {"alpha", "beta-host", "gamma"}
    assert await names(names=["beta-host"]) == {"beta-host"}
    assert await names(name_prefixes=["al", "be"]) == {"alpha", "beta-host"}
    assert await names(roles=[MANAGER]) == {"alpha"}
    assert await names(memberships=[specs_pb2.NodeSpec.PENDING]) == {"gamma"}
    assert await names(labels={"zone": "a"}) == {"alpha"}
    assert await names(roles=[WORKER], labels={"zone": ""}) == set()
    await refused(
        control.stub.GetNode(control_pb2.GetNodeRequest(node_id="ghost")),
        grpc.StatusCode.NOT_FOUND,
        "node 'ghost' not found",
    )


async def test_update_availability_and_labels(control: Control) -> None:
    target = node(name="n1")
    await control.put(target)
    spec = spec_of(target)
    spec.availability = specs_pb2.NodeSpec.DRAIN
    spec.annotations.labels["disk"] = "ssd"

    updated = await update(control, target, spec)

    assert updated.spec == spec
    assert control.get(objects_pb2.Node, target.id).spec == spec


async def test_update_validation_and_version(control: Control) -> None:
    target = node(name="n1")
    await control.put(target)
    spec = spec_of(target)
    spec.availability = 9  # type: ignore[assignment]
    await refused(
        update(control, target, spec), grpc.StatusCode.INVALID_ARGUMENT, "spec.availability"
    )
    stored = control.get(objects_pb2.Node, target.id)
    await update(control, target, spec_of(target))
    await refused(
        control.stub.UpdateNode(
            control_pb2.UpdateNodeRequest(
                node_id=target.id, node_version=stored.meta.version, spec=spec_of(target)
            )
        ),
        FAILED_PRECONDITION,
        "update out of sequence",
    )


async def test_accepted_node_cannot_go_back_to_pending(control: Control) -> None:
    target = node(name="n1")
    await control.put(target)
    spec = spec_of(target)
    spec.membership = specs_pb2.NodeSpec.PENDING
    await refused(
        update(control, target, spec), grpc.StatusCode.INVALID_ARGUMENT, "spec.membership"
    )


async def test_last_manager_cannot_be_demoted(control: Control) -> None:
    first, second = node(name="m1", role=MANAGER), node(name="m2", role=MANAGER)
    await control.put(first, second)
    demote = spec_of(first)
    demote.desired_role = WORKER

    await update(control, first, demote)

    demote_second = spec_of(second)
    demote_second.desired_role = WORKER
    await refused(update(control, second, demote_second), FAILED_PRECONDITION, "last manager")
    assert control.get(objects_pb2.Node, second.id).spec.desired_role == MANAGER


async def test_promotion_is_stored(control: Control) -> None:
    target = node(name="w1")
    await control.put(target)
    promote = spec_of(target)
    promote.desired_role = MANAGER
    assert (await update(control, target, promote)).spec.desired_role == MANAGER


async def test_remove_refuses_a_ready_node_unless_forced(control: Control) -> None:
    up, down = node(name="up", state=READY), node(name="down", state=DOWN)
    await control.put(up, down)

    await refused(
        control.stub.RemoveNode(control_pb2.RemoveNodeRequest(node_id=up.id)),
        FAILED_PRECONDITION,
        "is READY",
    )
    await control.stub.RemoveNode(control_pb2.RemoveNodeRequest(node_id=down.id))
    await control.stub.RemoveNode(control_pb2.RemoveNodeRequest(node_id=up.id, force=True))
    assert control.store.view(lambda tx: tx.count(objects_pb2.Node)) == 0


async def test_remove_refuses_a_raft_member_by_default_hook(control: Control) -> None:
    manager = node(name="m", role=MANAGER, state=DOWN)
    manager.manager_status.raft_addr = "127.0.0.1:4242"
    await control.put(manager)
    await refused(
        control.stub.RemoveNode(control_pb2.RemoveNodeRequest(node_id=manager.id, force=True)),
        FAILED_PRECONDITION,
        "member of the raft cluster",
    )
    assert control.get(objects_pb2.Node, manager.id) is not None


@pytest.fixture
async def raft_hooked() -> AsyncIterator[tuple[Control, set[str]]]:
    """A Control whose raft membership check asks a set of member node ids."""
    members: set[str] = set()

    async def is_member(target: objects_pb2.Node) -> bool:
        return target.id in members

    clock = FakeClock()
    store = local_store(clock)
    servicer = ControlServicer(store, raft_member=is_member, clock=clock)
    async with control_server(servicer) as address, grpc.aio.insecure_channel(address) as channel:
        yield Control(store, async_stub(channel), clock), members


async def test_remove_asks_the_raft_hook(raft_hooked: tuple[Control, set[str]]) -> None:
    control, members = raft_hooked
    manager = node(name="m", role=MANAGER, state=DOWN)
    await control.put(manager)
    members.add(manager.id)
    request = control_pb2.RemoveNodeRequest(node_id=manager.id)

    await refused(control.stub.RemoveNode(request), FAILED_PRECONDITION, "demote it")
    members.clear()
    await control.stub.RemoveNode(request)
    assert control.get(objects_pb2.Node, manager.id) is None


async def test_remove_unknown_node(control: Control) -> None:
    await refused(
        control.stub.RemoveNode(control_pb2.RemoveNodeRequest(node_id="ghost")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_manager_status_shows_the_raft_view_at_read_time() -> None:
    clock = FakeClock()
    store = local_store(clock)
    managers = []
    for n in (1, 2, 3):
        manager = node(name=f"m{n}", role=MANAGER)
        manager.manager_status.raft_addr = f"10.0.0.{n}:4243"
        manager.manager_status.leader = n == 1  # stale: the leader moved to m2
        managers.append(manager)
    # Raft knows its members by node id.
    m1, m2, _ = (m.id for m in managers)
    view = RaftView(leader=m2, reachable=frozenset({m1, m2}))

    async def raft_view() -> RaftView:
        return view

    worker = node(name="w")
    servicer = ControlServicer(store, clock=clock, raft_view=raft_view)
    async with control_server(servicer) as address, grpc.aio.insecure_channel(address) as channel:
        control = Control(store, async_stub(channel), clock)
        await control.put(*managers, worker)

        listed = (await control.stub.ListNodes(control_pb2.ListNodesRequest())).nodes
        status = {n.spec.annotations.name: n.manager_status for n in listed}
        assert [status[f"m{n}"].leader for n in (1, 2, 3)] == [False, True, False]
        reachable = types_pb2.RaftMemberStatus.REACHABLE
        unreachable = types_pb2.RaftMemberStatus.UNREACHABLE
        assert [status[f"m{n}"].reachability for n in (1, 2, 3)] == [
            reachable,
            reachable,
            unreachable,
        ]
        assert not status["w"].leader and not status["w"].reachability  # not a manager
        got = await control.stub.GetNode(control_pb2.GetNodeRequest(node_id=managers[2].id))
        assert got.node.manager_status.reachability == unreachable
        # Only the answer shows the view: the store keeps what was written.
        stored = control.get(objects_pb2.Node, managers[0].id)
        assert stored.manager_status.leader
        assert not stored.manager_status.reachability
