"""Properties of placements over generated clusters (hypothesis)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manager.scheduler import NodeSet, Scheduler, TaskUsage, schedule
from shoal.v1 import objects_pb2, specs_pb2, types_pb2
from tests.unit.manager.fake_clock import FakeClock

from .builders import CPU, GIB, node, running, task

SERVICES = ("a", "b", "c")
ZONES = ("x", "y")
AVAILABILITY = (specs_pb2.NodeSpec.ACTIVE, specs_pb2.NodeSpec.DRAIN, specs_pb2.NodeSpec.PAUSE)
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def nodes(draw: st.DrawFn) -> list[objects_pb2.Node]:
    count = draw(st.integers(min_value=0, max_value=8))
    return [
        node(
            f"n{i}",
            cpus=draw(st.sampled_from([0, 0.5, 1, 2, 4])),
            memory=draw(st.sampled_from([0, GIB // 2, GIB, 4 * GIB])),
            generic={"gpu": draw(st.integers(0, 2))},
            labels={"zone": draw(st.sampled_from(ZONES))},
            availability=draw(st.sampled_from(AVAILABILITY)),
        )
        for i in range(count)
    ]


@dataclass(frozen=True)
class ServiceSpec:
    cpus: float
    memory: int
    gpus: int
    max_replicas: int
    port: int | None
    zone: str | None
    spread: bool


services = st.builds(
    ServiceSpec,
    cpus=st.sampled_from([0, 0.25, 0.5, 1, 1.5]),
    memory=st.sampled_from([0, GIB // 4, GIB]),
    gpus=st.integers(0, 1),
    max_replicas=st.integers(0, 3),
    port=st.sampled_from([None, None, 8080, 9090]),
    zone=st.sampled_from([None, None, *ZONES]),
    spread=st.booleans(),
)


def pending(service: str, spec: ServiceSpec, count: int) -> list[objects_pb2.Task]:
    return [
        task(
            f"{service}-{slot}",
            service,
            slot=slot,
            cpus=spec.cpus,
            memory=spec.memory,
            generic={"gpu": spec.gpus} if spec.gpus else None,
            max_replicas=spec.max_replicas,
            host_ports=[spec.port] if spec.port else [],
            constraints=[f"node.labels.zone=={spec.zone}"] if spec.zone else [],
            spread=["node.labels.zone"] if spec.spread else [],
        )
        for slot in range(1, count + 1)
    ]


def existing_that_fit(
    cluster: list[objects_pb2.Node], wanted: list[tuple[int, str, float]]
) -> list[objects_pb2.Task]:
    """Running tasks, keeping only those that fit where they are (a consistent start)."""
    node_set = NodeSet.build(cluster, [])
    kept = []
    for i, (index, service, cpus) in enumerate(wanted):
        if not cluster:
            break
        target = cluster[index % len(cluster)]
        t = running(f"old-{i}", service, target.id, cpus=cpus)
        info = node_set.get(target.id)
        usage = TaskUsage.of(t)
        if info is not None and info.fits(usage):
            info.add_task(t.id, usage)
            kept.append(t)
    return kept


@PROPERTY_SETTINGS
@given(
    cluster=nodes(),
    specs=st.fixed_dictionaries({name: services for name in SERVICES}),
    counts=st.fixed_dictionaries({name: st.integers(0, 12) for name in SERVICES}),
    wanted=st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from(SERVICES), st.sampled_from([0, 0.5, 1])),
        max_size=10,
    ),
)
def test_placements_respect_every_filter(
    cluster: list[objects_pb2.Node],
    specs: dict[str, ServiceSpec],
    counts: dict[str, int],
    wanted: list[tuple[int, str, float]],
) -> None:
    existing = existing_that_fit(cluster, wanted)
    tasks = [t for name in SERVICES for t in pending(name, specs[name], counts[name])]
    decisions = schedule(cluster, [*existing, *tasks])

    decided = [a.task_id for a in decisions.assigned] + [u.task_id for u in decisions.unschedulable]
    assert sorted(decided) == sorted(t.id for t in tasks)

    by_id = {n.id: n for n in cluster}
    service_of = {t.id: t.service_id for t in tasks}
    cpus: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    gpus: Counter[str] = Counter()
    replicas: Counter[tuple[str, str]] = Counter()
    ports: Counter[tuple[str, int]] = Counter()
    for t in existing:
        cpus[t.node_id] += t.spec.resources.reservations.nano_cpus
        replicas[t.node_id, t.service_id] += 1
    for a in decisions.assigned:
        placed_on = by_id[a.node_id]
        spec = specs[service_of[a.task_id]]
        assert placed_on.status.state == types_pb2.NodeStatus.READY
        assert placed_on.spec.availability == specs_pb2.NodeSpec.ACTIVE
        if spec.zone:
            assert placed_on.spec.annotations.labels["zone"] == spec.zone
        cpus[a.node_id] += int(spec.cpus * CPU)
        memory[a.node_id] += spec.memory
        gpus[a.node_id] += spec.gpus
        replicas[a.node_id, service_of[a.task_id]] += 1
        if spec.port:
            ports[a.node_id, spec.port] += 1
    for node_id, used in cpus.items():
        assert used <= by_id[node_id].description.resources.nano_cpus
    for node_id, used in memory.items():
        assert used <= by_id[node_id].description.resources.memory_bytes
    for node_id, used in gpus.items():
        assert used <= by_id[node_id].description.resources.generic[0].discrete_value
    for (node_id, service), count in replicas.items():
        limit = specs[service].max_replicas
        newly_placed = any(
            a.node_id == node_id and service_of[a.task_id] == service for a in decisions.assigned
        )
        if limit and newly_placed:
            assert count <= limit
    assert all(count == 1 for count in ports.values())


@PROPERTY_SETTINGS
@given(
    eligible=st.integers(1, 10),
    ineligible=st.integers(0, 3),
    count=st.integers(0, 60),
    cpus=st.sampled_from([0, 0.5, 1]),
    max_replicas=st.integers(0, 5),
)
def test_spread_over_equal_nodes_is_even(
    eligible: int, ineligible: int, count: int, cpus: float, max_replicas: int
) -> None:
    cluster = [node(f"e{i}", cpus=4) for i in range(eligible)]
    cluster += [
        node(f"d{i}", cpus=4, availability=specs_pb2.NodeSpec.DRAIN) for i in range(ineligible)
    ]
    tasks = [
        task(f"t{i}", "web", slot=i, cpus=cpus, max_replicas=max_replicas) for i in range(count)
    ]
    decisions = schedule(cluster, tasks)
    per_node = Counter(a.node_id for a in decisions.assigned)
    loads = [per_node[f"e{i}"] for i in range(eligible)]
    assert max(loads) - min(loads) <= 1
    assert sum(loads) == len(decisions.assigned)
    capacity = eligible * min(
        int(4 // cpus) if cpus else count, max_replicas if max_replicas else count
    )
    assert len(decisions.assigned) == min(count, capacity)


events = st.lists(
    st.one_of(
        st.tuples(st.just("node"), st.integers(0, 3), st.sampled_from([0, 1, 2]), st.booleans()),
        st.tuples(st.just("task"), st.sampled_from(SERVICES), st.sampled_from([0, 0.5, 1])),
        st.tuples(st.just("finish"), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("remove_node"), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.booleans()),
    ),
    max_size=40,
)


@PROPERTY_SETTINGS
@given(script=events)
def test_driver_accounting_matches_the_store(script: list[tuple[Any, ...]]) -> None:
    """Whatever the events, the driver's node infos equal ones rebuilt from the store."""
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    nodes_now: dict[str, objects_pb2.Node] = {}
    tasks_now: dict[str, objects_pb2.Task] = {}
    version = 0

    def put(t: objects_pb2.Task) -> None:
        nonlocal version
        version += 1
        t.meta.version = version
        tasks_now[t.id] = t
        scheduler.task_changed(t)

    for step, event in enumerate(script):
        kind = event[0]
        if kind == "node":
            _, index, cpus, drained = event
            availability = specs_pb2.NodeSpec.DRAIN if drained else specs_pb2.NodeSpec.ACTIVE
            n = node(f"n{index}", cpus=cpus, availability=availability)
            nodes_now[n.id] = n
            scheduler.node_changed(n)
        elif kind == "task":
            _, service, cpus = event
            put(task(f"t{step}", service, cpus=cpus))
        elif kind == "finish" and tasks_now:
            _, index, failed = event
            t = objects_pb2.Task()
            t.CopyFrom(sorted(tasks_now.values(), key=lambda t: t.id)[index % len(tasks_now)])
            t.status.state = types_pb2.FAILED if failed else types_pb2.COMPLETE
            put(t)
        elif kind == "remove_node":
            node_id = f"n{event[1]}"
            nodes_now.pop(node_id, None)
            scheduler.node_removed(node_id)
        elif kind == "tick":
            clock.advance(2)
            decisions = scheduler.tick()
            if event[1]:  # commit them, as the store wiring does
                for a in decisions.assigned:
                    t = objects_pb2.Task()
                    t.CopyFrom(tasks_now[a.task_id])
                    t.node_id = a.node_id
                    t.status.state = types_pb2.ASSIGNED
                    put(t)
            else:  # the commit failed: hand the tasks back
                for a in decisions.assigned:
                    scheduler.assignment_failed(tasks_now[a.task_id])

    expected = NodeSet.build(nodes_now.values(), tasks_now.values())
    for info in expected.candidates():
        seen = scheduler.nodes.get(info.node_id)
        assert seen is not None
        assert seen.tasks == info.tasks
        assert (seen.available_cpus, seen.active_tasks) == (info.available_cpus, info.active_tasks)
        assert seen.active_by_service == info.active_by_service
    waiting = {t.id for t in tasks_now.values() if t.status.state == types_pb2.PENDING}
    assert scheduler.pending_tasks == len(waiting)
