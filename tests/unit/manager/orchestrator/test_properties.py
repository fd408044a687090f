"""Property: whatever scales, task failures, updates and drains happen, in whatever
interleaving with the scheduler and agents, once the cluster is quiescent a replicated
service has exactly `replicas` slots, each with exactly one runnable task: desired and
observed RUNNING, of the current spec, on a node that is not drained.

Slot numbers are not always 1..replicas: a scale-down takes from the busiest nodes (as
SwarmKit does), which may leave gaps; a later scale-up fills the lowest free numbers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manager.orchestrator import Orchestrators
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock
from tests.unit.manager.orchestrator.harness import (
    Sim,
    make_store,
    node,
    running,
    service_spec,
    settle,
    update_config,
)

ENDINGS = (types_pb2.FAILED, types_pb2.COMPLETE, types_pb2.REJECTED, types_pb2.SHUTDOWN)
NODES = ("a", "b", "c")


@dataclass(frozen=True)
class Scale:
    replicas: int


@dataclass(frozen=True)
class Fail:
    pick: int
    ending: types_pb2.TaskState.ValueType


@dataclass(frozen=True)
class Update:
    version: int


@dataclass(frozen=True)
class Drain:
    """Drain one of the nodes holding tasks (`pick`), or reactivate every node."""

    pick: int
    drained: bool


@dataclass(frozen=True)
class Progress:
    """One round of the scheduler and the agents, and some time passing."""

    seconds: float


Operation = Scale | Fail | Update | Drain | Progress

operations = st.one_of(
    st.builds(Scale, st.integers(0, 7)),
    st.builds(Fail, st.integers(0, 20), st.sampled_from(ENDINGS)),
    st.builds(Update, st.integers(2, 4)),
    st.builds(Drain, st.integers(0, 5), st.booleans()),
    st.builds(Progress, st.sampled_from([0.0, 1.0, 5.0])),
)


async def apply(sim: Sim, service_id: str, operation: Operation) -> None:
    if isinstance(operation, Scale):
        await sim.scale(service_id, operation.replicas)
    elif isinstance(operation, Fail):
        started = [t for t in sim.runnable(service_id) if t.status.state == types_pb2.RUNNING]
        if started:
            task = started[operation.pick % len(started)]
            await sim.fail(task.id, operation.ending)
    elif isinstance(operation, Update):
        await sim.set_image(service_id, f"registry:5000/app:{operation.version}")
    elif isinstance(operation, Drain):
        if operation.drained:
            await sim.schedule()
            hosts = sorted({t.node_id for t in sim.runnable(service_id) if t.node_id} - {"spare"})
            targets = [hosts[operation.pick % len(hosts)]] if hosts else []
        else:
            targets = list(NODES)

        def change(n: objects_pb2.Node) -> None:
            n.spec.availability = (
                specs_pb2.NodeSpec.DRAIN if operation.drained else specs_pb2.NodeSpec.ACTIVE
            )

        for target in targets:
            await sim.change_node(target, change)
    else:
        await sim.schedule()
        await sim.agents()
        sim.clock.advance(operation.seconds)
    await settle(sim.store)


async def quiesce(sim: Sim) -> None:
    """Run the cluster, with time passing, until a long stretch changes nothing."""
    for _ in range(40):
        index = sim.store.index
        await sim.converge()
        sim.clock.advance(30)
        await sim.converge()
        if sim.store.index == index:
            return
    raise AssertionError("the cluster never became quiescent")


async def scenario(
    script: list[Operation],
    order: types_pb2.UpdateConfig.Order.ValueType = types_pb2.UpdateConfig.STOP_FIRST,
    restart_delay: float | None = 0.0,
) -> None:
    clock = FakeClock()
    sim = Sim(make_store(clock), clock)
    for name in NODES:
        await sim.add_node(node(name))
    # Drains must leave somewhere to go.
    await sim.add_node(node("spare"))
    config = update_config(
        parallelism=2, failure_action=types_pb2.UpdateConfig.CONTINUE, order=order
    )
    spec = service_spec("web", replicas=3, update=config, restart_delay=restart_delay)
    async with running(Orchestrators(sim.store, clock.clock)):
        service_id = await sim.create_service(spec)
        await settle(sim.store)
        for operation in script:
            await apply(sim, service_id, operation)
        await quiesce(sim)

        service = sim.service(service_id)
        replicas = service.spec.replicated_service.replicas
        current = sim.runnable(service_id)
        per_slot = Counter(t.slot for t in current)
        assert len(per_slot) == replicas, f"{len(per_slot)} slots for {replicas} replicas"
        assert set(per_slot.values()) <= {1}, f"slots with several tasks: {per_slot}"
        for task in current:
            host = sim.node(task.node_id)
            assert host is not None and host.spec.availability != specs_pb2.NodeSpec.DRAIN
            assert task.slot >= 1
            assert task.desired_state == types_pb2.RUNNING
            assert task.status.state == types_pb2.RUNNING
            assert task.spec == service.spec.task, "a task of an old spec survived"
        assert service.update_status.state != types_pb2.UpdateStatus.UPDATING
        for slot, count in Counter(t.slot for t in sim.tasks(service_id)).items():
            assert count <= 6, f"slot {slot} keeps {count} tasks (history limit 5)"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(operations, max_size=14),
    order=st.sampled_from([types_pb2.UpdateConfig.STOP_FIRST, types_pb2.UpdateConfig.START_FIRST]),
    restart_delay=st.sampled_from([0.0, None]),  # None: the default, 5 s
)
def test_slots_converge_to_one_running_task_of_the_current_spec(
    script: list[Operation],
    order: types_pb2.UpdateConfig.Order.ValueType,
    restart_delay: float | None,
) -> None:
    asyncio.run(scenario(script, order, restart_delay))
