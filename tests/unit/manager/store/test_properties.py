"""Property: applying any sequence of store actions, then snapshot + restore (at any point,
followed by the rest of the log) gives exactly the store that applied the whole log."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.store import Store, decode_snapshot, encode_snapshot
from shoal.v1 import objects_pb2, store_pb2, types_pb2

IDS = [f"id{i}" for i in range(8)]
NAMES = ["a", "b", "c", ""]
KINDS = {
    "service": objects_pb2.Service,
    "task": objects_pb2.Task,
    "node": objects_pb2.Node,
    "network": objects_pb2.Network,
    "secret": objects_pb2.Secret,
    "config": objects_pb2.Config,
    "cluster": objects_pb2.Cluster,
}


@st.composite
def store_object(draw: st.DrawFn, kind: str) -> Any:
    obj = KINDS[kind](id=draw(st.sampled_from(IDS)))
    obj.meta.version = draw(st.integers(0, 40))
    obj.meta.created_at.seconds = draw(st.integers(0, 10**9))
    obj.meta.updated_at.seconds = draw(st.integers(0, 10**9))
    if kind == "task":
        obj.service_id = draw(st.sampled_from(IDS))
        obj.slot = draw(st.integers(0, 3))
        obj.node_id = draw(st.sampled_from(["", "n1", "n2"]))
        obj.desired_state = draw(st.sampled_from([types_pb2.RUNNING, types_pb2.SHUTDOWN]))
        obj.annotations.labels.update(draw(st.dictionaries(st.text(max_size=3), st.text())))
    else:
        obj.spec.annotations.name = draw(st.sampled_from(NAMES))
        obj.spec.annotations.labels.update(
            draw(st.dictionaries(st.text(max_size=3), st.text(), max_size=3))
        )
    if kind == "node":
        obj.role = draw(st.sampled_from([types_pb2.WORKER, types_pb2.MANAGER]))
    return obj


@st.composite
def store_actions(draw: st.DrawFn) -> store_pb2.StoreActions:
    batch = store_pb2.StoreActions(
        proposer_id=draw(st.sampled_from(["", "p1", "p2"])),
        sequence=draw(st.integers(0, 12)),
    )
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(sorted(KINDS)))
        action = batch.actions.add(
            kind=draw(
                st.sampled_from(
                    [
                        store_pb2.StoreAction.CREATE,
                        store_pb2.StoreAction.UPDATE,
                        store_pb2.StoreAction.REMOVE,
                    ]
                )
            )
        )
        getattr(action, kind).CopyFrom(draw(store_object(kind)))
    return batch


def apply_all(store: Store, log: list[store_pb2.StoreActions], first_index: int) -> None:
    for offset, batch in enumerate(log):
        store.apply(first_index + offset, batch)


@settings(max_examples=200, deadline=None)
@given(log=st.lists(store_actions(), max_size=40), data=st.data())
def test_snapshot_then_replay_equals_applying_the_whole_log(
    log: list[store_pb2.StoreActions], data: st.DataObject
) -> None:
    whole = Store()
    apply_all(whole, log, 1)
    expected = encode_snapshot(whole.capture())

    restored = Store()
    restored.restore(decode_snapshot(expected))
    assert encode_snapshot(restored.capture()) == expected

    split = data.draw(st.integers(0, len(log)), label="snapshot after entry")
    first = Store()
    apply_all(first, log[:split], 1)
    resumed = Store()
    resumed.restore(decode_snapshot(encode_snapshot(first.capture())))
    apply_all(resumed, log[split:], split + 1)
    assert encode_snapshot(resumed.capture()) == expected
