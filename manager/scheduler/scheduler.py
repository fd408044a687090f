"""The decision core: place PENDING tasks on nodes, a pure function of nodes and tasks.

Tasks are grouped by (service, spec version, host ports). Tasks that already name their node
(global services) are checked against that node first; then each group, in key order, runs
the filters once per node and spreads its tasks (in slot, id order) over the admitted nodes.
Node infos are updated with every placement, so resources, ports and replica counts stay
right within a batch. Tasks that cannot be placed get SwarmKit's "no suitable node (...)".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from manager.scheduler.filters import FilterRun
from manager.scheduler.node_info import NodeInfo, awaits_scheduling
from manager.scheduler.node_set import NodeSet
from manager.scheduler.requirements import GroupKey, TaskRequirements, group_key
from manager.scheduler.spread import spread
from shoal.v1 import objects_pb2

NO_SUITABLE_NODE = "no suitable node"


@dataclass(frozen=True, slots=True)
class Assignment:
    task_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """A task left PENDING; `message` says why (for the task's status.err)."""

    task_id: str
    message: str


@dataclass(slots=True)
class Decisions:
    assigned: list[Assignment] = field(default_factory=list)
    unschedulable: list[Unschedulable] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.assigned or self.unschedulable)


def no_suitable_node(explanation: str) -> str:
    return f"{NO_SUITABLE_NODE} ({explanation})" if explanation else NO_SUITABLE_NODE


def schedule(
    nodes: Iterable[objects_pb2.Node], tasks: Iterable[objects_pb2.Task], now: float = 0.0
) -> Decisions:
    """Place the PENDING tasks among `tasks` on `nodes`, accounting for the others.

    Tasks ASSIGNED..RUNNING count on their nodes; PENDING tasks still wanted are placed;
    the rest are ignored. `now` only matters for failure history, which a fresh NodeSet has
    none of (the Scheduler driver keeps it).
    """
    tasks = list(tasks)
    return place_tasks(NodeSet.build(nodes, tasks), tasks, now)


def place_tasks(nodes: NodeSet, tasks: Iterable[objects_pb2.Task], now: float = 0.0) -> Decisions:
    """Place the tasks that await scheduling; `nodes` is updated with every placement."""
    groups: dict[GroupKey, list[objects_pb2.Task]] = {}
    preassigned: list[objects_pb2.Task] = []
    for task in tasks:
        if not awaits_scheduling(task):
            continue
        if task.node_id:
            preassigned.append(task)
        else:
            groups.setdefault(group_key(task), []).append(task)

    decisions = Decisions()
    requirements: dict[GroupKey, TaskRequirements] = {}
    for task in sorted(preassigned, key=lambda task: task.id):
        key = group_key(task)
        req = requirements.get(key)
        if req is None:
            req = requirements[key] = TaskRequirements.of(task)
        _check_preassigned(nodes, task, req, decisions)
    candidates = nodes.candidates()
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda task: (task.slot, task.id))
        req = requirements.get(key) or TaskRequirements.of(group[0])
        _place_group(candidates, group, req, now, decisions)
    return decisions


def _check_preassigned(
    nodes: NodeSet, task: objects_pb2.Task, req: TaskRequirements, decisions: Decisions
) -> None:
    if req.invalid:
        decisions.unschedulable.append(Unschedulable(task.id, req.invalid))
        return
    # A node the set does not know is simply not available.
    info = nodes.get(task.node_id) or NodeInfo(task.node_id)
    run = FilterRun(req)
    if run.admits(info):
        info.add_task(task.id, req.usage)
        decisions.assigned.append(Assignment(task.id, task.node_id))
    else:
        decisions.unschedulable.append(Unschedulable(task.id, no_suitable_node(run.explain())))


def _place_group(
    candidates: list[NodeInfo],
    group: list[objects_pb2.Task],
    req: TaskRequirements,
    now: float,
    decisions: Decisions,
) -> None:
    task_ids = [task.id for task in group]
    if req.invalid:
        decisions.unschedulable.extend(Unschedulable(task_id, req.invalid) for task_id in task_ids)
        return
    run = FilterRun(req)
    placed = spread(run, req, candidates, task_ids, now)
    decisions.assigned.extend(Assignment(task_id, info.node_id) for task_id, info in placed)
    if len(placed) < len(task_ids):
        message = no_suitable_node(run.explain())
        decisions.unschedulable.extend(
            Unschedulable(task_id, message) for task_id in task_ids[len(placed) :]
        )
