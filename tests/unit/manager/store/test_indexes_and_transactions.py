"""Store indexes, read views and write transactions on a local proposer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from manager.store import (
    AlreadyExists,
    InvalidAction,
    NameConflict,
    NotFound,
    ProposalFailed,
    Store,
    StoreObject,
    VersionConflict,
    WriteTx,
)
from shoal.v1 import objects_pb2, store_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock
from tests.unit.manager.store.helpers import local_store, service, task


async def test_tasks_are_found_by_service_node_slot_and_desired_state() -> None:
    store = local_store()
    web, db = service("web"), service("db")
    tasks = [
        task(web.id, 1, "n1"),
        task(web.id, 2, "n2"),
        task(db.id, 1, "n1", desired=types_pb2.SHUTDOWN),
    ]

    def create(tx: WriteTx) -> None:
        objs: list[StoreObject] = [web, db, *tasks]
        for obj in objs:
            tx.create(obj)

    await store.update(create)

    def ids(found: list[objects_pb2.Task]) -> set[str]:
        return {t.id for t in found}

    def find(index: str, key: object) -> set[str]:
        return ids(store.view(lambda tx: tx.find(objects_pb2.Task, index, key)))

    assert find("service", web.id) == {tasks[0].id, tasks[1].id}
    assert find("node", "n1") == {tasks[0].id, tasks[2].id}
    assert find("slot", (web.id, 2)) == {tasks[1].id}
    assert find("desired_state", types_pb2.SHUTDOWN) == {tasks[2].id}
    assert find("desired_state", types_pb2.RUNNING) == {tasks[0].id, tasks[1].id}
    found = store.view(lambda tx: tx.get_by_name(objects_pb2.Service, "db"))
    assert found is not None and found.id == db.id

    # An update moves the task in every index.
    moved = store.view(lambda tx: tx.get(objects_pb2.Task, tasks[0].id))
    assert moved is not None
    moved.node_id = "n3"
    await store.update(lambda tx: tx.update(moved))
    assert find("node", "n1") == {tasks[2].id}
    assert find("node", "n3") == {tasks[0].id}

    await store.update(lambda tx: tx.delete(objects_pb2.Task, tasks[2].id))
    assert find("node", "n1") == set()
    assert find("service", db.id) == set()


async def test_unknown_index_is_a_clear_error() -> None:
    store = local_store()
    with pytest.raises(KeyError, match="task has no index 'colour'"):
        store.view(lambda tx: tx.find(objects_pb2.Task, "colour", "red"))


async def test_reads_return_copies() -> None:
    store = local_store()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    copy = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert copy is not None
    copy.spec.annotations.name = "changed"
    again = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert again is not None and again.spec.annotations.name == "web"


async def test_names_are_unique_per_kind() -> None:
    store = local_store()
    await store.update(lambda tx: tx.create(service("web")))
    with pytest.raises(NameConflict, match="service name 'web' is already used"):
        await store.update(lambda tx: tx.create(service("web")))
    # Another kind may use the name; within one transaction the check sees pending objects.
    network = objects_pb2.Network(id="net1")
    network.spec.annotations.name = "web"
    await store.update(lambda tx: tx.create(network))

    def two_with_one_name(tx: WriteTx) -> None:
        tx.create(service("api"))
        tx.create(service("api"))

    with pytest.raises(NameConflict):
        await store.update(two_with_one_name)
    assert store.view(lambda tx: tx.count(objects_pb2.Service)) == 1


async def test_a_rename_frees_the_old_name() -> None:
    store = local_store()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    stored = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert stored is not None
    stored.spec.annotations.name = "www"
    await store.update(lambda tx: tx.update(stored))
    await store.update(lambda tx: tx.create(service("web")))
    assert store.view(lambda tx: tx.count(objects_pb2.Service)) == 2


async def test_meta_version_is_the_commit_index_and_timestamps_come_from_the_writer() -> None:
    clock = FakeClock()
    store = local_store(clock)
    web = service("web")
    first = await store.update(lambda tx: tx.create(web))
    stored = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert stored is not None
    assert stored.meta.version == first.index == 1
    assert stored.meta.created_at.seconds == stored.meta.updated_at.seconds == int(clock.now)

    clock.advance(60)
    stored.spec.annotations.labels["tier"] = "front"
    second = await store.update(lambda tx: tx.update(stored))
    updated = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert updated is not None
    assert updated.meta.version == second.index == 2
    assert updated.meta.created_at.seconds == int(clock.now) - 60
    assert updated.meta.updated_at.seconds == int(clock.now)


async def test_stale_version_is_refused_when_writing() -> None:
    store = local_store()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    read = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert read is not None
    read.spec.annotations.labels["a"] = "1"
    await store.update(lambda tx: tx.update(read))
    read.spec.annotations.labels["a"] = "2"  # still carries the version it was read at
    with pytest.raises(VersionConflict) as conflict:
        await store.update(lambda tx: tx.update(read))
    assert (conflict.value.stored, conflict.value.given) == (2, 1)
    assert "stale" in str(conflict.value)


def _update_action(obj: objects_pb2.Service) -> store_pb2.StoreActions:
    actions = store_pb2.StoreActions()
    actions.actions.add(kind=store_pb2.StoreAction.UPDATE, service=obj)
    return actions


async def test_stale_version_is_refused_at_apply_and_nothing_of_the_batch_applies() -> None:
    """Two writers read version 1; the second one's commit comes after the first's."""
    store = local_store()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    read = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert read is not None
    first, second = objects_pb2.Service(), objects_pb2.Service()
    first.CopyFrom(read)
    second.CopyFrom(read)
    first.spec.annotations.labels["by"] = "first"
    second.spec.annotations.labels["by"] = "second"
    late = _update_action(second)
    late.actions.add(kind=store_pb2.StoreAction.CREATE, service=service("api"))

    assert store.apply(2, _update_action(first)).error is None
    result = store.apply(3, late)
    assert isinstance(result.error, VersionConflict)
    stored = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert stored is not None and stored.spec.annotations.labels["by"] == "first"
    assert store.view(lambda tx: tx.get_by_name(objects_pb2.Service, "api")) is None
    assert store.index == 3


async def test_missing_duplicate_and_malformed_objects_are_refused() -> None:
    store = local_store()
    web = service("web")
    await store.update(lambda tx: tx.create(web))
    with pytest.raises(AlreadyExists, match=f"service '{web.id}' already exists"):
        await store.update(lambda tx: tx.create(web))
    with pytest.raises(NotFound, match="task 'nope' not found"):
        await store.update(lambda tx: tx.delete(objects_pb2.Task, "nope"))
    with pytest.raises(InvalidAction, match="without an id"):
        await store.update(lambda tx: tx.create(objects_pb2.Node()))
    empty = store_pb2.StoreActions()
    empty.actions.add(kind=store_pb2.StoreAction.CREATE)
    assert isinstance(store.apply(store.index + 1, empty).error, InvalidAction)
    no_kind = store_pb2.StoreActions()
    no_kind.actions.add(service=service("x"))
    assert isinstance(store.apply(store.index + 1, no_kind).error, InvalidAction)
    with pytest.raises(InvalidAction, match="out of order"):
        store.apply(store.index, store_pb2.StoreActions())
    with pytest.raises(TypeError, match="not a store object"):
        store.view(lambda tx: tx.get(store_pb2.StoreActions, "x"))  # type: ignore[type-var]


async def test_changes_within_one_transaction_collapse_per_object() -> None:
    store = local_store()
    web = service("web")

    def create_then_update(tx: WriteTx) -> None:
        pending = tx.create(web)
        pending.spec.annotations.labels["x"] = "1"
        tx.update(pending)

    await store.update(create_then_update)
    stored = store.view(lambda tx: tx.get(objects_pb2.Service, web.id))
    assert stored is not None and stored.spec.annotations.labels["x"] == "1"

    def update_twice_then_delete(tx: WriteTx) -> store_pb2.StoreActions:
        obj = tx.get(objects_pb2.Service, web.id)
        assert obj is not None
        obj.spec.annotations.labels["x"] = "2"
        obj = tx.update(obj)
        obj.spec.annotations.labels["x"] = "3"
        tx.update(obj)
        assert tx.find(objects_pb2.Service, "name", "web")[0].spec.annotations.labels["x"] == "3"
        tx.delete(objects_pb2.Service, web.id)
        assert tx.get(objects_pb2.Service, web.id) is None
        assert tx.list(objects_pb2.Service) == []
        return tx.actions()

    result = await store.update(update_twice_then_delete)
    assert [a.kind for a in result.value.actions] == [store_pb2.StoreAction.REMOVE]
    assert store.view(lambda tx: tx.count(objects_pb2.Service)) == 0


async def test_a_transaction_that_changes_nothing_commits_nothing() -> None:
    store = local_store()
    result = await store.update(lambda tx: tx.list(objects_pb2.Task))
    assert result.index == store.index == 0


async def test_a_store_without_proposer_refuses_writes() -> None:
    with pytest.raises(ProposalFailed, match="no proposer"):
        await Store().update(lambda tx: tx.create(service("web")))


class _Interfering:
    """A proposer that first commits someone else's change to `target` (`times` times)."""

    def __init__(self, store: Store, target: str, times: int) -> None:
        self.inner = store.proposer
        self.store, self.target, self.times = store, target, times

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        assert self.inner is not None
        if self.times:
            self.times -= 1
            other = self.store.view(lambda tx: tx.get(objects_pb2.Service, self.target))
            assert other is not None
            other.spec.annotations.labels[f"other{self.times}"] = "x"
            await self.inner.propose(_update_action(other))
        return await self.inner.propose(actions)


def _label(key: str) -> Callable[[WriteTx], None]:
    def change(tx: WriteTx) -> None:
        current = tx.get(objects_pb2.Service, "web")
        assert current is not None
        current.spec.annotations.labels[key] = "1"
        tx.update(current)

    return change


async def test_update_redone_redoes_a_change_that_a_concurrent_write_made_stale() -> None:
    store = local_store()
    web = service("web")
    web.id = "web"
    await store.update(lambda tx: tx.create(web))
    store.proposer = _Interfering(store, "web", times=2)

    await store.update_redone(_label("mine"))

    stored = store.view(lambda tx: tx.get(objects_pb2.Service, "web"))
    assert stored is not None
    assert set(stored.spec.annotations.labels) == {"mine", "other0", "other1"}


async def test_update_redone_gives_up_after_its_attempts() -> None:
    store = local_store()
    web = service("web")
    web.id = "web"
    await store.update(lambda tx: tx.create(web))
    store.proposer = _Interfering(store, "web", times=3)

    with pytest.raises(VersionConflict):
        await store.update_redone(_label("mine"), attempts=3)
