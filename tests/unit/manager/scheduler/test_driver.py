"""The Scheduler driver: events in, batched decisions out, retries when capacity appears."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from manager.scheduler import Decisions, Scheduler, SchedulerError
from manager.scheduler.node_info import MAX_FAILURES
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock

from .builders import messages, node, per_node, placements, replicas, running, task

GAP = 0.05


class FakeStore:
    """Commits decisions the way the store wiring will, and echoes every write as an event."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.tasks: dict[str, objects_pb2.Task] = {}
        self.version = 10

    def put_node(self, n: objects_pb2.Node) -> None:
        self.scheduler.node_changed(n)

    def put_task(self, t: objects_pb2.Task) -> None:
        self.version += 1
        stored = objects_pb2.Task()
        stored.CopyFrom(t)
        stored.meta.version = self.version
        self.tasks[t.id] = stored
        self.scheduler.task_changed(stored)

    def update_task(self, task_id: str, *, state: int | None = None, **fields: Any) -> None:
        """Change `state`, status.err (`err`) or top-level fields of a stored task."""
        t = objects_pb2.Task()
        t.CopyFrom(self.tasks[task_id])
        if state is not None:
            t.status.state = types_pb2.TaskState.ValueType(state)
        if "err" in fields:
            t.status.err = fields.pop("err")
        for name, value in fields.items():
            setattr(t, name, value)
        self.put_task(t)

    def delete_task(self, task_id: str) -> None:
        del self.tasks[task_id]
        self.scheduler.task_removed(task_id)

    def commit(self, decisions: Decisions) -> None:
        for a in decisions.assigned:
            self.update_task(a.task_id, node_id=a.node_id, state=types_pb2.ASSIGNED)
        for u in decisions.unschedulable:
            self.update_task(u.task_id, err=u.message)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scheduler(clock: FakeClock) -> Scheduler:
    return Scheduler(clock=clock)


@pytest.fixture
def store(scheduler: Scheduler) -> FakeStore:
    return FakeStore(scheduler)


def settle(scheduler: Scheduler, clock: FakeClock, store: FakeStore) -> Decisions:
    """Advance to the batch, decide it and commit it (the wiring's loop, once)."""
    due = scheduler.next_tick_at()
    assert due is not None, "no batch is due"
    clock.now = max(clock.now, due)
    decisions = scheduler.tick()
    store.commit(decisions)
    return decisions


class TestBatching:
    def test_nothing_to_do(self, scheduler: Scheduler, clock: FakeClock) -> None:
        assert scheduler.next_tick_at() is None
        assert not scheduler.tick()
        clock.advance(10)
        assert not scheduler.tick()

    def test_a_lone_change_is_decided_at_once(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        store.put_task(task("t1"))
        store.put_task(task("t2"))  # the same transaction: the same batch
        assert scheduler.next_tick_at() == clock.now
        assert placements(scheduler.tick()) == {"t1": "n1", "t2": "n1"}
        assert scheduler.next_tick_at() is None

    def test_a_burst_is_decided_50ms_after_its_last_change(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        store.put_task(task("t0"))
        assert placements(scheduler.tick()) == {"t0": "n1"}  # leading
        clock.advance(0.01)
        start = clock.now
        store.put_task(task("t1"))
        assert scheduler.next_tick_at() == pytest.approx(start + GAP)
        clock.advance(0.03)
        store.put_task(task("t2"))
        assert scheduler.next_tick_at() == pytest.approx(start + 0.03 + GAP)
        clock.advance(0.049)
        assert not scheduler.tick()
        clock.advance(0.001)
        assert placements(scheduler.tick()) == {"t1": "n1", "t2": "n1"}
        assert scheduler.next_tick_at() is None
        clock.advance(0.06)
        store.put_task(task("t3"))  # quiet for more than a gap since: leading again
        assert placements(scheduler.tick()) == {"t3": "n1"}

    def test_never_holds_a_batch_more_than_a_second(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        store.put_task(task("lead"))
        assert placements(scheduler.tick()) == {"lead": "n1"}
        start = clock.now
        decided: dict[str, str] = {}
        step = 1 / 32  # a change every 31.25 ms (exact in binary) keeps the debounce waiting
        for i in range(40):
            store.put_task(task(f"t{i:02d}"))
            clock.advance(step)
            decided.update(placements(scheduler.tick()))
            if decided:
                break
        assert clock.now == start + 1.0
        assert len(decided) == 32

    def test_tick_with_an_explicit_time(self, scheduler: Scheduler, store: FakeStore) -> None:
        store.put_node(node("n1"))
        store.put_task(task("t1"))
        due = scheduler.next_tick_at()
        assert due is not None
        assert not scheduler.tick(due - 0.001)
        assert placements(scheduler.tick(due)) == {"t1": "n1"}

    def test_custom_and_invalid_timing(self, clock: FakeClock) -> None:
        custom = Scheduler(clock=clock, debounce_s=0.2, max_delay_s=0.5)
        custom.node_changed(node("n1"))
        custom.task_changed(task("t1"))
        assert custom.tick()
        clock.advance(0.1)
        custom.task_changed(task("t2"))
        assert custom.next_tick_at() == pytest.approx(clock.now + 0.2)
        with pytest.raises(SchedulerError, match="gap <= max_delay"):
            Scheduler(debounce_s=2, max_delay_s=1)


class TestRetries:
    """Unschedulable tasks wait for capacity, and get it without a timer (moby/moby#32999)."""

    def test_resources_exhausted_then_a_node_joins(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=2))
        for t in replicas("web", 3, cpus=1):
            store.put_task(t)
        decisions = settle(scheduler, clock, store)
        assert per_node(decisions) == {"n1": 2}
        assert messages(decisions) == {
            "web-003": "no suitable node (insufficient resources on 1 node)"
        }
        assert store.tasks["web-003"].status.state == types_pb2.PENDING
        assert scheduler.pending_tasks == 1
        # Writing the message back is not a reason to try again.
        assert scheduler.next_tick_at() is None

        clock.advance(3600)
        store.put_node(node("n2", cpus=2))
        assert scheduler.next_tick_at() == clock.now  # quiet for an hour: at once
        assert placements(settle(scheduler, clock, store)) == {"web-003": "n2"}
        assert scheduler.pending_tasks == 0

    def test_a_task_finishing_frees_its_resources(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(running("old", "batch", "n1", cpus=1))
        store.put_task(task("new", "web", cpus=1))
        assert messages(settle(scheduler, clock, store)) == {
            "new": "no suitable node (insufficient resources on 1 node)"
        }
        store.update_task("old", state=types_pb2.COMPLETE)
        assert placements(settle(scheduler, clock, store)) == {"new": "n1"}

    def test_a_task_removed_frees_its_resources(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(running("old", "batch", "n1", cpus=1))
        store.put_task(task("new", "web", cpus=1))
        settle(scheduler, clock, store)
        store.delete_task("old")
        assert placements(settle(scheduler, clock, store)) == {"new": "n1"}

    def test_a_stopping_task_frees_a_max_replicas_slot(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        store.put_task(running("old", "web", "n1"))
        store.put_task(task("new", "web", max_replicas=1))
        assert messages(settle(scheduler, clock, store)) == {
            "new": "no suitable node (max replicas per node limit reached on 1 node)"
        }
        store.update_task("old", desired_state=types_pb2.SHUTDOWN)
        assert placements(settle(scheduler, clock, store)) == {"new": "n1"}

    @pytest.mark.parametrize(
        "unavailable",
        [
            node("n1", state=types_pb2.NodeStatus.DOWN),
            node("n1", availability=specs_pb2.NodeSpec.DRAIN),
            node("n1", availability=specs_pb2.NodeSpec.PAUSE),
            node("n1", labels={"zone": "b"}),
        ],
    )
    def test_a_node_becoming_usable(
        self,
        scheduler: Scheduler,
        store: FakeStore,
        clock: FakeClock,
        unavailable: objects_pb2.Node,
    ) -> None:
        store.put_node(unavailable)
        store.put_task(task("t1", constraints=["node.labels.zone==a"]))
        assert messages(settle(scheduler, clock, store))
        store.put_node(node("n1", labels={"zone": "a"}))
        assert placements(settle(scheduler, clock, store)) == {"t1": "n1"}

    def test_unrelated_changes_do_not_wake_the_scheduler(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(task("t1", cpus=2))
        settle(scheduler, clock, store)
        heartbeat = node("n1", cpus=1)
        heartbeat.status.message = "heartbeat"
        store.put_node(heartbeat)
        store.put_task(task("other", "x", state=types_pb2.NEW))
        assert scheduler.next_tick_at() is None

    def test_a_changed_reason_is_reported_again(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(task("t1", cpus=2))
        assert messages(settle(scheduler, clock, store)) == {
            "t1": "no suitable node (insufficient resources on 1 node)"
        }
        store.put_node(node("n1", cpus=1, availability=specs_pb2.NodeSpec.DRAIN))
        assert messages(settle(scheduler, clock, store)) == {
            "t1": "no suitable node (1 node not available for new tasks)"
        }
        store.put_node(node("n1", cpus=1.5))  # a retry with the first reason again
        assert messages(settle(scheduler, clock, store)) == {
            "t1": "no suitable node (insufficient resources on 1 node)"
        }
        store.put_node(node("n1", cpus=1.2))  # same reason: nothing to write
        assert not settle(scheduler, clock, store)


class TestAccounting:
    def test_own_assignments_count_at_once(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(task("a", "web", cpus=1))
        decisions = scheduler.tick(clock.now + 1)  # decided but not committed yet
        assert placements(decisions) == {"a": "n1"}
        store.put_task(task("b", "api", cpus=1))
        clock.advance(2)
        assert messages(scheduler.tick()) == {
            "b": "no suitable node (insufficient resources on 1 node)"
        }

    def test_events_older_than_an_assignment_are_ignored(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=2))
        store.put_task(task("a", cpus=1))
        pending = store.tasks["a"]
        assert placements(scheduler.tick(clock.now + 1)) == {"a": "n1"}
        scheduler.task_changed(pending)  # a late event of the version we placed
        assert scheduler.next_tick_at() is None
        store.commit(Decisions(assigned=scheduler.tick(clock.now + 1).assigned))
        store.update_task("a", node_id="n1", state=types_pb2.ASSIGNED)
        info = scheduler.nodes.get("n1")
        assert info is not None and set(info.tasks) == {"a"}
        assert info.available_cpus == 10**9

    def test_a_failed_commit_puts_the_task_back(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(task("a", cpus=1))
        assert placements(scheduler.tick(clock.now + 1)) == {"a": "n1"}
        scheduler.assignment_failed(store.tasks["a"])
        info = scheduler.nodes.get("n1")
        assert info is not None and info.tasks == {}
        assert placements(settle(scheduler, clock, store)) == {"a": "n1"}

    def test_a_pending_task_changed_by_someone_else_is_placed_again(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(task("a", cpus=1))
        assert placements(scheduler.tick(clock.now + 1)) == {"a": "n1"}
        store.update_task("a", err="")  # newer than our decision, still PENDING: ours failed
        assert placements(settle(scheduler, clock, store)) == {"a": "n1"}

    def test_a_task_moving_nodes(self, scheduler: Scheduler, store: FakeStore) -> None:
        store.put_node(node("n1", cpus=2))
        store.put_node(node("n2", cpus=2))
        store.put_task(running("t", "web", "n1", cpus=1))
        store.update_task("t", node_id="n2")
        n1, n2 = scheduler.nodes.get("n1"), scheduler.nodes.get("n2")
        assert n1 is not None and n2 is not None
        assert (n1.available_cpus, n2.available_cpus) == (2 * 10**9, 10**9)

    def test_a_drained_node_gets_no_new_tasks(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        store.put_node(node("n2"))
        for t in replicas("web", 2):
            store.put_task(t)
        assert per_node(settle(scheduler, clock, store)) == {"n1": 1, "n2": 1}
        store.put_node(node("n1", availability=specs_pb2.NodeSpec.DRAIN))
        for t in replicas("api", 3):
            store.put_task(t)
        assert per_node(settle(scheduler, clock, store)) == {"n2": 3}

    def test_a_removed_node_is_no_candidate(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        store.put_node(node("n2"))
        scheduler.node_removed("n1")
        store.put_task(task("t"))
        assert placements(settle(scheduler, clock, store)) == {"t": "n2"}

    def test_preassigned_tasks(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1", cpus=1))
        store.put_task(task("g1", "global", node_id="n1", cpus=1))
        store.put_task(task("g2", "global2", node_id="n1", cpus=1))
        decisions = settle(scheduler, clock, store)
        assert placements(decisions) == {"g1": "n1"}
        assert messages(decisions) == {"g2": "no suitable node (insufficient resources on 1 node)"}


class TestFailureBackOff:
    def test_failures_on_tasks_the_scheduler_placed(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        store.put_node(node("n2"))
        # Five tasks the scheduler places on n1 (n2 drained), each failing there.
        store.put_node(node("n2", availability=specs_pb2.NodeSpec.DRAIN))
        for i in range(MAX_FAILURES):
            store.put_task(task(f"try{i}", "web"))
            assert placements(settle(scheduler, clock, store)) == {f"try{i}": "n1"}
            store.update_task(f"try{i}", state=types_pb2.REJECTED if i % 2 else types_pb2.FAILED)
        store.put_node(node("n2"))
        store.put_task(task("next", "web"))
        assert placements(settle(scheduler, clock, store)) == {"next": "n2"}
        # Five minutes later the node is trusted again.
        clock.advance(301)
        store.put_task(task("later", "web"))
        assert placements(settle(scheduler, clock, store)) == {"later": "n1"}

    def test_failures_of_preassigned_tasks_do_not_count(
        self, scheduler: Scheduler, store: FakeStore, clock: FakeClock
    ) -> None:
        store.put_node(node("n1"))
        for i in range(MAX_FAILURES):
            store.put_task(task(f"g{i}", "web", node_id="n1"))
            settle(scheduler, clock, store)
            store.update_task(f"g{i}", state=types_pb2.FAILED)
        store.put_node(node("n2"))
        store.put_task(task("a", "web"))
        assert placements(settle(scheduler, clock, store)) == {"a": "n1"}


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_metrics(scheduler: Scheduler, store: FakeStore, clock: FakeClock) -> None:
    assigned = sample("shoal_scheduler_decisions_total", {"result": "assigned"})
    unschedulable = sample("shoal_scheduler_decisions_total", {"result": "unschedulable"})
    ticks = sample("shoal_scheduler_latency_seconds_count")
    store.put_node(node("n1", cpus=2))
    for t in replicas("web", 3, cpus=1):
        store.put_task(t)
    settle(scheduler, clock, store)
    assert sample("shoal_scheduler_decisions_total", {"result": "assigned"}) == assigned + 2
    assert (
        sample("shoal_scheduler_decisions_total", {"result": "unschedulable"}) == unschedulable + 1
    )
    assert sample("shoal_scheduler_latency_seconds_count") == ticks + 1
    assert sample("shoal_scheduler_pending_tasks") == 1
