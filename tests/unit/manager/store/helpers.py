"""Small builders for store tests."""

from __future__ import annotations

from manager.store import LocalProposer, Store, new_id
from shoal.v1 import objects_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock


def local_store(clock: FakeClock | None = None) -> Store:
    store = Store(clock=(clock or FakeClock()).timestamp)
    store.proposer = LocalProposer(store, proposer_id="test")
    return store


def service(name: str) -> objects_pb2.Service:
    svc = objects_pb2.Service(id=new_id())
    svc.spec.annotations.name = name
    return svc


def task(
    service_id: str = "",
    slot: int = 0,
    node_id: str = "",
    desired: types_pb2.TaskState.ValueType = types_pb2.RUNNING,
) -> objects_pb2.Task:
    return objects_pb2.Task(
        id=new_id(), service_id=service_id, slot=slot, node_id=node_id, desired_state=desired
    )
