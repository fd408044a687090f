"""One mapping from errors to gRPC statuses; a bug answers INTERNAL, not a hang or UNKNOWN."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import REGISTRY

from manager.controlapi import ControlServicer, status_of
from manager.controlapi.errors import FailedPrecondition, InvalidArgument, NameTaken
from manager.store import (
    AlreadyExists,
    NameConflict,
    NotFound,
    ProposalFailed,
    ProposalOutcomeUnknown,
    VersionConflict,
)
from shoal.v1 import control_pb2, objects_pb2, types_pb2
from tests.unit.manager.controlapi.helpers import (
    Control,
    async_stub,
    control_server,
    local_store,
    node,
    refused,
)
from tests.unit.manager.fake_clock import FakeClock

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (InvalidArgument("spec.x", "bad"), Code.INVALID_ARGUMENT, "spec.x: bad"),
        (NameTaken("taken"), Code.ALREADY_EXISTS, "taken"),
        (FailedPrecondition("in use"), Code.FAILED_PRECONDITION, "in use"),
        (NotFound("service", "s1"), Code.NOT_FOUND, "service 's1' not found"),
        (AlreadyExists("service", "s1"), Code.ALREADY_EXISTS, "service 's1' already exists"),
        (NameConflict("service", "web", "s1"), Code.ALREADY_EXISTS, "'web' is already used"),
        (
            VersionConflict("service", "s1", 5, 3),
            Code.FAILED_PRECONDITION,
            "update out of sequence: service 's1': version 3 is stale (stored version is 5)",
        ),
        (ProposalFailed("queue full"), Code.UNAVAILABLE, "queue full"),
        (ProposalOutcomeUnknown("timed out"), Code.UNAVAILABLE, "may or may not have been made"),
        (KeyError("boom"), Code.INTERNAL, "internal error (KeyError)"),
    ],
)
def test_status_of(error: Exception, code: grpc.StatusCode, message: str) -> None:
    got_code, got_message = status_of(error)
    assert got_code == code
    assert message in got_message


def requests(method: str, code: str) -> float:
    labels = {"method": method, "code": code}
    return REGISTRY.get_sample_value("shoal_controlapi_requests_total", labels) or 0.0


async def test_requests_are_counted_by_code(control: Control) -> None:
    ok, missing = requests("GetNode", "OK"), requests("GetNode", "NOT_FOUND")
    target = node()
    await control.put(target)
    await control.stub.GetNode(control_pb2.GetNodeRequest(node_id=target.id))
    await refused(control.stub.GetNode(control_pb2.GetNodeRequest(node_id="ghost")), Code.NOT_FOUND)
    assert requests("GetNode", "OK") == ok + 1
    assert requests("GetNode", "NOT_FOUND") == missing + 1


async def test_a_failing_hook_answers_internal() -> None:
    async def broken(target: objects_pb2.Node) -> bool:
        raise RuntimeError("raft is gone")

    store = local_store(FakeClock())
    servicer = ControlServicer(store, raft_member=broken)
    manager = node(role=types_pb2.MANAGER, state=types_pb2.NodeStatus.DOWN)
    await store.update(lambda tx: tx.create(manager))
    async with control_server(servicer) as address, grpc.aio.insecure_channel(address) as channel:
        stub = async_stub(channel)
        await refused(
            stub.RemoveNode(control_pb2.RemoveNodeRequest(node_id=manager.id)),
            Code.INTERNAL,
            "internal error (RuntimeError): raft is gone",
        )
    assert store.view(lambda tx: tx.get(objects_pb2.Node, manager.id)) is not None
