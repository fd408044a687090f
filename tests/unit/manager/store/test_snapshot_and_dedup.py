"""Snapshots restore an equal store; retried proposals never apply twice."""

from __future__ import annotations

import pytest

from manager.store import (
    LocalProposer,
    ProposalOutcomeUnknown,
    SnapshotError,
    Store,
    VersionConflict,
    decode_snapshot,
    encode_snapshot,
)
from manager.store.proposer import SequenceSource
from shoal.v1 import objects_pb2, store_pb2
from tests.unit.manager.store.helpers import local_store, service, task


async def filled_store() -> Store:
    store = local_store()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    for slot in range(1, 4):
        await store.update(lambda tx, slot=slot: tx.create(task(web.id, slot, f"n{slot}")))  # type: ignore[misc]
    node = objects_pb2.Node(id="n1")
    node.spec.annotations.name = "node-1"
    await store.update(lambda tx: tx.create(node))
    return store


async def test_snapshot_round_trip_restores_an_equal_store() -> None:
    store = await filled_store()
    data = encode_snapshot(store.capture())
    assert store_pb2.StoreSnapshot.FromString(data).index == store.index

    restored = Store()
    restored.restore(decode_snapshot(data))
    assert restored.index == store.index
    assert encode_snapshot(restored.capture()) == data
    web = restored.view(lambda tx: tx.get_by_name(objects_pb2.Service, "web"))
    assert web is not None
    assert len(restored.view(lambda tx: tx.find(objects_pb2.Task, "service", web.id))) == 3
    assert len(restored.view(lambda tx: tx.find(objects_pb2.Task, "node", "n2"))) == 1


def test_undecodable_snapshots_are_refused() -> None:
    with pytest.raises(SnapshotError, match="does not parse"):
        decode_snapshot(b"\xff\xff\xff")
    with pytest.raises(SnapshotError, match="format 7 is not supported"):
        decode_snapshot(store_pb2.StoreSnapshot(format=7).SerializeToString())
    no_id = store_pb2.StoreSnapshot(format=1)
    no_id.tasks.add()
    with pytest.raises(SnapshotError, match="task without an id"):
        decode_snapshot(no_id.SerializeToString())


async def test_a_retried_proposal_applies_once_and_answers_like_the_first() -> None:
    store = local_store()
    proposer = store.proposer
    assert isinstance(proposer, LocalProposer)
    actions = store_pb2.StoreActions()
    actions.actions.add(kind=store_pb2.StoreAction.CREATE, task=task(slot=1))
    first = await proposer.propose(actions)
    assert (actions.proposer_id, actions.sequence) == ("test", 1)
    again = await proposer.propose(actions)  # same (proposer_id, sequence): a retry
    assert again == first
    assert store.view(lambda tx: tx.count(objects_pb2.Task)) == 1

    # A retried refusal answers with the same refusal, and still applies nothing.
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    stale = objects_pb2.Service()
    stale.CopyFrom(web)  # version 0: stale
    refused = store_pb2.StoreActions()
    refused.actions.add(kind=store_pb2.StoreAction.UPDATE, service=stale)
    for _ in range(2):
        with pytest.raises(VersionConflict):
            await proposer.propose(refused)


async def test_dedup_survives_a_snapshot_and_an_older_sequence_is_skipped() -> None:
    store = local_store()
    sequences = SequenceSource("writer")
    batches = []
    for slot in (1, 2):
        batch = store_pb2.StoreActions()
        batch.actions.add(kind=store_pb2.StoreAction.CREATE, task=task(slot=slot))
        sequences.stamp(batch)
        batches.append(batch)
    assert store.apply(1, batches[0]).error is None
    assert store.apply(2, batches[1]).error is None

    restored = Store()
    restored.restore(decode_snapshot(encode_snapshot(store.capture())))
    for batch in batches:  # replayed after a snapshot: the outcome is gone, not the dedup
        result = restored.apply(restored.index + 1, batch)
        assert result.duplicate
        assert isinstance(result.error, ProposalOutcomeUnknown)
    assert restored.view(lambda tx: tx.count(objects_pb2.Task)) == 2


async def test_barriers_are_never_deduplicated() -> None:
    store = local_store()
    for index in (1, 2, 3):
        result = store.apply(index, store_pb2.StoreActions())
        assert (result.index, result.error, result.duplicate) == (index, None, False)
