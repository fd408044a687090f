"""One raft member on loopback (real gRPC and mutual TLS, real files): a bootstrapped
member leads alone once its term's first entry is applied, commits, serves read barriers,
survives restarts from its log and from its snapshot; bad certificates, a busy port and
damaged files stop it at start with an error that says what is wrong; a member with an
empty data dir and no bootstrap waits to be added instead of starting a group."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from manager.ca.cluster_ca import ClusterCA
from manager.ca.roles import Role
from manager.ca.tls import fetch_server_certificate
from manager.raft import (
    Leadership,
    LeadershipWatch,
    Raft,
    RaftConfig,
    RaftDataError,
    RaftError,
    RaftFailed,
)
from manager.raft.raft import SNAPSHOT_FILE, WAL_FILE, bootstrap_entries
from manager.raft.wal import MAGIC, WriteAheadLog
from manager.store import (
    Store,
    StoreError,
    TransactionTooLarge,
    VersionConflict,
    new_id,
)
from shoal.v1 import objects_pb2, store_pb2
from tests.polling import until_async, until_awaited
from tests.raft_support import create_task, free_port, node_credentials

NODE = "n1"
# The bootstrap entries of a group of one, then the first entry of the leader's term.
FIRST_ENTRY_OF_TERM = len(bootstrap_entries([NODE])) + 1


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.initialize()


def config(tmp_path: Path, **changes: Any) -> RaftConfig:
    base = RaftConfig(
        node_id=NODE,
        address=f"127.0.0.1:{free_port()}",
        data_dir=tmp_path / "raft",
        bootstrap=True,
    )
    return dataclasses.replace(base, **changes)


def made(cfg: RaftConfig, ca: ClusterCA, store: Store | None = None) -> tuple[Raft, Store]:
    store = store if store is not None else Store()
    raft = Raft(cfg, store, node_credentials(ca, NODE))
    store.proposer = raft
    return raft, store


async def leads(raft: Raft) -> None:
    await until_async(
        lambda: raft.leadership.current.is_leader, "leadership announced", timeout_s=10
    )


async def started(cfg: RaftConfig, ca: ClusterCA, store: Store | None = None) -> tuple[Raft, Store]:
    raft, store = made(cfg, ca, store)
    await raft.start()
    await leads(raft)
    return raft, store


@pytest.fixture
async def node(tmp_path: Path, ca: ClusterCA) -> AsyncIterator[tuple[Raft, Store]]:
    raft, store = await started(config(tmp_path), ca)
    yield raft, store
    await raft.stop()


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022, under which a plain open() makes 0644 files."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def write_tasks(store: Store, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        task_id, create = create_task()
        await store.update(create)
        ids.append(task_id)
    return ids


def task_ids(store: Store) -> list[str]:
    return store.view(lambda tx: sorted(t.id for t in tx.list(objects_pb2.Task)))


class RecordingWatch(LeadershipWatch):
    """Records, at each change, how far the store had applied."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.seen: list[tuple[Leadership, int]] = []

    def set(self, value: Leadership) -> None:
        before = self.current
        super().set(value)
        if self.current is not before:
            self.seen.append((self.current, self.store.index))


async def test_a_group_of_one_leads_once_its_terms_first_entry_is_applied(
    tmp_path: Path, ca: ClusterCA
) -> None:
    raft, store = made(config(tmp_path), ca)
    watch = raft.leadership = RecordingWatch(store)
    await raft.start()
    try:
        await leads(raft)
        status = await raft.status()
        assert status.is_leader and status.leader == NODE and raft.leader_id() == NODE
        assert raft.is_leader() and raft.leader_address() == raft.config.address
        assert status.members == [NODE] and status.learners == []
        assert status.reachable == [NODE]
        assert status.term >= 2  # the bootstrap entries are term 1; it campaigned after
        first, applied_then = watch.seen[0]
        assert first == Leadership(True, status.term)
        assert applied_then >= FIRST_ENTRY_OF_TERM, watch.seen
    finally:
        await raft.stop()
    assert not raft.is_leader() and raft.leader_id() is None
    assert raft.leadership.current == Leadership(False, status.term)


async def test_proposals_commit_in_order_and_return_their_index(
    node: tuple[Raft, Store],
) -> None:
    raft, store = node
    before = (await raft.status()).commit_index
    task_id, create = create_task("first")
    result = await store.update(create)
    assert result.index == before + 1 == store.index
    stored = store.view(lambda tx: tx.get(objects_pb2.Task, task_id))
    assert stored is not None and stored.meta.version == result.index
    stale = objects_pb2.Task()
    stale.CopyFrom(stored)
    stale.meta.version = 1
    with pytest.raises(VersionConflict):
        await store.update(lambda tx: tx.update(stale))

    # Proposed together: each gets its own index, in the order proposed.
    batch = [store_pb2.StoreActions() for _ in range(20)]
    for actions in batch:
        actions.actions.add(kind=store_pb2.StoreAction.CREATE, task=objects_pb2.Task(id=new_id()))
    indexes = await asyncio.gather(*(raft.propose(actions) for actions in batch))
    assert len(set(indexes)) == 20 and indexes == sorted(indexes)
    assert store.index == indexes[-1] == (await raft.status()).commit_index
    assert len(task_ids(store)) == 21


async def test_read_barriers_cover_every_write_before_them(node: tuple[Raft, Store]) -> None:
    raft, store = node
    result = await store.update(create_task()[1])
    barrier = await raft.read_barrier()
    assert barrier >= result.index and store.index >= barrier
    # A barrier adds no entry to the log (a quorum's confirmation, etcd's ReadIndex).
    assert (await raft.status()).commit_index == result.index
    barriers = await asyncio.gather(*(raft.read_barrier() for _ in range(10)))
    assert all(index == result.index for index in barriers)


async def test_a_too_large_transaction_is_refused(tmp_path: Path, ca: ClusterCA) -> None:
    raft, store = await started(config(tmp_path, max_proposal_bytes=4096), ca)
    try:
        before = (await raft.status()).commit_index
        config_obj = objects_pb2.Config(id=new_id())
        config_obj.spec.data = b"x" * 5000
        with pytest.raises(TransactionTooLarge, match="larger than the limit of 4096"):
            await store.update(lambda tx: tx.create(config_obj))
        assert (await raft.status()).commit_index == before  # nothing reached the log
        assert store.view(lambda tx: tx.get(objects_pb2.Config, config_obj.id)) is None
        config_obj.spec.data = b"x" * 3000
        result = await store.update(lambda tx: tx.create(config_obj))
        assert result.index == before + 1
    finally:
        await raft.stop()


def modes(data_dir: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir()}


async def test_state_survives_a_restart_from_the_log(tmp_path: Path, ca: ClusterCA) -> None:
    cfg = config(tmp_path)
    raft, store = await started(cfg, ca)
    ids = await write_tasks(store, 20)
    before = await raft.status()
    await raft.stop()
    with pytest.raises(RaftFailed, match="stopped"):
        await store.update(create_task()[1])
    assert modes(cfg.data_dir) == {WAL_FILE: 0o600}  # no snapshot: the log holds it all
    assert stat.S_IMODE(cfg.data_dir.stat().st_mode) == 0o700

    raft, restored = await started(cfg, ca)  # bootstrap is ignored: the log is there
    try:
        assert task_ids(restored) == sorted(ids)
        status = await raft.status()
        assert status.snapshot_index == 0 and status.members == [NODE]
        assert status.commit_index > before.commit_index  # the new term's first entry
        assert status.term > before.term
        more = await write_tasks(restored, 1)
        assert task_ids(restored) == sorted(ids + more)
    finally:
        await raft.stop()


async def snapshotted(raft: Raft) -> int:
    """The index of the first snapshot the compaction policy takes."""

    async def snapshot_index() -> int:
        return (await raft.status()).snapshot_index

    return await until_awaited(snapshot_index, "a snapshot by the compaction policy", timeout_s=20)


async def test_state_survives_a_restart_from_a_snapshot(tmp_path: Path, ca: ClusterCA) -> None:
    # A snapshot once 20 entries are applied past the last one: one in what follows.
    cfg = config(tmp_path, compaction_min_entries=20)
    raft, store = await started(cfg, ca)
    ids = await write_tasks(store, 25)
    snapshot_index = await snapshotted(raft)
    ids += await write_tasks(store, 4)  # after the snapshot: in the log only
    status = await raft.status()
    assert FIRST_ENTRY_OF_TERM < snapshot_index < status.commit_index
    # The log was compacted: it starts after the snapshot.
    assert status.snapshot_index == snapshot_index
    assert status.log_entries == status.commit_index - snapshot_index
    await raft.stop()

    # Everything raft writes holds the whole store: the owner's only, whatever the umask.
    assert modes(cfg.data_dir) == {WAL_FILE: 0o600, SNAPSHOT_FILE: 0o600}
    assert stat.S_IMODE(cfg.data_dir.stat().st_mode) == 0o700
    wal = WriteAheadLog(cfg.data_dir / WAL_FILE)
    wal.close()
    assert wal.loaded.snapshot is not None and wal.loaded.snapshot.index == snapshot_index
    assert wal.loaded.entries[0].index == snapshot_index + 1

    raft, restored = await started(cfg, ca)
    try:
        assert task_ids(restored) == sorted(ids)
        assert (await raft.status()).snapshot_index == snapshot_index
    finally:
        await raft.stop()


def damage(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_a_damaged_snapshot_stops_the_start(tmp_path: Path, ca: ClusterCA) -> None:
    cfg = config(tmp_path, compaction_min_entries=20)
    raft, store = await started(cfg, ca)
    await write_tasks(store, 25)
    await snapshotted(raft)
    await raft.stop()
    snapshot = cfg.data_dir / SNAPSHOT_FILE
    damage(snapshot, snapshot.stat().st_size // 2)

    raft, _ = made(cfg, ca)
    with pytest.raises(RaftDataError, match=re.escape(f"raft snapshot {snapshot} is damaged")):
        await raft.start()


async def test_a_damaged_log_record_before_the_end_stops_the_start(
    tmp_path: Path, ca: ClusterCA
) -> None:
    cfg = config(tmp_path)
    raft, store = await started(cfg, ca)
    await write_tasks(store, 5)
    await raft.stop()
    wal = cfg.data_dir / WAL_FILE
    first_record = len(MAGIC)
    damage(wal, first_record + 10)  # in the payload of the first record: later ones follow

    raft, _ = made(cfg, ca)
    with pytest.raises(
        RaftDataError,
        match=re.escape(f"raft log {wal}: the record at byte {first_record} is damaged"),
    ):
        await raft.start()
    # The log was closed again: opening it finds the damage, not a lock still held.
    with pytest.raises(RaftDataError, match="is damaged"):
        WriteAheadLog(wal)


async def test_a_port_in_use_is_a_clear_error(tmp_path: Path, ca: ClusterCA) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = config(tmp_path, address=f"127.0.0.1:{port}")
        raft, _ = made(cfg, ca)
        with pytest.raises(RaftError, match=f"cannot bind the raft port 127.0.0.1:{port}"):
            await raft.start()
    # Nothing stays held: the same data dir starts on a free port.
    raft, _ = await started(dataclasses.replace(cfg, address=f"127.0.0.1:{free_port()}"), ca)
    await raft.stop()


@pytest.mark.parametrize(
    ("node_id", "role", "named"),
    [("n2", Role.MANAGER, "swarm-manager n2's"), (NODE, Role.WORKER, "swarm-worker n1's")],
)
async def test_a_certificate_of_another_node_or_role_is_refused(
    tmp_path: Path, ca: ClusterCA, node_id: str, role: Role, named: str
) -> None:
    cfg = config(tmp_path)
    raft = Raft(cfg, Store(), node_credentials(ca, node_id, role))
    with pytest.raises(RaftError, match=f"needs its own manager certificate, not {named}"):
        await raft.start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", int(cfg.address.rpartition(":")[2])))  # the port stays free
    raft, _ = await started(cfg, ca)  # the log was closed again
    await raft.stop()


async def test_an_empty_member_without_bootstrap_waits_to_be_added(
    tmp_path: Path, ca: ClusterCA
) -> None:
    cfg = config(tmp_path, bootstrap=False)
    raft, store = made(cfg, ca)
    await raft.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * cfg.election_timeout  # past twice the longest timeout
        while loop.time() < deadline:
            status = await raft.status()
            assert not status.is_leader and status.leader is None and status.term == 0
            assert status.members == [] and status.commit_index == 0
            assert not raft.leadership.current.is_leader
            await asyncio.sleep(cfg.tick_period)
        assert store.index == 0
        with pytest.raises(StoreError):
            await store.update(create_task()[1])
    finally:
        await raft.stop()


async def test_renewed_credentials_serve_new_connections(tmp_path: Path, ca: ClusterCA) -> None:
    first = node_credentials(ca, NODE)
    store = Store()
    raft = Raft(config(tmp_path), store, first)
    store.proposer = raft
    await raft.start()
    try:
        await leads(raft)
        served = await asyncio.to_thread(fetch_server_certificate, raft.config.address, 5)
        assert served.serial_number == first.certificate.serial_number
        renewed = node_credentials(ca, NODE)
        raft.reload_credentials(renewed)
        served = await asyncio.to_thread(fetch_server_certificate, raft.config.address, 5)
        assert served.serial_number == renewed.certificate.serial_number
        await write_tasks(store, 1)  # still leading, still committing
    finally:
        await raft.stop()


class Exploding(Store):
    def apply(self, index: int, actions: store_pb2.StoreActions):  # type: ignore[no-untyped-def]
        if actions.actions:
            raise RuntimeError("bug in apply")
        return super().apply(index, actions)


async def test_a_driver_failure_stops_the_node_loudly(tmp_path: Path, ca: ClusterCA) -> None:
    raft, store = await started(config(tmp_path), ca, Exploding())
    with pytest.raises(StoreError):
        await store.update(create_task()[1])
    failure = await asyncio.wait_for(raft.wait_stopped(), 10)
    assert isinstance(failure, RaftFailed) and "bug in apply" in str(failure)
    assert isinstance(failure.cause, RuntimeError)
    assert raft.leadership.current == Leadership(False, raft.leadership.current.term)
    assert not raft.is_leader()
    with pytest.raises(RaftFailed):
        await raft.read_barrier()
    with pytest.raises(RaftFailed):
        await raft.status()


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_metrics_follow_the_node(node: tuple[Raft, Store]) -> None:
    raft, store = node
    proposals = sample("shoal_raft_proposal_seconds_count")
    applies = sample("shoal_raft_apply_seconds_count")
    barriers = sample("shoal_raft_read_barrier_seconds_count")
    result = await store.update(create_task()[1])
    await raft.read_barrier()
    status = await raft.status()
    assert sample("shoal_raft_leader") == 1
    assert sample("shoal_raft_term") == status.term
    await until_async(
        lambda: sample("shoal_raft_commit_index"),
        "the commit index gauge at the write",
        holds=lambda value: value == result.index,
        timeout_s=5,
    )
    assert sample("shoal_raft_proposal_seconds_count") == proposals + 1
    assert sample("shoal_raft_apply_seconds_count") >= applies + 1
    assert sample("shoal_raft_read_barrier_seconds_count") == barriers + 1


async def test_a_stopped_node_no_longer_reports_leading(tmp_path: Path, ca: ClusterCA) -> None:
    raft, _ = await started(config(tmp_path), ca)
    assert sample("shoal_raft_leader") == 1
    await raft.stop()
    assert sample("shoal_raft_leader") == 0
