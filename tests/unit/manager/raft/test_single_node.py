"""One raft member on loopback: leadership after its barrier, proposals, shared read
barriers, restart from journal and snapshot (written by the compaction policy), and a tick
thread that fails loudly (bakwc/PySyncObj#121)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from manager.raft import Leadership, Raft, RaftConfig, RaftFailed
from manager.raft.errors import RaftError
from manager.store import ProposalFailed, Store, StoreError, VersionConflict, new_id
from shoal.v1 import objects_pb2, store_pb2
from tests.polling import until_awaited


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp_path: Path, port: int) -> RaftConfig:
    return RaftConfig(f"127.0.0.1:{port}", (), tmp_path / "raft", key=b"0123456789abcdef")


async def started(cfg: RaftConfig, store: Store | None = None) -> tuple[Raft, Store]:
    store = store or Store()
    raft = Raft(cfg, store)
    store.proposer = raft
    await raft.start()
    changes = raft.leadership.changes()
    async with asyncio.timeout(10):
        async for change in changes:
            if change.is_leader:
                break
    await changes.aclose()
    return raft, store


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Raft, Store]]:
    raft, store = await started(config(tmp_path, free_port()))
    yield raft, store
    await raft.stop()


async def test_leader_commits_writes_and_read_barriers(node: tuple[Raft, Store]) -> None:
    raft, store = node
    assert raft.is_leader() and raft.leader_address() == raft.config.address
    assert raft.leadership.current.is_leader
    # The barrier of the term was applied before leadership was announced.
    assert store.index >= 2

    task = objects_pb2.Task(id=new_id())
    result = await store.update(lambda tx: tx.create(task))
    stored = store.view(lambda tx: tx.get(objects_pb2.Task, task.id))
    assert stored is not None and stored.meta.version == result.index
    with pytest.raises(VersionConflict):
        stale = objects_pb2.Task()
        stale.CopyFrom(task)
        await store.update(lambda tx: tx.update(stale))
    barrier = await raft.read_barrier()
    assert barrier > result.index and store.index == barrier
    # Concurrent reads share barrier entries: fewer entries than reads.
    barriers = await asyncio.gather(*(raft.read_barrier() for _ in range(10)))
    assert all(index > barrier for index in barriers)
    assert store.index - barrier < len(barriers)
    status = await raft.status()
    assert status.is_leader and status.commit_index >= barrier
    assert status.members == [raft.config.address]


async def test_too_large_a_transaction_is_refused(node: tuple[Raft, Store]) -> None:
    raft, store = node
    config_obj = objects_pb2.Config(id=new_id())
    config_obj.spec.data = b"x" * (raft.config.max_proposal_bytes + 1)
    with pytest.raises(ProposalFailed, match="larger than the limit"):
        await store.update(lambda tx: tx.create(config_obj))


async def snapshot_written(raft: Raft) -> None:
    """Returns once the compaction policy has written a snapshot."""

    async def snapshot_index() -> int:
        return (await raft.status()).snapshot_index

    await until_awaited(snapshot_index, "a snapshot by the compaction policy", timeout_s=30)


async def test_state_survives_a_restart_from_journal_and_snapshot(tmp_path: Path) -> None:
    # The compaction policy snapshots once the journal holds more than 10 entries.
    cfg = dataclasses.replace(config(tmp_path, free_port()), compaction_min_entries=10)
    raft, store = await started(cfg)
    ids = [new_id() for _ in range(30)]
    for object_id in ids[:20]:
        await store.update(lambda tx, i=object_id: tx.create(objects_pb2.Task(id=i)))  # type: ignore[misc]
    await snapshot_written(raft)
    for object_id in ids[20:]:
        await store.update(lambda tx, i=object_id: tx.create(objects_pb2.Task(id=i)))  # type: ignore[misc]
    snapshot_index = (await raft.status()).snapshot_index
    assert 0 < snapshot_index < store.index  # the newest writes are in the journal only
    await raft.stop()
    with pytest.raises(RaftFailed, match="stopped"):
        await store.update(lambda tx: tx.create(objects_pb2.Task(id=new_id())))

    raft, restored = await started(cfg)
    try:
        found = restored.view(lambda tx: sorted(t.id for t in tx.list(objects_pb2.Task)))
        assert found == sorted(ids)
        assert (await raft.status()).snapshot_index >= snapshot_index
    finally:
        await raft.stop()
    # The journal (rewritten by compaction), the snapshot and the meta file hold the whole
    # store: the owner's only, whatever the umask.
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in cfg.data_dir.iterdir()}
    assert len(modes) >= 3 and set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(cfg.data_dir.stat().st_mode) == 0o700


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022, under which a plain open() makes 0644 files."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


class Exploding(Store):
    def apply(self, index: int, actions: store_pb2.StoreActions):  # type: ignore[no-untyped-def]
        if actions.actions:
            raise RuntimeError("bug in apply")
        return super().apply(index, actions)


async def test_a_tick_thread_failure_stops_the_node_loudly(tmp_path: Path) -> None:
    raft, store = await started(config(tmp_path, free_port()), Exploding())
    with pytest.raises(StoreError):
        await store.update(lambda tx: tx.create(objects_pb2.Task(id=new_id())))
    failure = await asyncio.wait_for(raft.wait_stopped(), 10)
    assert isinstance(failure, RaftFailed) and "bug in apply" in str(failure)
    assert raft.leadership.current == Leadership(False, raft.leadership.current.term)
    assert not raft.is_leader()
    with pytest.raises(RaftFailed):
        await raft.read_barrier()


async def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        raft = Raft(config(tmp_path, port), Store())
        with pytest.raises(RaftError, match=f"cannot bind the raft port 127.0.0.1:{port}"):
            await raft.start()


async def test_metrics_follow_the_node(node: tuple[Raft, Store]) -> None:
    raft, store = node

    def sample(name: str, **labels: str) -> float:
        value = REGISTRY.get_sample_value(name, labels)
        return 0.0 if value is None else value

    proposals = sample("shoal_raft_proposal_seconds_count")
    applies = sample("shoal_raft_apply_seconds_count")
    writes = sample("shoal_store_transaction_seconds_count", mode="write")
    barriers = sample("shoal_raft_read_barrier_seconds_count")
    result = await store.update(lambda tx: tx.create(objects_pb2.Task(id=new_id())))
    await raft.read_barrier()
    await raft.status()  # a tick has run since the commit
    assert sample("shoal_raft_leader") == 1
    assert sample("shoal_raft_term") >= 1
    assert sample("shoal_raft_commit_index") >= result.index
    assert sample("shoal_raft_proposal_seconds_count") == proposals + 1
    assert sample("shoal_raft_apply_seconds_count") >= applies + 1
    assert sample("shoal_store_transaction_seconds_count", mode="write") == writes + 1
    assert sample("shoal_raft_read_barrier_seconds_count") == barriers + 1
