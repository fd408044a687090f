"""A real store with a fake clock, and a simulated rest of the cluster for orchestrator tests.

`Sim` plays the Control API (services in, scale, update), the allocator and the scheduler
(NEW -> PENDING -> ASSIGNED) and cooperative agents (up to their desired state, stopping
when told to), all by writing into the store, as those parts do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol, TypeAlias

from google.protobuf.duration_pb2 import Duration

from manager.store import LocalProposer, ReadTx, Store, WriteTx, new_id
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.polling import until_async
from tests.unit.manager.fake_clock import FakeClock

IMAGE = "registry:5000/app:1"
TaskState: TypeAlias = types_pb2.TaskState.ValueType


class Runnable(Protocol):
    async def run(self) -> None: ...


def make_store(clock: FakeClock) -> Store:
    store = Store(clock=clock.timestamp)
    store.proposer = LocalProposer(store, proposer_id="test")
    return store


QUIET_TURNS = 100  # turns of the event loop without a store change that make it settled


async def settle(store: Store, timeout_s: float = 10.0) -> None:
    """Let every subsystem handle what is queued: return once the store stops changing
    across many turns of the event loop (everything runs on this loop)."""
    last = [store.index, 0]  # the index, and the turns it has stayed so

    def index_and_quiet_turns() -> list[int]:
        if store.index == last[0]:
            last[1] += 1
        else:
            last[:] = [store.index, 0]
        return last

    await until_async(
        index_and_quiet_turns,
        f"the store to settle ({QUIET_TURNS} turns of the loop without a change)",
        holds=lambda seen: seen[1] >= QUIET_TURNS,
        timeout_s=timeout_s,
        interval_s=0,  # each try one turn of the loop
        max_tries=200_000,
    )


@contextlib.asynccontextmanager
async def running(*subsystems: Runnable) -> AsyncIterator[None]:
    """Run subsystems for the body of a `with`; cancel them after, surfacing their errors."""
    tasks = [asyncio.create_task(s.run()) for s in subsystems]
    try:
        await asyncio.sleep(0)
        yield
        for task in tasks:
            assert not task.done(), f"a subsystem stopped: {task!r}"
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def duration(seconds: float) -> Duration:
    result = Duration()
    result.FromNanoseconds(round(seconds * 1e9))
    return result


def service_spec(
    name: str = "web",
    *,
    replicas: int | None = 1,
    image: str = IMAGE,
    restart: types_pb2.RestartPolicy.Condition.ValueType = types_pb2.RestartPolicy.ANY,
    restart_delay: float | None = 0.0,
    max_attempts: int = 0,
    window: float = 0.0,
    constraints: Iterable[str] = (),
    memory: int = 0,
    update: types_pb2.UpdateConfig | None = None,
    rollback: types_pb2.UpdateConfig | None = None,
) -> specs_pb2.ServiceSpec:
    """A replicated service (`replicas`), or a global one (replicas=None)."""
    spec = specs_pb2.ServiceSpec()
    spec.annotations.name = name
    if replicas is None:
        spec.global_service.SetInParent()
    else:
        spec.replicated_service.replicas = replicas
    spec.task.container.image = image
    spec.task.restart.condition = restart
    if restart_delay is not None:
        spec.task.restart.delay.CopyFrom(duration(restart_delay))
    spec.task.restart.max_attempts = max_attempts
    if window:
        spec.task.restart.window.CopyFrom(duration(window))
    spec.task.placement.constraints.extend(constraints)
    spec.task.resources.reservations.memory_bytes = memory
    if update is not None:
        spec.update.CopyFrom(update)
    if rollback is not None:
        spec.rollback.CopyFrom(rollback)
    return spec


def update_config(
    *,
    parallelism: int = 1,
    delay: float = 0.0,
    monitor: float | None = None,
    failure_action: types_pb2.UpdateConfig.FailureAction.ValueType = types_pb2.UpdateConfig.PAUSE,
    max_failure_ratio: float = 0.0,
    order: types_pb2.UpdateConfig.Order.ValueType = types_pb2.UpdateConfig.STOP_FIRST,
) -> types_pb2.UpdateConfig:
    config = types_pb2.UpdateConfig(
        parallelism=parallelism,
        failure_action=failure_action,
        max_failure_ratio=max_failure_ratio,
        order=order,
    )
    config.delay.CopyFrom(duration(delay))
    if monitor is not None:
        config.monitor.CopyFrom(duration(monitor))
    return config


def node(
    node_id: str,
    *,
    labels: dict[str, str] | None = None,
    state: types_pb2.NodeStatus.State.ValueType = types_pb2.NodeStatus.READY,
    availability: specs_pb2.NodeSpec.Availability.ValueType = specs_pb2.NodeSpec.ACTIVE,
    memory: int = 8 << 30,
) -> objects_pb2.Node:
    result = objects_pb2.Node(id=node_id)
    result.spec.annotations.name = node_id
    result.spec.annotations.labels.update(labels or {})
    result.spec.availability = availability
    result.description.hostname = node_id
    result.description.platform.os = "linux"
    result.description.platform.architecture = "amd64"
    result.description.resources.nano_cpus = 4 * 10**9
    result.description.resources.memory_bytes = memory
    result.status.state = state
    return result


class Sim:
    """The Control API, allocator, scheduler and agents, as store writes."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock

    # -- reads ------------------------------------------------------------------------------

    def tasks(self, service_id: str | None = None) -> list[objects_pb2.Task]:
        def read(tx: ReadTx) -> list[objects_pb2.Task]:
            if service_id is None:
                return tx.list(objects_pb2.Task)
            return tx.find(objects_pb2.Task, "service", service_id)

        return self.store.view(read)

    def task(self, task_id: str) -> objects_pb2.Task:
        task = self.store.view(lambda tx: tx.get(objects_pb2.Task, task_id))
        assert task is not None, f"task {task_id} is gone"
        return task

    def runnable(self, service_id: str) -> list[objects_pb2.Task]:
        return sorted(
            (t for t in self.tasks(service_id) if t.desired_state <= types_pb2.RUNNING),
            key=lambda t: (t.slot, t.node_id, t.meta.version),
        )

    def by_slot(self, service_id: str) -> dict[int, list[objects_pb2.Task]]:
        slots: dict[int, list[objects_pb2.Task]] = {}
        for task in self.runnable(service_id):
            slots.setdefault(task.slot, []).append(task)
        return slots

    def service(self, service_id: str) -> objects_pb2.Service:
        service = self.store.view(lambda tx: tx.get(objects_pb2.Service, service_id))
        assert service is not None, f"service {service_id} is gone"
        return service

    def node(self, node_id: str) -> objects_pb2.Node | None:
        return self.store.view(lambda tx: tx.get(objects_pb2.Node, node_id))

    # -- the Control API --------------------------------------------------------------------

    async def create_service(self, spec: specs_pb2.ServiceSpec) -> str:
        service = objects_pb2.Service(id=new_id(), spec=spec)
        service.spec_version.index = self.store.index + 1
        await self.store.update(lambda tx: tx.create(service))
        return service.id

    async def update_service(
        self, service_id: str, change: Callable[[specs_pb2.ServiceSpec], None]
    ) -> None:
        """As the Control API's UpdateService: previous spec kept, new spec version, update
        status cleared."""

        def write(tx: WriteTx) -> None:
            service = tx.get(objects_pb2.Service, service_id)
            assert service is not None
            service.previous_spec.CopyFrom(service.spec)
            service.previous_spec_version.CopyFrom(service.spec_version)
            change(service.spec)
            service.spec_version.index = self.store.index + 1
            service.ClearField("update_status")
            tx.update(service)

        await self.store.update(write)

    async def roll_back(self, service_id: str) -> None:
        """As the Control API's rollback: spec and previous spec (and versions) swap, and the
        status says ROLLBACK_STARTED."""

        def write(tx: WriteTx) -> None:
            service = tx.get(objects_pb2.Service, service_id)
            assert service is not None and service.HasField("previous_spec")
            spec, version = service.previous_spec, service.previous_spec_version
            rolled_back = objects_pb2.Service()
            rolled_back.CopyFrom(service)
            rolled_back.spec.CopyFrom(spec)
            rolled_back.spec_version.CopyFrom(version)
            rolled_back.previous_spec.CopyFrom(service.spec)
            rolled_back.previous_spec_version.CopyFrom(service.spec_version)
            rolled_back.update_status.state = types_pb2.UpdateStatus.ROLLBACK_STARTED
            rolled_back.update_status.started_at.FromSeconds(int(self.clock.clock.now()))
            tx.update(rolled_back)

        await self.store.update(write)

    async def scale(self, service_id: str, replicas: int) -> None:
        def change(spec: specs_pb2.ServiceSpec) -> None:
            spec.replicated_service.replicas = replicas

        await self.update_service(service_id, change)

    async def set_image(self, service_id: str, image: str) -> None:
        def change(spec: specs_pb2.ServiceSpec) -> None:
            spec.task.container.image = image

        await self.update_service(service_id, change)

    async def remove_service(self, service_id: str) -> None:
        def write(tx: WriteTx) -> None:
            service = tx.get(objects_pb2.Service, service_id)
            assert service is not None
            service.pending_delete = True
            tx.update(service)

        await self.store.update(write)

    async def add_node(self, new: objects_pb2.Node) -> None:
        await self.store.update(lambda tx: tx.create(new))

    async def change_node(self, node_id: str, change: Callable[[objects_pb2.Node], None]) -> None:
        def write(tx: WriteTx) -> None:
            current = tx.get(objects_pb2.Node, node_id)
            assert current is not None
            change(current)
            tx.update(current)

        await self.store.update(write)

    async def set_cluster_history(self, limit: int) -> None:
        def write(tx: WriteTx) -> None:
            clusters = tx.list(objects_pb2.Cluster)
            cluster = clusters[0] if clusters else objects_pb2.Cluster(id=new_id())
            cluster.spec.annotations.name = "default"
            cluster.spec.orchestration.task_history_retention_limit = limit
            if clusters:
                tx.update(cluster)
            else:
                tx.create(cluster)

        await self.store.update(write)

    # -- allocator, scheduler, agents -------------------------------------------------------

    async def set_state(
        self, task_id: str, state: TaskState, *, node_id: str | None = None, exit_code: int = 0
    ) -> None:
        def write(tx: WriteTx) -> None:
            task = tx.get(objects_pb2.Task, task_id)
            assert task is not None, f"task {task_id} is gone"
            task.status.state = state
            task.status.timestamp.CopyFrom(self.clock.timestamp())
            task.status.exit_code = exit_code
            if node_id is not None:
                task.node_id = node_id
            tx.update(task)

        await self.store.update(write)

    async def fail(self, task_id: str, state: TaskState = types_pb2.FAILED) -> None:
        await self.set_state(task_id, state, exit_code=0 if state == types_pb2.COMPLETE else 1)

    async def schedule(self, place: Callable[[objects_pb2.Task], str | None] | None = None) -> int:
        """NEW -> PENDING -> ASSIGNED for wanted tasks: global ones on their node, others on
        `place(task)` or else the eligible node with the fewest tasks."""

        def write(tx: WriteTx) -> int:
            nodes = [
                n
                for n in tx.list(objects_pb2.Node)
                if n.status.state == types_pb2.NodeStatus.READY
                and n.spec.availability == specs_pb2.NodeSpec.ACTIVE
            ]
            load = {n.id: 0 for n in nodes}
            for task in tx.list(objects_pb2.Task):
                if task.node_id in load and task.desired_state <= types_pb2.RUNNING:
                    load[task.node_id] += 1
            changed = 0
            for task in tx.list(objects_pb2.Task):
                if task.status.state > types_pb2.PENDING or task.desired_state > types_pb2.RUNNING:
                    continue
                target = task.node_id or (place(task) if place else None)
                if not target and load:
                    target = min(sorted(load), key=lambda n: load[n])
                if target:
                    task.node_id = target
                    task.status.state = types_pb2.ASSIGNED
                    load[target] = load.get(target, 0) + 1
                else:
                    if task.status.state == types_pb2.PENDING:
                        continue
                    task.status.state = types_pb2.PENDING
                task.status.timestamp.CopyFrom(self.clock.timestamp())
                tx.update(task)
                changed += 1
            return changed

        return (await self.store.update(write)).value

    async def agents(self) -> int:
        """Every assigned task goes as far as its desired state allows (never past
        RUNNING); tasks told to stop report SHUTDOWN, unless their node is DOWN."""

        def write(tx: WriteTx) -> int:
            changed = 0
            for task in tx.list(objects_pb2.Task):
                state = task.status.state
                if not task.node_id or state < types_pb2.ASSIGNED or state > types_pb2.RUNNING:
                    continue
                host = tx.get(objects_pb2.Node, task.node_id)
                if host is None or host.status.state == types_pb2.NodeStatus.DOWN:
                    continue
                if task.desired_state > types_pb2.RUNNING:
                    target = types_pb2.SHUTDOWN
                else:
                    target = min(task.desired_state, types_pb2.RUNNING)
                    if target <= state:
                        continue
                task.status.state = target
                task.status.timestamp.CopyFrom(self.clock.timestamp())
                tx.update(task)
                changed += 1
            return changed

        return (await self.store.update(write)).value

    async def converge(self, rounds: int = 50, advance: float = 0.0) -> None:
        """Alternate the orchestrators with scheduler and agents until nothing changes
        (advancing the clock by `advance` each round, for delays)."""
        for _ in range(rounds):
            await settle(self.store)
            index = self.store.index
            await self.schedule()
            await self.agents()
            if advance:
                self.clock.advance(advance)
            await settle(self.store)
            if self.store.index == index:
                return
        raise AssertionError(f"the cluster did not converge in {rounds} rounds")
